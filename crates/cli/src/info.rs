//! `gpt info`: what a run is and how far it got.

use crate::backend::Inner;
use crate::prompt::RunArg;
use anyhow::Result;
use model::num_params;
use training::log::TrainPoint;
use training::logged::STEP_VALUES;

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
    let step = run.train_log()?.last().copied();
    let checkpoints = run.checkpoint_epochs();
    if args.json {
        let json = serde_json::json!({
            "iter": last.map_or(0, |r| r.iter),
            "params": params,
            "train_loss": last.map(|r| r.train_loss),
            "val_loss": last.map(|r| r.val_loss),
            "elapsed_s": last.map(|r| r.elapsed_s),
            "last_step": step.map(step_json),
            "checkpoints": checkpoints,
            "data": data,
            "tokenizer": tokenizer.kind().name(),
            "tokenizer_sha256": tokenizer.bpe_sha256(),
            "chat": tokenizer.is_chat(),
            "init_from": init_from,
            "tokens_per_iter": config.train.batch_size
                * config.model.block_size
                * config.train.gradient_accumulation_steps,
            "backend": crate::backend::NAME,
            "attention": attention,
            "matmul_isa": crate::backend::matmul_isa(),
            "bf16_isa": crate::backend::bf16_isa(),
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
    if let Some(step) = &step {
        println!("{}", step_line(step));
    }
    println!("checkpoints after evaluations: {checkpoints:?}");
    let chat = if tokenizer.is_chat() {
        format!(
            " + {} chat tokens: a chat run (talk to it with gpt chat)",
            data::Special::ALL.len()
        )
    } else {
        String::new()
    };
    let file = tokenizer
        .bpe_sha256()
        .map(|sha| format!(", file sha256 {sha}"))
        .unwrap_or_default();
    println!(
        "tokenizer: {} ({} tokens{chat}{file}); {} tokens per iteration (batch_size × block_size × gradient_accumulation_steps)",
        tokenizer.kind().name(),
        tokenizer.base_vocab_size(),
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
    println!(
        "backend: {}, attention: {attention}{}",
        crate::backend::NAME,
        crate::backend::isa_note()
    );
    if let Some(d) = &data {
        println!(
            "data: {} ({} bytes, sha256 {})",
            d.dataset, d.bytes, d.sha256
        );
    }
    println!("--- config.toml ---\n{}", config.to_toml());
    Ok(())
}

/// The last row of `train_log.csv`: its iteration and every step value it has (null
/// where absent).
fn step_json(step: TrainPoint) -> serde_json::Value {
    let mut json = serde_json::Map::new();
    json.insert("iter".into(), step.iter.into());
    for v in STEP_VALUES {
        json.insert(v.name.into(), step.get(v).into());
    }
    json.into()
}

/// `last logged step: iteration 20, loss 2.3456 (training batch loss), …`.
fn step_line(step: &TrainPoint) -> String {
    let values: Vec<String> = STEP_VALUES
        .iter()
        .filter_map(|v| {
            let x = step.get(v)?;
            Some(format!("{} {x:.*} ({})", v.name, v.precision, v.about))
        })
        .collect();
    if values.is_empty() {
        return format!("last logged step: iteration {}, no finite value", step.iter);
    }
    format!(
        "last logged step: iteration {}, {}",
        step.iter,
        values.join(", ")
    )
}
