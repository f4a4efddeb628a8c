//! Sampling from an arithmetic run: pose the problem in the layout the model was trained
//! on (zero-padded operands), let it write the answer, and print that the way a person
//! writes it (digits in the usual order, no padding), with its trace if it has one.

use crate::sample::Prompt;
use anyhow::Result;
use burn::prelude::*;
use data::arithmetic::TaskConfig;
use data::generator::held_out_set;
use data::{Problem, Tokenizer};
use model::{Model, Sampling, generate};

/// Solves the problem in `prompt`, or with no prompt a held-out problem drawn from the
/// sampling seed, and prints `problem=result` (no newline).
pub fn solve<B: Backend>(
    model: &Model<B>,
    task: &TaskConfig,
    prompt: &Prompt,
    sampling: &Sampling,
    device: &B::Device,
) -> Result<()> {
    let problem = match prompt {
        Prompt::Text(text) => Problem::parse(text, task)?,
        Prompt::Start => held_out_set(task, 1, sampling.seed)[0],
    };
    let tokenizer = task.tokenizer();
    let sampling = Sampling {
        max_new_tokens: task.answer_len(problem.op),
        ..sampling.clone()
    };
    let ids = tokenizer.encode(&task.prompt(&problem))?;
    let answer = tokenizer.decode(&generate(model, &ids, &sampling, device, |_| {})?)?;
    match task.read(&problem, &answer) {
        Some(reading) if reading.trace.is_empty() => print!("{problem}={}", reading.result),
        Some(reading) => print!(
            "{problem}={}\n  trace: {}",
            reading.result,
            reading.trace.join(", ")
        ),
        None => print!("{problem}=? (the model wrote {answer:?})"),
    }
    Ok(())
}
