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
use data::{Op, Problem, Tokenizer};
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

/// Problems of one operator and size, and how many were answered exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseScore {
    pub op: Op,
    pub digits: usize,
    pub solved: usize,
    pub total: usize,
}

/// Problems whose answers [`greedy_answers`] decodes together.
const BATCH: usize = 64;

/// Greedy decoding of each problem's answer, scored by its final result; one score per
/// (operator, digits), in that order.
pub fn exact_match<B: Backend>(
    model: &Model<B>,
    task: &TaskConfig,
    problems: &[Problem],
    device: &B::Device,
) -> Result<Vec<CaseScore>, TrainError> {
    let answers = greedy_answers(model, task, problems, device)?;
    let mut cases = BTreeMap::new();
    for (p, answer) in problems.iter().zip(answers) {
        let (solved, total) = cases.entry((p.op, p.digits())).or_insert((0, 0));
        *solved += usize::from(task.is_exact(p, &answer));
        *total += 1;
    }
    Ok(cases
        .into_iter()
        .map(|((op, digits), (solved, total))| CaseScore {
            op,
            digits,
            solved,
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
        loop {
            let mut unfinished: Vec<_> = sequences.iter_mut().filter(|s| !s.is_done()).collect();
            if unfinished.is_empty() {
                break;
            }
            for next in model::step(model, &mut unfinished, device) {
                next?;
            }
        }
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
            ops: vec![Op::Add, Op::Sub, Op::Mul, Op::Div],
            trace: true,
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
