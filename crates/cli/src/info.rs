//! `gpt info`: what a run is and how far it got.

use crate::backend::Inner;
use crate::prompt::RunArg;
use anyhow::Result;
use model::num_params;

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
    let marker = run.marker()?;
    let data = marker.as_ref().and_then(|m| m.data.clone());
    let init_from = marker.as_ref().and_then(|m| m.init_from.clone());
    let tokenizer = run.tokenizer()?;
    // Which attention this build runs (the fused CPU kernel, or the explicit path).
    let attention = model::attention_path::<Inner>().as_str();
    let rows = run.rows()?;
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
            "tokenizer": tokenizer.kind().name(),
            "init_from": init_from,
            "tokens_per_iter": config.train.batch_size
                * config.model.block_size
                * config.train.gradient_accumulation_steps,
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
    println!(
        "tokenizer: {} ({} tokens); {} tokens per iteration (batch_size × block_size × gradient_accumulation_steps)",
        tokenizer.kind().name(),
        data::Tokenizer::vocab_size(&tokenizer),
        config.train.batch_size
            * config.model.block_size
            * config.train.gradient_accumulation_steps
    );
    if let Some(init) = &init_from {
        println!(
            "started from: {} ({} weights, iteration {}, sha256 {})",
            init.run, init.weights, init.iter, init.sha256
        );
    }
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
