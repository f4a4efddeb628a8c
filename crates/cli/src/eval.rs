//! `gpt eval`: the train/val loss of a saved model; for an arithmetic run, also its exact
//! match on held-out problems, per operator and size.

use crate::backend::{self, Inner};
use crate::prompt::RunArg;
use anyhow::{Result, bail};
use data::generator::held_out_set;
use data::{Corpus, Split};
use std::path::PathBuf;
use training::eval::{estimate_loss, full_split_loss};
use training::exact::exact_match;
use training::setup::open_run_data;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArg,
    /// Also the deterministic loss over all of val: every consecutive block_size window
    /// of a text, or every conversation of a chat run.
    #[arg(long)]
    full: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Evaluate on this text file (default: the run's own data). Another text than the
    /// run's needs --allow-data-change.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Accept a text other than the one the run was trained on.
    #[arg(long)]
    allow_data_change: bool,
    /// Random batches per split (default: the run's eval_iters).
    #[arg(long)]
    eval_iters: Option<usize>,
    /// Held-out problems to draw (arithmetic runs); a problem drawn twice is scored once.
    #[arg(long, default_value_t = 3000)]
    problems: usize,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
}

pub fn run(args: Args, device: Option<usize>) -> Result<()> {
    if args.eval_iters == Some(0) || args.problems == 0 {
        bail!("--eval-iters and --problems must be at least 1");
    }
    let run = args.run.open()?;
    let config = run.config()?;
    if args.full && config.task().is_some() {
        bail!(
            "--full walks a text's val split; an arithmetic run is scored on held-out problems instead"
        );
    }
    let (config, data) = open_run_data(&run, config, args.data.as_deref(), args.allow_data_change)?;
    let corpus = data.corpus;
    let device = backend::device(device)?;
    let model = run.load_model::<Inner>(&device)?;
    let t = &config.train;
    let sizes = (
        config.model.block_size,
        t.batch_size,
        args.eval_iters.unwrap_or(t.eval_iters),
    );
    let train_loss = estimate_loss(&model, &corpus, Split::Train, sizes, args.seed, &device);
    let val_loss = estimate_loss(&model, &corpus, Split::Val, sizes, args.seed, &device);
    let iter = run.rows()?.last().map_or(0, |r| r.iter);
    let mut json = serde_json::json!({
        "iter": iter,
        "train_loss": train_loss,
        "val_loss": val_loss,
    });
    // A chat run learns, and is scored on, the assistant's replies only (an arithmetic
    // run, its answers).
    let chat = matches!(corpus, Corpus::Conversations(_));
    json["loss_on"] = match corpus {
        Corpus::Text(_) => "all_tokens",
        Corpus::Conversations(_) => "assistant_tokens",
        Corpus::Problems(_) => "answer_tokens",
    }
    .into();
    let mut lines = vec![format!(
        "iter {iter}: train loss {train_loss:.4}, val loss {val_loss:.4}{}",
        if chat {
            " (on the assistant's tokens)"
        } else {
            ""
        }
    )];
    if let Some(task) = config.task() {
        let problems = held_out_set(task, args.problems, args.seed);
        let cases = exact_match(&model, task, &problems, &device)?;
        let share = |solved: usize, total: usize| solved as f64 / total.max(1) as f64;
        let solved = cases.iter().map(|c| c.solved).sum();
        json["exact_match"] = share(solved, problems.len()).into();
        json["problems"] = problems.len().into();
        json["cases"] = cases
            .iter()
            .map(|c| {
                serde_json::json!({
                    "op": c.op.to_string(),
                    "digits": c.digits,
                    "exact_match": share(c.solved, c.total),
                    "problems": c.total,
                })
            })
            .collect();
        lines.push(format!(
            "exact match on {} held-out problems: {:.2} %",
            problems.len(),
            100.0 * share(solved, problems.len())
        ));
        lines.extend(cases.iter().map(|c| {
            format!(
                "  {} with {} digits: {:.2} % of {}",
                c.op,
                c.digits,
                100.0 * share(c.solved, c.total),
                c.total
            )
        }));
    } else if args.full {
        let block_size = config.model.block_size;
        let (loss, n) = full_split_loss(
            &model,
            &corpus,
            Split::Val,
            block_size,
            t.batch_size,
            &device,
        )
        .expect("a text or conversations");
        json["full_val_loss"] = loss.into();
        json["full_val_tokens"] = n.into();
        lines.push(format!("whole val split: loss {loss:.4} over {n} tokens"));
    }
    if args.json {
        println!("{json}");
    } else {
        println!("{}", lines.join("\n"));
    }
    Ok(())
}
