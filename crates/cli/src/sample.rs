//! `gpt sample`: stream text from a trained run, or solve a problem with an arithmetic one.

use crate::backend::{self, Inner};
use crate::prompt::{Prompt, RunArg, SamplingArgs};
use anyhow::{Context, Result, bail};
use burn::prelude::*;
use data::{TaskConfig, Tokenizer, Utf8Stream};
use model::{LanguageModel, Model, Sampling, generate};
use std::io::{ErrorKind, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use training::RunDir;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArg,
    /// Text to continue (default: a newline, as nanoGPT); for an arithmetic run, a
    /// problem such as "123+456=" (default: a held-out one).
    #[arg(long, conflicts_with = "prompt_file")]
    prompt: Option<String>,
    /// Read the text to continue from a file.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[arg(long, default_value_t = 1)]
    num_samples: usize,
    /// Which weights: the final model or the checkpoint with the best val loss.
    #[arg(long, value_parser = ["final", "best"], default_value = "final")]
    weights: String,
    /// Sample from Hugging Face GPT-2 weights instead of a run: gpt2, gpt2-medium,
    /// gpt2-large, gpt2-xl (downloaded once into the cache) or a directory holding
    /// config.json and model.safetensors. Text goes through GPT-2's BPE.
    #[arg(long, conflicts_with = "run")]
    init_from: Option<String>,
}

pub fn run(args: Args, device: Option<usize>) -> Result<()> {
    if args.num_samples == 0 {
        bail!("--num-samples must be at least 1");
    }
    // Before anything is printed: a refused option prints no prompt.
    args.sampling.sampling(0)?;
    let prompt = Prompt::from_args(args.prompt.as_deref(), args.prompt_file.as_deref())?;
    let (model, what, device) = match &args.init_from {
        Some(spec) => {
            let device = backend::device(device)?;
            let (model, tokenizer) = crate::pretrained::load_for_sampling::<Inner>(spec, &device)?;
            (model, Decoding::Text(tokenizer), device)
        }
        None => {
            let run = args.run.open()?;
            let device = backend::device(device)?;
            let model = load_weights::<Inner>(&run, &args.weights, &device)?;
            (model, decoding(&run)?, device)
        }
    };
    let mut out = Output::new();
    for i in 0..args.num_samples {
        if args.num_samples > 1
            && out
                .write(&format!("--- sample {} ---\n", i + 1))?
                .is_break()
        {
            return Ok(());
        }
        let sampling = args.sampling.sampling(i as u64)?;
        let flow = what.write(&model, &prompt, &sampling, &device, &mut out)?;
        if flow.is_break() || out.write("\n")?.is_break() {
            return Ok(());
        }
    }
    Ok(())
}

/// How a model's tokens become output: text through its tokenizer, or an arithmetic
/// run's answers.
enum Decoding {
    Text(data::TextTokenizer),
    Answers(TaskConfig),
}

impl Decoding {
    fn write<B: Backend>(
        &self,
        model: &Model<B>,
        prompt: &Prompt,
        sampling: &Sampling,
        device: &B::Device,
        out: &mut Output,
    ) -> Result<ControlFlow<()>> {
        match self {
            Decoding::Text(tokenizer) => {
                stream_model(model, tokenizer, prompt, sampling, device, out)
            }
            Decoding::Answers(task) => {
                out.write(&crate::solve::solve(model, task, prompt, sampling, device)?)
            }
        }
    }
}

/// Standard output that reports a reader who has gone (`gpt sample | head`) as
/// `ControlFlow::Break`, so generation stops quietly, and any other write error as an
/// error. (Rust ignores SIGPIPE, so a closed pipe is an `EPIPE` write error here.)
pub struct Output(std::io::Stdout);

impl Output {
    pub fn new() -> Self {
        Self(std::io::stdout())
    }

    pub fn write(&mut self, text: &str) -> Result<ControlFlow<()>> {
        match self
            .0
            .write_all(text.as_bytes())
            .and_then(|()| self.0.flush())
        {
            Ok(()) => Ok(ControlFlow::Continue(())),
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(ControlFlow::Break(())),
            Err(e) => Err(e).context("writing the sample to standard output"),
        }
    }
}

/// Prints the prompt, then each new token as soon as it is drawn.
pub fn stream_sample<B: Backend>(
    run: &RunDir,
    prompt: &Prompt,
    sampling: &Sampling,
    device: &B::Device,
) -> Result<()> {
    let model = run.load_model::<B>(device)?;
    // A reader that left early is no failure: nothing more to do either way.
    let _ = decoding(run)?.write(&model, prompt, sampling, device, &mut Output::new())?;
    Ok(())
}

/// A run's model: `weights` `best` (the checkpoint with the best val loss), else its
/// final or newest.
pub fn load_weights<B: Backend>(
    run: &RunDir,
    weights: &str,
    device: &B::Device,
) -> Result<Model<B>> {
    if weights != "best" {
        return Ok(run.load_model::<B>(device)?);
    }
    let path = run.best_path();
    if !path.exists() {
        bail!(
            "{} does not exist yet (no evaluation has finished)",
            path.display()
        );
    }
    Ok(run.load_model_file::<B>(&path, device)?)
}

/// What a run's model writes: text, or an arithmetic run's answers.
fn decoding(run: &RunDir) -> Result<Decoding> {
    Ok(match run.config()?.task() {
        Some(task) => Decoding::Answers(task.clone()),
        None => Decoding::Text(run.tokenizer()?),
    })
}

/// Prints the prompt, then each token `model` draws after it, as text completes.
pub fn stream_model<B: Backend, M: LanguageModel<B>>(
    model: &M,
    tokenizer: &data::TextTokenizer,
    prompt: &Prompt,
    sampling: &Sampling,
    device: &B::Device,
    out: &mut Output,
) -> Result<ControlFlow<()>> {
    let ids = match prompt {
        Prompt::Text(text) => tokenizer
            .encode(text)
            .context("the prompt cannot be encoded with this run's vocabulary")?,
        Prompt::Start => vec![tokenizer.encode("\n").map_or(0, |ids| ids[0])],
    };
    if let Prompt::Text(text) = prompt {
        if let Some(context) = model.context_size().filter(|&c| ids.len() > c) {
            eprintln!(
                "note: the prompt has {} tokens; the model sees only the last {context} (block_size)",
                ids.len()
            );
        }
        if out.write(text)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    let mut result = Ok(ControlFlow::Continue(()));
    // A GPT-2 token may end inside a character: print text as characters complete.
    let mut text = Utf8Stream::default();
    generate(model, &ids, sampling, device, |id| {
        let bytes = tokenizer
            .token_bytes(id)
            .expect("the model only emits ids of its vocabulary");
        result = out.write(&text.push(&bytes));
        match &result {
            Ok(ControlFlow::Continue(())) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(()),
        }
    })?;
    if matches!(result, Ok(ControlFlow::Continue(()))) {
        result = out.write(&text.finish());
    }
    result
}
