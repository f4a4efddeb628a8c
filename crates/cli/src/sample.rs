//! `gpt sample`: stream text from a trained run, or solve a problem with an arithmetic one.

use crate::backend::{self, Inner};
use anyhow::{Context, Result, bail};
use burn::prelude::*;
use data::Tokenizer;
use model::{LanguageModel, Sampling, generate};
use std::io::Write;
use std::path::PathBuf;
use training::RunDir;

#[derive(clap::Args)]
pub struct Args {
    /// The run directory to sample from.
    #[arg(long)]
    run: PathBuf,
    /// Text to continue (default: a newline, as nanoGPT); for an arithmetic run, a
    /// problem such as "123+456=" (default: a held-out one).
    #[arg(long, conflicts_with = "prompt_file")]
    prompt: Option<String>,
    /// Read the text to continue from a file.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Tokens to generate (an arithmetic run writes its answer's length).
    #[arg(long, default_value_t = 500)]
    max_new_tokens: usize,
    /// Below 1: more conservative; above 1: more surprising.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Sample only among the K most likely tokens (1: greedy).
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    #[arg(long, default_value_t = 1)]
    num_samples: usize,
    /// Recompute the whole context for every token, as nanoGPT does (slower, same text).
    #[arg(long)]
    no_kv_cache: bool,
    /// Which weights: the final model or the checkpoint with the best val loss.
    #[arg(long, value_parser = ["final", "best"], default_value = "final")]
    weights: String,
}

/// What generation starts from.
pub enum Prompt {
    /// nanoGPT's default start: a newline.
    Start,
    Text(String),
}

pub fn run(args: Args, device: Option<usize>) -> Result<()> {
    if args.max_new_tokens == 0 {
        bail!("--max-new-tokens must be at least 1");
    }
    let prompt = match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => Prompt::Text(p.clone()),
        (None, Some(f)) => Prompt::Text(
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        ),
        (None, None) => Prompt::Start,
    };
    if matches!(&prompt, Prompt::Text(t) if t.is_empty()) {
        bail!("the prompt is empty: give some text, or leave --prompt out to start from a newline");
    }
    let run = RunDir::open(&args.run)?;
    let device = backend::device(device)?;
    for i in 0..args.num_samples {
        if args.num_samples > 1 {
            println!("--- sample {} ---", i + 1);
        }
        let sampling = Sampling {
            max_new_tokens: args.max_new_tokens,
            temperature: args.temperature,
            top_k: args.top_k,
            seed: args.seed + i as u64,
            kv_cache: !args.no_kv_cache,
        };
        let weights = (args.weights == "best").then(|| run.best_path());
        stream_sample_from::<Inner>(&run, weights, &prompt, &sampling, &device)?;
        println!();
    }
    Ok(())
}

/// Prints the prompt, then each new token as soon as it is drawn.
pub fn stream_sample<B: Backend>(
    run: &RunDir,
    prompt: &Prompt,
    sampling: &Sampling,
    device: &B::Device,
) -> Result<()> {
    stream_sample_from::<B>(run, None, prompt, sampling, device)
}

fn stream_sample_from<B: Backend>(
    run: &RunDir,
    weights: Option<PathBuf>,
    prompt: &Prompt,
    sampling: &Sampling,
    device: &B::Device,
) -> Result<()> {
    let model = match weights {
        Some(path) if path.exists() => run.load_model_file::<B>(&path, device)?,
        Some(path) => bail!(
            "{} does not exist yet (no evaluation has finished)",
            path.display()
        ),
        None => run.load_model::<B>(device)?,
    };
    if let Some(task) = run.config()?.task() {
        return crate::solve::solve(&model, task, prompt, sampling, device);
    }
    let tokenizer = run.tokenizer()?;
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
        print!("{text}");
    }
    let mut out = std::io::stdout();
    generate(&model, &ids, sampling, device, |id| {
        let piece = tokenizer
            .decode(&[id])
            .expect("the model only emits ids of its vocabulary");
        let _ = write!(out, "{piece}");
        let _ = out.flush();
    })?;
    Ok(())
}
