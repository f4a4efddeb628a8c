//! `gpt train`: train (or resume) a run, then print a sample from it.

use crate::backend::{self, Inner, Train};
use crate::preset::ConfigArgs;
use crate::prompt::Prompt;
use crate::sample::stream_sample;
use anyhow::Result;
use burn::train::Interrupter;
use model::Sampling;
use std::io::IsTerminal;
use std::path::PathBuf;
use training::train::CTRL_C;
use training::train::InitFrom;
use training::{Start, TrainOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Train on this text file instead of the config's dataset (recorded in the run, so
    /// --resume and eval use it again).
    #[arg(long)]
    data: Option<PathBuf>,
    /// With --resume: accept a text other than the one the run was trained on (another
    /// --data file, or the same file after it changed).
    #[arg(long, requires = "resume")]
    allow_data_change: bool,
    /// Train even when the config's estimated memory exceeds what the machine has.
    #[arg(long)]
    no_memory_check: bool,
    /// Run directory (default: runs/<preset name>).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Continue the run in --out-dir from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Replace the run in --out-dir (only a run directory; the old run is kept until the
    /// new one has its first checkpoint).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Characters of the sample printed when training ends (0: none).
    #[arg(long, default_value_t = 300)]
    sample_tokens: usize,
    /// Start from other weights (fresh optimizer and this config's schedule), as nanoGPT's
    /// init_from: another run's directory (the architecture and tokenizer must match), or
    /// Hugging Face GPT-2: gpt2, gpt2-medium, gpt2-large, gpt2-xl (downloaded once into the
    /// cache) or a directory holding config.json and model.safetensors, whose shape
    /// replaces the config's (its dropout kept; a smaller block_size crops). Recorded in
    /// run.json.
    #[arg(long, conflicts_with = "resume")]
    init_from: Option<PathBuf>,
    /// With --init-from: the other run's final weights (model.mpk) or its best (best.mpk).
    #[arg(long, requires = "init_from", value_parser = ["final", "best"], default_value = "final")]
    init_weights: String,
}

pub fn run(mut args: Args, device: Option<usize>) -> Result<()> {
    // `--init-from gpt2` (or a Hugging Face directory): the weights' local directory.
    let hf_init = match args.init_from.as_deref().and_then(|p| p.to_str()) {
        Some(spec) => crate::pretrained::hf_source(spec)
            .map(|source| source.locate())
            .transpose()?,
        None => None,
    };
    if let Some(dir) = &hf_init {
        args.init_from = Some(dir.clone());
    }
    let out_dir = args
        .out_dir
        .unwrap_or_else(|| PathBuf::from("runs").join(args.config.name()));
    let start = if args.resume {
        // A resumed run keeps its own config; --set may change the recipe (e.g. max_iters).
        if args.config.config.is_some() {
            anyhow::bail!("--resume continues the run's own config: drop --config");
        }
        Start::Resume {
            overrides: args.config.set.clone(),
        }
    } else {
        let mut config = args.config.load()?;
        if let Some(hf) = hf_init.as_deref() {
            config.model = pretrained_shape(hf, &config.model)?;
        }
        Start::New {
            config: Box::new(config),
            overwrite: args.overwrite,
        }
    };
    let device = backend::device(device)?;
    let interrupter = Interrupter::new();
    let on_signal = interrupter.clone();
    // Ctrl-C stops after the current iteration; the run is saved and can be resumed.
    let _ = ctrlc::set_handler(move || on_signal.stop(Some(CTRL_C)));
    let report = training::train::<Train>(
        TrainOptions {
            start,
            data: args.data,
            allow_data_change: args.allow_data_change,
            out_dir,
            memory_check: !args.no_memory_check,
            tui: std::io::stdout().is_terminal(),
            interrupter,
            init_from: args.init_from.map(|run| InitFrom {
                run,
                best: args.init_weights == "best",
            }),
        },
        &device,
    )?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    println!(
        "{} after {} iterations: train loss {:.4}, val loss {:.4} ({:.1} s on {}); run saved in {}",
        if report.interrupted {
            "stopped"
        } else {
            "done"
        },
        report.iter,
        report.train_loss,
        report.val_loss,
        report.seconds,
        backend::NAME,
        report.run.path().display()
    );
    if report.interrupted {
        println!(
            "resume with: gpt train --resume --out-dir {}",
            report.run.path().display()
        );
    }
    if args.sample_tokens > 0 {
        println!("--- sample ---");
        let sampling = Sampling {
            max_new_tokens: args.sample_tokens,
            ..Sampling::default()
        };
        stream_sample::<Inner>(&report.run, &Prompt::Start, &sampling, &device)?;
        println!();
    }
    Ok(())
}

/// The model a run that starts from the Hugging Face GPT-2 in `dir` trains: the
/// checkpoint's shape, with the config's dropout and, when smaller, its block_size.
fn pretrained_shape(dir: &std::path::Path, ours: &model::GptConfig) -> Result<model::GptConfig> {
    let theirs = model::hf::read_config(dir)?
        .to_gpt_config()
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let block_size = ours.block_size.min(theirs.block_size);
    if block_size < theirs.block_size {
        eprintln!(
            "note: cropping the checkpoint's block_size {} to the config's {block_size}",
            theirs.block_size
        );
    }
    Ok(model::GptConfig {
        dropout: ours.dropout,
        block_size,
        ..theirs
    })
}
