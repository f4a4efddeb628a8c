//! `gpt`: train, sample, evaluate and inspect the lecture's GPT.
//!
//! The backend is fixed when the binary is built (`--features flex|ndarray|wgpu|cuda`);
//! see `backend.rs`. User mistakes end with one `error:` line and exit code 1.

// serde_json's `json!` of `gpt bench`'s report nests deeper than the default allows.
#![recursion_limit = "256"]

mod attention;
mod backend;
mod bench;
mod chat;
mod eval;
mod export;
mod fonts;
mod info;
#[cfg(not(feature = "ddp"))]
mod lecture;
mod peaks;
mod picture;
/// With Burn 0.21's `distributed` feature (the ddp build) autodiff needs a backend with an
/// all-reduce, which no CPU backend has: the lecture, which trains on the CPU, is not in it.
#[cfg(feature = "ddp")]
mod lecture {
    #[derive(clap::Args)]
    pub struct Args {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        _rest: Vec<String>,
    }

    pub fn run(_: Args) -> anyhow::Result<()> {
        anyhow::bail!(
            "gpt lecture trains on the CPU, which the ddp build cannot (Burn's distributed feature leaves no CPU autodiff): run it from the default build"
        )
    }
}
mod plot;
mod prepare;
mod preset;
mod pretrained;
mod prompt;
mod sample;
mod serve;
mod solve;
mod tokenizer;
mod train;

use clap::{Parser, Subcommand};

/// Training allocates and frees the same large activation buffers every step. glibc's
/// malloc returns big blocks to the OS and takes page faults to get them back each time;
/// mimalloc keeps them, which makes a CPU training step markedly cheaper (RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

/// mimalloc's `mi_option_purge_delay` (mimalloc.h; the Rust bindings leave it unnamed).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// By default mimalloc still hands memory freed for 10 ms back to the OS ("purging"). A
/// training step frees its activations and allocates them again a step later, so on the
/// full config each step faulted in, and the kernel zeroed, gigabytes of fresh pages: a
/// quarter of the step's time. Never purging keeps them; the resident size stays at one
/// step's peak, which it reaches anyway.
fn keep_freed_memory() {
    // SAFETY: sets a process-wide allocator option; mimalloc reads it at each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[derive(Parser)]
#[command(
    name = "gpt",
    version,
    about = "A GPT from scratch on Burn: train, sample, evaluate"
)]
struct Cli {
    /// GPU index for the cuda/wgpu backends (ignored on CPU).
    #[arg(long, global = true)]
    device: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (or resume a run), then print a sample from it.
    Train(train::Args),
    /// Stream text from a trained run, or solve a problem with an arithmetic run.
    Sample(sample::Args),
    /// Talk to a chat run (one finetuned on conversations): a REPL, or --message for
    /// scripts.
    Chat(chat::Args),
    /// Serve a run over an OpenAI-compatible HTTP API, with a web page at /.
    Serve(serve::Args),
    /// Train/val loss of a trained run (random batches, or --full over the val split);
    /// exact match on held-out problems for an arithmetic run.
    Eval(eval::Args),
    /// A run's config, size, progress and last losses.
    Info(info::Args),
    /// Plot a run's loss and learning-rate curves to a PNG.
    Plot(plot::Args),
    /// Draw a trained model's attention weights on a prompt as heat maps (a PNG).
    Attention(attention::Args),
    Lecture(lecture::Args),
    /// Time training steps and sampling (tokens/s, ms/step, MFU, peak memory).
    Bench(bench::Args),
    /// Write a run as a Hugging Face GPT-2 directory (config.json, model.safetensors,
    /// tokenizer files) that transformers' GPT2LMHeadModel.from_pretrained loads.
    Export(export::Args),
    /// Tokenize corpora (.txt, .jsonl, directories) into train.bin/val.bin + meta.json.
    Prepare(prepare::Args),
    /// Train a byte-level BPE on your own corpus; encode, decode and inspect tokenizers.
    #[command(subcommand)]
    Tokenizer(tokenizer::Command),
}

/// Set when any thread panicked: the run cannot be trusted to have done its work.
static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A panic is a bug in gpt or a library, never a user mistake (those are checked before
/// the call that would panic). Report it as one `error:` line, and make sure the
/// process fails even when the panic was on a worker thread that the main thread
/// outlives (burn-train's metric or checkpoint threads).
fn report_panics() {
    std::panic::set_hook(Box::new(|info| {
        PANICKED.store(true, std::sync::atomic::Ordering::SeqCst);
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        let thread = std::thread::current();
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error in thread {}: {}{place} (a bug: please report it)",
            thread.name().unwrap_or("unnamed"),
            what.replace('\n', " ")
        );
    }));
}

fn main() -> ExitCode {
    keep_freed_memory();
    report_panics();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => train::run(a, cli.device),
        Command::Sample(a) => sample::run(a, cli.device),
        Command::Chat(a) => chat::run(a, cli.device),
        Command::Serve(a) => serve::run(a, cli.device),
        Command::Eval(a) => eval::run(a, cli.device),
        Command::Info(a) => info::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Attention(a) => attention::run(a, cli.device),
        Command::Lecture(a) => lecture::run(a),
        Command::Bench(a) => bench::run(a, cli.device),
        Command::Prepare(a) => prepare::run(a),
        Command::Export(a) => export::run(a, cli.device),
        Command::Tokenizer(c) => tokenizer::run(c),
    };
    match result {
        Ok(()) if PANICKED.load(std::sync::atomic::Ordering::SeqCst) => ExitCode::FAILURE,
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, no backtrace.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
