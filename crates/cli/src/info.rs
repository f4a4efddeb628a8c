//! `gpt info`: what a run is and how far it got.

use anyhow::Result;
use burn::backend::Flex;
use burn::module::Module;
use model::Model;
use std::path::PathBuf;
use training::RunDir;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    run: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let run = RunDir::open(&args.run)?;
    let config = run.config()?;
    // Counting parameters needs only the shapes, so a CPU model will do.
    let params = Model::<Flex>::new(&config.model, &Default::default())?.num_params();
    let rows = run.rows();
    let last = rows.last();
    let checkpoints = run.checkpoint_epochs();
    if args.json {
        let json = serde_json::json!({
            "iter": last.map_or(0, |r| r.iter),
            "params": params,
            "train_loss": last.map(|r| r.train_loss),
            "val_loss": last.map(|r| r.val_loss),
            "elapsed_s": last.map(|r| r.elapsed_s),
            "checkpoints": checkpoints,
            "config": config,
        });
        println!("{json}");
        return Ok(());
    }
    println!("run {}", run.path().display());
    println!(
        "model: {:?}, {:.2} M parameters ({params})",
        config.model.model,
        params as f64 / 1e6
    );
    match last {
        Some(r) => println!(
            "iterations: {} of {}; last eval: train loss {:.4}, val loss {:.4}; {:.1} s of training",
            r.iter, config.train.max_iters, r.train_loss, r.val_loss, r.elapsed_s
        ),
        None => println!(
            "iterations: 0 of {} (no evaluation yet)",
            config.train.max_iters
        ),
    }
    println!("checkpoints after evaluations: {checkpoints:?}");
    println!("--- config.toml ---\n{}", config.to_toml());
    Ok(())
}
