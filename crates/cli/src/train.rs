//! `gpt train`: train (or resume) a run, then print a sample from it.

use crate::backend::{self, Inner, Train};
use crate::preset::ConfigArgs;
use crate::sample::{Prompt, stream_sample};
use anyhow::Result;
use burn::train::Interrupter;
use data::TextSource;
use model::Sampling;
use std::io::IsTerminal;
use std::path::PathBuf;
use training::{RunConfig, RunDir, TrainOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Train on this text file instead of the config's dataset.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run directory (default: runs/<preset name>).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Continue the run in --out-dir from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Replace a run already in --out-dir.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Characters of the sample printed when training ends (0: none).
    #[arg(long, default_value_t = 300)]
    sample_tokens: usize,
}

pub fn run(args: Args, device: Option<usize>) -> Result<()> {
    let out_dir = args
        .out_dir
        .unwrap_or_else(|| PathBuf::from("runs").join(args.config.name()));
    let config = if args.resume {
        // A resumed run keeps its own config; --set may change the recipe (e.g. max_iters).
        let run = RunDir::open(&out_dir)?;
        let text = std::fs::read_to_string(run.config_path())?;
        let what = run.config_path().display().to_string();
        RunConfig::parse(&text, &what, &args.config.set)?
    } else {
        args.config.load()?
    };
    let device = backend::device(device)?;
    let interrupter = Interrupter::new();
    let on_signal = interrupter.clone();
    // Ctrl-C stops after the current iteration; the run is saved and can be resumed.
    let _ = ctrlc::set_handler(move || on_signal.stop(Some("Ctrl-C")));
    let report = training::train::<Train>(
        TrainOptions {
            config,
            data: args.data.map(TextSource::Path),
            out_dir,
            resume: args.resume,
            overwrite: args.overwrite,
            tui: std::io::stdout().is_terminal(),
            interrupter,
        },
        &device,
    )?;
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
