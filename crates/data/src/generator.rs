//! Problems drawn fresh for every example, forever, and a part of them held out.
//!
//! A problem is held out when a hash of `(op, a, b)` falls in one tenth of its range. The
//! split is fixed (no seed), so every run of every task holds out the same problems: the
//! train split never serves one, and the val split (and `gpt eval`) serves only those.
//!
//! A draw picks an operator by the task's weights, then the digits of `a` and of `b`,
//! each from 1 to `n_digits` on its own, then each operand among the numbers with that
//! many digits: every cell (operator × digits of a × digits of b) is drawn equally often,
//! so small problems are not drowned out by large ones, and a long number divided by a
//! short one is as common as any other shape. A training batch holds problems of one
//! operator, so that it is only as long as that operator's answers (see `LmBatcher`).

use crate::arithmetic::TaskConfig;
use crate::problem::{Op, Problem};
use crate::{CharTokenizer, Chunk, Split, mix_seed};
use burn::data::dataset::Dataset;
use rand::distr::{Distribution, weighted::WeightedIndex};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::ops::Range;

/// One problem in this many is held out.
const HELD_OUT_EVERY: u64 = 10;

/// Whether `p` belongs to the held-out split.
pub fn is_held_out(p: &Problem) -> bool {
    mix_seed(mix_seed(p.op as u64, p.a), p.b).is_multiple_of(HELD_OUT_EVERY)
}

/// An operator of `task`, drawn by its weights.
pub fn draw_op(task: &TaskConfig, rng: &mut StdRng) -> Op {
    let weights = WeightedIndex::new(task.weights()).expect("validated op_weights");
    task.ops[weights.sample(rng)]
}

/// A random problem of `task` from `split`.
pub fn draw(task: &TaskConfig, split: Split, rng: &mut StdRng) -> Problem {
    let op = draw_op(task, rng);
    draw_of(task, op, split, rng)
}

/// A random `op` problem of `task` from `split`: digits of a and of b drawn on their own.
pub fn draw_of(task: &TaskConfig, op: Op, split: Split, rng: &mut StdRng) -> Problem {
    loop {
        let digits_a = rng.random_range(1..=task.n_digits);
        let digits_b = rng.random_range(1..=task.n_digits);
        let a = rng.random_range(operands(op, digits_a, false));
        let b = rng.random_range(operands(op, digits_b, true));
        let p = Problem { op, a, b };
        if is_held_out(&p) == (split == Split::Val) {
            return p;
        }
    }
}

/// The numbers with `digits` digits (0 counts as one digit) an operand can be; a divisor
/// is never 0.
fn operands(op: Op, digits: usize, divisor: bool) -> Range<u64> {
    let low = match digits {
        1 => u64::from(divisor && op == Op::Div),
        d => 10u64.pow(d as u32 - 1),
    };
    low..10u64.pow(digits as u32)
}

/// A problem shape results are reported by: an operator and the digits of each operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    pub op: Op,
    pub digits_a: usize,
    pub digits_b: usize,
}

impl Cell {
    pub fn of(p: &Problem) -> Self {
        let (digits_a, digits_b) = p.digits();
        Self {
            op: p.op,
            digits_a,
            digits_b,
        }
    }

    /// Every cell of `task`: its operators × 1..=n_digits × 1..=n_digits.
    pub fn all(task: &TaskConfig) -> Vec<Cell> {
        let n = task.n_digits;
        let mut cells: Vec<Cell> = task
            .ops
            .iter()
            .flat_map(|&op| {
                (1..=n).flat_map(move |digits_a| {
                    (1..=n).map(move |digits_b| Cell {
                        op,
                        digits_a,
                        digits_b,
                    })
                })
            })
            .collect();
        cells.sort();
        cells.dedup();
        cells
    }

    /// Up to `max` distinct held-out problems of this cell, drawn from `seed`: all of them
    /// when the cell has no more (a 1-digit by 1-digit cell holds about ten).
    pub fn held_out(&self, max: usize, seed: u64) -> Vec<Problem> {
        let (a, b) = (
            operands(self.op, self.digits_a, false),
            operands(self.op, self.digits_b, true),
        );
        let problem = |a, b| Problem { op: self.op, a, b };
        let mut rng = StdRng::seed_from_u64(mix_seed(
            seed,
            self.op as u64 * 100 + self.digits_a as u64 * 10 + self.digits_b as u64,
        ));
        let size = (a.end - a.start) * (b.end - b.start);
        // Small cells are listed whole, large ones sampled (a tenth of them is held out,
        // so rejection finds `max` in about 10·max draws).
        if size <= 50 * max as u64 {
            let mut all: Vec<Problem> = a
                .flat_map(|x| b.clone().map(move |y| problem(x, y)))
                .filter(is_held_out)
                .collect();
            all.shuffle(&mut rng);
            all.truncate(max);
            return all;
        }
        let mut seen = HashSet::new();
        let mut found = Vec::with_capacity(max);
        while found.len() < max {
            let p = problem(rng.random_range(a.clone()), rng.random_range(b.clone()));
            if is_held_out(&p) && seen.insert(p) {
                found.push(p);
            }
        }
        found
    }
}

/// The distinct problems among `draws` held-out draws (a problem drawn twice is kept
/// once): a quick sample of every operator and size, as training's evaluation sees them.
pub fn held_out_set(task: &TaskConfig, draws: usize, seed: u64) -> Vec<Problem> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = HashSet::new();
    (0..draws)
        .map(|_| draw(task, Split::Val, &mut rng))
        .filter(|p| seen.insert(*p))
        .collect()
}

/// `len` random problems of one split as [`Chunk`]s of `block_size + 1` tokens, scored on
/// the answer only; each run of `batch_size` items (a batch) shares one operator. Like
/// `RandomChunks`, item `i` depends only on `(seed, i)`.
#[derive(Debug, Clone)]
pub struct RandomProblems {
    task: TaskConfig,
    tokenizer: CharTokenizer,
    split: Split,
    block_size: usize,
    batch_size: usize,
    len: usize,
    seed: u64,
}

impl RandomProblems {
    /// `block_size + 1` must hold the task's longest example (`RunConfig` checks it).
    pub fn new(
        task: TaskConfig,
        split: Split,
        block_size: usize,
        batch_size: usize,
        len: usize,
        seed: u64,
    ) -> Self {
        assert!(
            block_size + 1 >= task.example_len(),
            "RandomProblems needs block_size + 1 ≥ the longest example"
        );
        Self {
            tokenizer: task.tokenizer(),
            task,
            split,
            block_size,
            batch_size: batch_size.max(1),
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
        let batch = (index / self.batch_size) as u64;
        let op = draw_op(
            &self.task,
            &mut StdRng::seed_from_u64(mix_seed(!self.seed, batch)),
        );
        let mut rng = StdRng::seed_from_u64(mix_seed(self.seed, index as u64));
        let p = draw_of(&self.task, op, self.split, &mut rng);
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
            ..TaskConfig::default()
        }
    }

    /// The problems behind a dataset's chunks, read back from their text.
    fn problems(ds: &RandomProblems) -> Vec<(Problem, String)> {
        let tok = ds.task.tokenizer();
        let prompt_len = ds.task.prompt_len();
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
        let ds = RandomProblems::new(task(&[Op::Add], 3), Split::Train, 11, 8, 500, 7);
        for i in 0..ds.len() {
            let chunk = ds.get(i).unwrap();
            assert_eq!(chunk.tokens.len(), 12);
            assert_eq!(chunk.scored_targets(), 4);
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
        let all = |seed| {
            problems(&RandomProblems::new(
                t.clone(),
                Split::Train,
                41,
                4,
                64,
                seed,
            ))
        };
        assert_eq!(all(1), all(1));
        assert_ne!(all(1), all(2));
        assert_eq!(held_out_set(&t, 20, 5), held_out_set(&t, 20, 5));
        let cell = Cell::all(&t)[7];
        assert_eq!(cell.held_out(30, 5), cell.held_out(30, 5));
    }

    /// A batch is one operator; over many batches each operator comes as often as its
    /// weight says.
    #[test]
    fn a_batch_is_one_operator_drawn_by_weight() {
        let t = TaskConfig {
            op_weights: vec![1.0, 1.0, 2.0, 4.0],
            ..task(&Op::ALL, 2)
        };
        let ds = RandomProblems::new(t, Split::Train, 29, 8, 8 * 800, 3);
        let ps = problems(&ds);
        let mut counts = [0usize; 4];
        for batch in ps.chunks(8) {
            let op = batch[0].0.op;
            assert!(
                batch.iter().all(|(p, _)| p.op == op),
                "one operator a batch"
            );
            counts[op as usize] += 1;
        }
        // Expected 100, 100, 200, 400 batches.
        for (count, expected) in counts.iter().zip([100.0, 100.0, 200.0, 400.0]) {
            assert!(
                (*count as f64 - expected).abs() < 0.25 * expected,
                "{counts:?}"
            );
        }
    }

    #[test]
    fn held_out_problems_are_never_served_in_training() {
        let t = task(&Op::ALL, 2);
        let train = RandomProblems::new(t.clone(), Split::Train, 25, 8, 20_000, 11);
        assert!(problems(&train).iter().all(|(p, _)| !is_held_out(p)));
        let val = RandomProblems::new(t.clone(), Split::Val, 25, 8, 2_000, 11);
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

    /// Digits of a and b are drawn on their own: every cell comes about equally often,
    /// 3-digit by 1-digit divisions included.
    #[test]
    fn draws_cover_every_cell_equally() {
        let t = task(&Op::ALL, 3);
        let mut rng = StdRng::seed_from_u64(9);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..36_000 {
            *counts
                .entry(Cell::of(&draw(&t, Split::Train, &mut rng)))
                .or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 36);
        assert!(
            counts.values().all(|&n| (700..1300).contains(&n)),
            "{counts:?}"
        );
        assert_eq!(Cell::all(&t), counts.keys().copied().collect::<Vec<_>>());
    }

    /// A cell's held-out problems are distinct, of that cell, held out, and all of them
    /// when the cell is small.
    #[test]
    fn a_cells_held_out_problems() {
        for cell in Cell::all(&task(&Op::ALL, 3)) {
            let ps = cell.held_out(200, 1);
            assert!(ps.iter().all(|p| Cell::of(p) == cell && is_held_out(p)));
            assert_eq!(ps.len(), ps.iter().collect::<HashSet<_>>().len());
            let size = match (cell.digits_a, cell.digits_b) {
                (1, 1) => 10 * if cell.op == Op::Div { 9 } else { 10 },
                (1, d) | (d, 1) if d > 1 => 10 * 9 * 10u64.pow(d as u32 - 1) as usize,
                _ => usize::MAX,
            };
            if size < 1000 {
                assert!(
                    ps.len() < 200 && ps.len() * 20 > size,
                    "{cell:?}: {}",
                    ps.len()
                );
            } else {
                assert_eq!(ps.len(), 200, "{cell:?}");
            }
            assert!(ps.iter().all(|p| p.op != Op::Div || p.b > 0));
        }
    }
}
