//! `gpt eval`: the train/val loss of a saved model.

use crate::backend::{self, Inner};
use anyhow::Result;
use data::{Split, TextSource, load_text};
use std::path::PathBuf;
use training::RunDir;
use training::eval::{estimate_loss, full_split_loss};
use training::train::{prepare_tokens, text_source};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    run: PathBuf,
    /// Also the deterministic loss over every consecutive block_size window of val.
    #[arg(long)]
    full: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The text the run was trained on, if not its config's dataset.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Random batches per split (default: the run's eval_iters).
    #[arg(long)]
    eval_iters: Option<usize>,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
}

pub fn run(args: Args, device: Option<usize>) -> Result<()> {
    let run = RunDir::open(&args.run)?;
    let config = run.config()?;
    let text = load_text(&text_source(&config, args.data.map(TextSource::Path)))?;
    let store = prepare_tokens(&text, &run.tokenizer()?, config.model.block_size)?;
    let device = backend::device(device)?;
    let model = run.load_model::<Inner>(&device)?;
    let t = &config.train;
    let sizes = (
        config.model.block_size,
        t.batch_size,
        args.eval_iters.unwrap_or(t.eval_iters),
    );
    let train_loss = estimate_loss(&model, &store, Split::Train, sizes, args.seed, &device);
    let val_loss = estimate_loss(&model, &store, Split::Val, sizes, args.seed, &device);
    let full = args.full.then(|| {
        let val = store.split(Split::Val).clone();
        full_split_loss(&model, val, config.model.block_size, t.batch_size, &device)
    });
    let iter = run.rows().last().map_or(0, |r| r.iter);
    if args.json {
        let json = serde_json::json!({
            "iter": iter,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "full_val_loss": full.map(|(loss, _)| loss),
            "full_val_tokens": full.map(|(_, n)| n),
        });
        println!("{json}");
    } else {
        println!("iter {iter}: train loss {train_loss:.4}, val loss {val_loss:.4}");
        if let Some((loss, n)) = full {
            println!("whole val split: loss {loss:.4} over {n} tokens");
        }
    }
    Ok(())
}
