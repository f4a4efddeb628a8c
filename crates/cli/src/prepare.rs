//! `gpt prepare`: tokenize corpora larger than memory into `train.bin`/`val.bin` +
//! `meta.json` (see `data::prepared`), with a progress bar on a terminal and one line
//! per file otherwise.

use anyhow::Result;
use data::prepared::{Outcome, PrepareOptions, PrepareTokenizer, Progress, prepare};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// `gpt2` (GPT-2's byte-level BPE, 50257 tokens), `char` (one token per character),
    /// or a tokenizer.json that `gpt tokenizer train` wrote.
    #[arg(long, default_value = "gpt2")]
    tokenizer: String,
    /// `.txt` files (one document each), `.jsonl` files (a `text` field per line),
    /// directories of them, or a named dataset (`tinyshakespeare`). Repeatable; several
    /// paths may follow one --input.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// The directory to write (`train.bin`, `val.bin`, `meta.json`).
    #[arg(long)]
    out: PathBuf,
    /// Share of the data held out as val: the last tokens of a single text, else whole
    /// documents chosen by a fixed hash (nanoGPT's openwebtext uses 0.0005).
    #[arg(long, default_value_t = 0.0005)]
    val_fraction: f64,
    /// Prepare again even when DIR already holds these inputs, prepared.
    #[arg(long)]
    force: bool,
}

/// A progress bar with throughput and ETA (terminal), or a line per finished file.
struct Report {
    bar: Option<ProgressBar>,
    tokens: AtomicU64,
    started: Mutex<Instant>,
    file_started: Mutex<Instant>,
}

impl Report {
    fn new() -> Self {
        Self {
            bar: std::io::stderr().is_terminal().then(ProgressBar::no_length),
            tokens: AtomicU64::new(0),
            started: Mutex::new(Instant::now()),
            file_started: Mutex::new(Instant::now()),
        }
    }
}

impl Progress for Report {
    fn begin(&self, pass: &str, total_bytes: u64) {
        *self.started.lock().expect("no panics while locked") = Instant::now();
        *self.file_started.lock().expect("no panics while locked") = Instant::now();
        self.tokens.store(0, Ordering::Relaxed);
        match &self.bar {
            Some(bar) => {
                bar.reset();
                bar.set_length(total_bytes);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>10} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg} ETA {eta}",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(pass.to_string());
            }
            None => eprintln!("{pass} {:.1} MB", total_bytes as f64 / 1e6),
        }
    }

    fn advance(&self, bytes: u64, tokens: u64) {
        let total = self.tokens.fetch_add(tokens, Ordering::Relaxed) + tokens;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            if total > 0 {
                let secs = self
                    .started
                    .lock()
                    .expect("no panics while locked")
                    .elapsed()
                    .as_secs_f64();
                bar.set_message(format!(
                    "{:.1} M tokens ({:.2} M tokens/s)",
                    total as f64 / 1e6,
                    total as f64 / 1e6 / secs.max(1e-9)
                ));
            }
        }
    }

    fn file_done(&self, path: &Path, bytes: u64, tokens: u64) {
        let mut started = self.file_started.lock().expect("no panics while locked");
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        *started = Instant::now();
        if self.bar.is_none() {
            eprintln!(
                "{}: {:.1} MB, {tokens} tokens, {:.1} MB/s",
                path.display(),
                bytes as f64 / 1e6,
                bytes as f64 / 1e6 / secs
            );
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let report = Report::new();
    let start = Instant::now();
    let outcome = prepare(
        &PrepareOptions {
            tokenizer: match args.tokenizer.as_str() {
                "gpt2" => PrepareTokenizer::Gpt2,
                "char" => PrepareTokenizer::Char,
                file if Path::new(file).is_file() => {
                    PrepareTokenizer::Bpe(data::bpe::BpeTokenizer::load(Path::new(file))?)
                }
                other => anyhow::bail!(
                    "--tokenizer {other:?}: use char, gpt2 or the path of a tokenizer.json (`gpt tokenizer train` writes one)"
                ),
            },
            inputs: args.input,
            out: args.out.clone(),
            val_fraction: args.val_fraction,
            force: args.force,
        },
        &report,
    );
    if let Some(bar) = &report.bar {
        bar.finish_and_clear();
    }
    let secs = start.elapsed().as_secs_f64();
    match outcome? {
        Outcome::Unchanged(meta) => println!(
            "{} already holds these inputs prepared ({} train, {} val tokens); nothing to do (--force prepares again)",
            args.out.display(),
            meta.train_tokens,
            meta.val_tokens
        ),
        Outcome::Prepared(meta) => {
            let bytes: u64 = meta.inputs.iter().map(|i| i.bytes).sum();
            let tokens = meta.train_tokens + meta.val_tokens;
            println!(
                "prepared {}: {} tokenizer ({} tokens, {:?}), {} train + {} val tokens from {} documents in {} files ({:.1} MB) in {secs:.1} s: {:.1} MB/s, {:.2} M tokens/s",
                args.out.display(),
                meta.tokenizer.kind().name(),
                meta.vocab_size,
                meta.dtype,
                meta.train_tokens,
                meta.val_tokens,
                meta.documents,
                meta.inputs.len(),
                bytes as f64 / 1e6,
                bytes as f64 / 1e6 / secs.max(1e-9),
                tokens as f64 / 1e6 / secs.max(1e-9)
            );
        }
    }
    Ok(())
}
