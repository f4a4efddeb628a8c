//! What generation starts from, and the run a command reads.

use anyhow::{Context, Result, bail};
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
