//! Problems drawn fresh for every example, forever, and a part of them held out.
//!
//! A problem is held out when a hash of `(op, a, b)` falls in one tenth of its range. The
//! split is fixed (no seed), so every run of every task holds out the same problems: the
//! train split never serves one, and the val split (and `gpt eval`) serves only those.
//! Each draw picks an operator, then a size of 1 to `n_digits` digits, then both operands
//! up to that size, so small problems are not drowned out by large ones.

use crate::arithmetic::TaskConfig;
use crate::problem::{Op, Problem};
use crate::{CharTokenizer, Chunk, Split, mix_seed};
use burn::data::dataset::Dataset;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;

/// One problem in this many is held out.
const HELD_OUT_EVERY: u64 = 10;

/// Whether `p` belongs to the held-out split.
pub fn is_held_out(p: &Problem) -> bool {
    mix_seed(mix_seed(p.op as u64, p.a), p.b).is_multiple_of(HELD_OUT_EVERY)
}

/// A random problem of `task` from `split`.
pub fn draw(task: &TaskConfig, split: Split, rng: &mut StdRng) -> Problem {
    loop {
        let op = task.ops[rng.random_range(0..task.ops.len())];
        let size = 10u64.pow(rng.random_range(1..=task.n_digits as u32));
        let a = rng.random_range(0..size);
        let b = rng.random_range(u64::from(op == Op::Div)..size);
        let p = Problem { op, a, b };
        if is_held_out(&p) == (split == Split::Val) {
            return p;
        }
    }
}

/// The distinct problems among `draws` held-out draws: the fixed set `gpt eval` scores.
/// Small problems repeat (1-digit sums have about ten held out), so the set is smaller.
pub fn held_out_set(task: &TaskConfig, draws: usize, seed: u64) -> Vec<Problem> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = HashSet::new();
    (0..draws)
        .map(|_| draw(task, Split::Val, &mut rng))
        .filter(|p| seen.insert(*p))
        .collect()
}

/// `len` random problems of one split as [`Chunk`]s of `block_size + 1` tokens, scored on
/// the answer only. Like `RandomChunks`, item `i` depends only on `(seed, i)`.
#[derive(Debug, Clone)]
pub struct RandomProblems {
    task: TaskConfig,
    tokenizer: CharTokenizer,
    split: Split,
    block_size: usize,
    len: usize,
    seed: u64,
}

impl RandomProblems {
    /// `block_size + 1` must hold the task's longest example (`RunConfig` checks it).
    pub fn new(task: TaskConfig, split: Split, block_size: usize, len: usize, seed: u64) -> Self {
        assert!(
            block_size + 1 >= task.example_len(),
            "RandomProblems needs block_size + 1 ≥ the longest example"
        );
        Self {
            tokenizer: task.tokenizer(),
            task,
            split,
            block_size,
            len,
            seed,
        }
    }
}

impl Dataset<Chunk> for RandomProblems {
    fn get(&self, index: usize) -> Option<Chunk> {
        if index >= self.len {
            return None;
        }
        let mut rng = StdRng::seed_from_u64(mix_seed(self.seed, index as u64));
        let p = draw(&self.task, self.split, &mut rng);
        let (tokens, scored) = self.task.example(&p, &self.tokenizer, self.block_size + 1);
        Some(Chunk {
            tokens,
            scored: Some(scored),
        })
    }

    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tokenizer;

    fn task(ops: &[Op], n_digits: usize) -> TaskConfig {
        TaskConfig {
            n_digits,
            ops: ops.to_vec(),
            trace: false,
        }
    }

    /// The problems behind a dataset's chunks, read back from their text.
    fn problems(ds: &RandomProblems) -> Vec<(Problem, String)> {
        let tok = ds.task.tokenizer();
        let prompt_len = 2 * ds.task.n_digits + 2;
        (0..ds.len())
            .map(|i| {
                let text = tok.decode(&ds.get(i).unwrap().tokens).unwrap();
                let p = ds.task.parse_problem(&text[..prompt_len]).unwrap();
                (p, text)
            })
            .collect()
    }

    #[test]
    fn every_example_has_the_same_width_and_a_correct_reversed_sum() {
        let ds = RandomProblems::new(task(&[Op::Add], 3), Split::Train, 11, 500, 7);
        for i in 0..ds.len() {
            let chunk = ds.get(i).unwrap();
            assert_eq!(chunk.tokens.len(), 12);
            assert_eq!(
                chunk
                    .scored
                    .as_ref()
                    .unwrap()
                    .iter()
                    .filter(|&&s| s)
                    .count(),
                4
            );
        }
        for (p, text) in problems(&ds) {
            let (a, rest) = text.split_at(3);
            let (b, c) = (&rest[1..4], &rest[5..]);
            assert_eq!(
                (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()),
                (p.a, p.b)
            );
            let sum: String = c.chars().rev().collect();
            assert_eq!(sum.parse::<u64>().unwrap(), p.a + p.b, "{text}");
        }
    }

    #[test]
    fn same_seed_same_problems() {
        let t = task(&Op::ALL, 3);
        let all = |seed| problems(&RandomProblems::new(t.clone(), Split::Train, 29, 64, seed));
        assert_eq!(all(1), all(1));
        assert_ne!(all(1), all(2));
        assert_eq!(held_out_set(&t, 20, 5), held_out_set(&t, 20, 5));
    }

    #[test]
    fn held_out_problems_are_never_served_in_training() {
        let t = task(&Op::ALL, 2);
        let train = RandomProblems::new(t.clone(), Split::Train, 13, 20_000, 11);
        assert!(problems(&train).iter().all(|(p, _)| !is_held_out(p)));
        let val = RandomProblems::new(t.clone(), Split::Val, 13, 2_000, 11);
        assert!(problems(&val).iter().all(|(p, _)| is_held_out(p)));
        assert!(held_out_set(&t, 500, 1).iter().all(is_held_out));
        // About a tenth of the space is held out, for each operator.
        for op in Op::ALL {
            let held = (0..100u64)
                .flat_map(|a| (1..100).map(move |b| Problem { op, a, b }))
                .filter(is_held_out)
                .count();
            assert!((800..1200).contains(&held), "{op}: {held}");
            // Even a 1-digit task has held-out problems to draw.
            assert!((0..10).any(|a| (1..10).any(|b| is_held_out(&Problem { op, a, b }))));
        }
    }

    #[test]
    fn draws_cover_every_operator_and_size() {
        let t = task(&Op::ALL, 3);
        let ps = held_out_set(&t, 3000, 3);
        assert_eq!(ps.len(), ps.iter().collect::<HashSet<_>>().len());
        for op in Op::ALL {
            for digits in 1..=3 {
                let n = ps
                    .iter()
                    .filter(|p| p.op == op && p.digits() == digits)
                    .count();
                assert!(n >= 5, "{op} with {digits} digits: {n}");
            }
        }
        assert!(ps.iter().all(|p| p.op != Op::Div || p.b > 0));
    }
}
