//! Sampling from an arithmetic run: pose the problem in the layout the model was trained
//! on (zero-padded operands), let it write the answer, and print that the way a person
//! writes it (digits in the usual order, no padding), with its trace if it has one.

use crate::prompt::Prompt;
use anyhow::Result;
use burn::prelude::*;
use data::Tokenizer;
use data::arithmetic::TaskConfig;
use data::generator::held_out_set;
use model::{Model, Sampling, generate};

/// Solves the problem in `prompt`, or with no prompt a held-out problem drawn from the
/// sampling seed, and returns `problem=result` (no newline) to print.
pub fn solve<B: Backend>(
    model: &Model<B>,
    task: &TaskConfig,
    prompt: &Prompt,
    sampling: &Sampling,
    device: &B::Device,
) -> Result<String> {
    let problem = match prompt {
        Prompt::Text(text) => task.parse_problem(text)?,
        Prompt::Start => held_out_set(task, 1, sampling.seed)[0],
    };
    let tokenizer = task.tokenizer();
    let sampling = Sampling {
        max_new_tokens: task.answer_len(problem.op),
        ..sampling.clone()
    };
    let ids = tokenizer.encode(&task.prompt(&problem))?;
    let answer = tokenizer.decode(&generate(model, &ids, &sampling, device, |_| {
        std::ops::ControlFlow::Continue(())
    })?)?;
    Ok(match task.read(&problem, &answer) {
        Some(reading) if reading.trace.is_empty() => format!("{problem}={}", reading.result),
        Some(reading) => format!(
            "{problem}={}\n  trace: {}",
            reading.result,
            reading.trace.join("; ")
        ),
        None => format!("{problem}=? (the model wrote {answer:?})"),
    })
}
