//! What generation starts from, how it draws, and the run a command reads.

use anyhow::{Context, Result, bail};
use model::Sampling;
use std::path::{Path, PathBuf};
use training::RunDir;

/// The largest prompt file read (a prompt longer than any context is cropped anyway).
const MAX_PROMPT_BYTES: u64 = 1 << 20;

/// What generation starts from.
pub enum Prompt {
    /// nanoGPT's default start: a newline.
    Start,
    Text(String),
}

impl Prompt {
    /// `--prompt TEXT`, `--prompt-file F` (a regular file of at most 1 MiB), or neither.
    pub fn from_args(text: Option<&str>, file: Option<&Path>) -> Result<Self> {
        let prompt = match (text, file) {
            (Some(p), _) => Prompt::Text(p.to_string()),
            (None, Some(f)) => {
                data::source::check_regular_file(f, MAX_PROMPT_BYTES)?;
                Prompt::Text(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?,
                )
            }
            (None, None) => Prompt::Start,
        };
        if matches!(&prompt, Prompt::Text(t) if t.is_empty()) {
            bail!(
                "the prompt is empty: give some text, or leave --prompt out to start from a newline"
            );
        }
        Ok(prompt)
    }
}

/// `--run DIR`, shared by the commands that read a run. Without it: the most recently
/// trained run under `runs/`, as nanoGPT's `sample.py` reads `out/` by default.
#[derive(clap::Args)]
pub struct RunArg {
    /// The run directory (default: the most recently trained run under runs/).
    #[arg(long)]
    run: Option<PathBuf>,
}

impl RunArg {
    pub fn open(&self) -> Result<RunDir> {
        Ok(match &self.run {
            Some(dir) => RunDir::open(dir)?,
            None => {
                let run = RunDir::latest(Path::new("runs"))?;
                eprintln!(
                    "using {} (the most recently trained run; --run DIR picks another)",
                    run.path().display()
                );
                run
            }
        })
    }
}

/// How `gpt sample` and `gpt chat` draw tokens.
#[derive(clap::Args)]
pub struct SamplingArgs {
    /// Tokens to generate (an arithmetic run writes its answer's length; a chat reply
    /// also ends at its end token).
    #[arg(long, default_value_t = 500)]
    max_new_tokens: usize,
    /// Below 1: more conservative; above 1: more surprising. Must be > 0; near 0 it is
    /// greedy decoding.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Sample only among the K most likely tokens (1: greedy).
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Recompute the whole context for every token, as nanoGPT does (slower, same text).
    #[arg(long)]
    no_kv_cache: bool,
}

impl SamplingArgs {
    /// The settings, refused before anything is printed when they cannot sample; the
    /// seed advanced by `offset` (`--num-samples`' later samples).
    pub fn sampling(&self, offset: u64) -> Result<Sampling> {
        if self.max_new_tokens == 0 {
            bail!("--max-new-tokens must be at least 1");
        }
        let sampling = Sampling {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            seed: self.seed.wrapping_add(offset),
            kv_cache: !self.no_kv_cache,
        };
        sampling.validate()?;
        Ok(sampling)
    }
}
