//! `gpt info`: what a run is and how far it got.

use crate::backend::Inner;
use crate::prompt::RunArg;
use anyhow::Result;
use training::budget::num_params;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArg,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let run = args.run.open()?;
    let config = run.config()?;
    let params = num_params(&config.model).unwrap_or(u128::MAX);
    let data = run.marker()?.and_then(|m| m.data);
    // Which attention this build runs (the fused CPU kernel, or the explicit path).
    let attention = model::attention_path::<Inner>().as_str();
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
            "data": data,
            "backend": crate::backend::NAME,
            "attention": attention,
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
    println!("backend: {}, attention: {attention}", crate::backend::NAME);
    if let Some(d) = &data {
        println!(
            "data: {} ({} bytes, sha256 {})",
            d.dataset, d.bytes, d.sha256
        );
    }
    println!("--- config.toml ---\n{}", config.to_toml());
    Ok(())
}
