//! Exact match: the share of arithmetic problems answered right in every digit.
//!
//! `gpt eval` measures it as a user meets the model: it decodes each held-out problem's
//! answer greedily (`top_k: 1`) and scores the final result only, whatever the trace says.
//!
//! During training, the evaluation pass measures it from the logits it already has: a
//! problem counts as solved when the most likely token is the right one at every scored
//! position, given the true answer so far (teacher forcing). Without a trace this is
//! exactly greedy decoding's exact match: greedy decoding stays on the true answer as long
//! as every most likely token is right, and leaves it at the first that is not. With a
//! trace it also demands a right trace, so it can be lower than `gpt eval`'s number.

use crate::TrainError;
use burn::prelude::*;
use data::arithmetic::TaskConfig;
use data::generator::Cell;
use data::{Problem, Tokenizer};
use model::{Model, Sampling, Sequence};
use std::collections::BTreeMap;

/// The share of rows of a batch whose scored targets are all the argmax of `logits`
/// (B, T, V): (1,).
pub fn solved_fraction<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    scored: Tensor<B, 2, Bool>,
) -> Tensor<B, 1> {
    let right = logits.argmax(2).squeeze_dim::<2>(2).equal(targets);
    right.bool_or(scored.bool_not()).all_dim(1).float().mean()
}

/// The held-out problems of one cell (operator × digits of a × digits of b): how many
/// were answered with the right result, and how many with the whole answer right, trace
/// included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellScore {
    pub cell: Cell,
    pub solved: usize,
    pub traced: usize,
    pub total: usize,
}

impl CellScore {
    pub fn exact_match(&self) -> f64 {
        self.solved as f64 / self.total.max(1) as f64
    }

    /// The Wilson score interval's lower end at 95 %: the exact match this cell shows with
    /// 95 % confidence (10 of 10 right is 72 %, 2000 of 2000 is 99.8 %).
    pub fn lower_95(&self) -> f64 {
        wilson_lower(self.solved, self.total)
    }

    pub fn trace_exact(&self) -> f64 {
        self.traced as f64 / self.total.max(1) as f64
    }
}

/// The lower end of the Wilson score interval for `k` successes in `n` trials, z = 1.96.
pub fn wilson_lower(k: usize, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (n, p, z) = (n as f64, k as f64 / n as f64, 1.96f64);
    let centre = p + z * z / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z * z / n)).max(0.0)
}

/// Problems whose answers [`greedy_answers`] decodes together.
const BATCH: usize = 64;

/// Greedy decoding of each problem's answer, scored by its final result (and its whole
/// answer); one score per cell, in cell order.
pub fn exact_match<B: Backend>(
    model: &Model<B>,
    task: &TaskConfig,
    problems: &[Problem],
    device: &B::Device,
) -> Result<Vec<CellScore>, TrainError> {
    let answers = greedy_answers(model, task, problems, device)?;
    let mut cells = BTreeMap::new();
    for (p, answer) in problems.iter().zip(answers) {
        let (solved, traced, total) = cells.entry(Cell::of(p)).or_insert((0, 0, 0));
        *solved += usize::from(task.is_exact(p, &answer));
        *traced += usize::from(answer == task.answer(p));
        *total += 1;
    }
    Ok(cells
        .into_iter()
        .map(|(cell, (solved, traced, total))| CellScore {
            cell,
            solved,
            traced,
            total,
        })
        .collect())
}

/// Each problem's answer (trace and result) as greedy decoding writes it, [`BATCH`]
/// problems at a time: one token for each per step ([`model::step`]), the layers'
/// products running on all of them at once, as a server's concurrent requests do.
fn greedy_answers<B: Backend>(
    model: &Model<B>,
    task: &TaskConfig,
    problems: &[Problem],
    device: &B::Device,
) -> Result<Vec<String>, TrainError> {
    let tokenizer = task.tokenizer();
    let mut answers = Vec::with_capacity(problems.len());
    for batch in problems.chunks(BATCH) {
        let mut sequences = batch
            .iter()
            .map(|p| {
                let sampling = Sampling {
                    max_new_tokens: task.answer_len(p.op),
                    top_k: Some(1),
                    ..Sampling::default()
                };
                let prompt = tokenizer.encode(&task.prompt(p))?;
                Ok(Sequence::new(&prompt, sampling)?)
            })
            .collect::<Result<Vec<_>, TrainError>>()?;
        model::finish(model, &mut sequences, device)?;
        for sequence in &sequences {
            answers.push(tokenizer.decode(sequence.new_tokens())?);
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// Decoded together, each problem gets the answer it gets decoded alone: more
    /// problems than a batch, of every operator, with traces (answers of different
    /// lengths), on an untrained model whose answers are arbitrary strings.
    #[test]
    fn answers_decoded_together_are_the_lone_answers() {
        let device = Default::default();
        let task = TaskConfig {
            n_digits: 2,
            ops: data::Op::ALL.to_vec(),
            trace: true,
            ..TaskConfig::default()
        };
        let tokenizer = task.tokenizer();
        let config = model::GptConfig {
            vocab_size: tokenizer.vocab_size(),
            block_size: task.example_len(),
            n_layer: 2,
            n_head: 2,
            n_embd: 32,
            dropout: 0.0,
            ..model::GptConfig::default()
        };
        let model = Model::<Flex>::new(&config, &device).unwrap();
        let problems = data::generator::held_out_set(&task, BATCH + 20, 5);
        let together = greedy_answers(&model, &task, &problems, &device).unwrap();
        assert_eq!(together.len(), problems.len());
        for (p, answer) in problems.iter().zip(&together) {
            let sampling = Sampling {
                max_new_tokens: task.answer_len(p.op),
                top_k: Some(1),
                ..Sampling::default()
            };
            let prompt = tokenizer.encode(&task.prompt(p)).unwrap();
            let alone = model::generate(&model, &prompt, &sampling, &device, |_| {
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
            assert_eq!(answer, &tokenizer.decode(&alone).unwrap(), "{p}");
        }
    }

    #[test]
    fn wilson_lower_bounds() {
        assert_eq!(wilson_lower(0, 0), 0.0);
        assert!((wilson_lower(10, 10) - 0.7225).abs() < 1e-3);
        assert!((wilson_lower(2000, 2000) - 0.99808).abs() < 1e-4);
        assert!((wilson_lower(1980, 2000) - 0.98460).abs() < 1e-4);
        assert!(wilson_lower(1, 2) < 0.5 && wilson_lower(0, 5) == 0.0);
    }

    #[test]
    fn a_row_is_solved_when_every_scored_argmax_is_right() {
        let device = Default::default();
        // Two rows of three positions over a vocabulary of 2; the argmax is token 1 where
        // the logit pair is [0, 1], token 0 where it is [1, 0].
        let logits = Tensor::<Flex, 3>::from_data(
            [
                [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]],
                [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]],
            ],
            &device,
        );
        let targets = Tensor::<Flex, 2, Int>::from_data([[0, 0, 1], [1, 1, 1]], &device);
        let fraction = |mask: [[bool; 3]; 2]| -> f32 {
            let scored = Tensor::<Flex, 2, Bool>::from_bool(mask.into(), &device);
            solved_fraction(logits.clone(), targets.clone(), scored).into_scalar()
        };
        // Row 0 is wrong at its first position only; row 1 is right everywhere.
        assert_eq!(fraction([[true; 3], [true; 3]]), 0.5);
        assert_eq!(fraction([[false, true, true], [true; 3]]), 1.0);
        assert_eq!(fraction([[true, false, false], [false; 3]]), 0.5);
    }
}
