//! `gpt eval`: the train/val loss of a saved model; for an arithmetic run, also its exact
//! match on held-out problems, per operator and size.

use crate::backend::{self, Inner};
use crate::prompt::RunArg;
use anyhow::{Result, bail};
use data::generator::Cell;
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
    /// Held-out problems per cell (arithmetic runs: operator × digits of a × digits of
    /// b), distinct; all of a cell's when it has fewer.
    #[arg(long, default_value_t = 200)]
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
        let problems: Vec<_> = Cell::all(task)
            .iter()
            .flat_map(|cell| cell.held_out(args.problems, args.seed))
            .collect();
        let cells = exact_match(&model, task, &problems, &device)?;
        let share = |k: usize, n: usize| k as f64 / n.max(1) as f64;
        let solved = cells.iter().map(|c| c.solved).sum();
        let traced = cells.iter().map(|c| c.traced).sum();
        json["exact_match"] = share(solved, problems.len()).into();
        json["trace_exact"] = share(traced, problems.len()).into();
        json["problems"] = problems.len().into();
        json["cells"] = cells
            .iter()
            .map(|c| {
                serde_json::json!({
                    "op": c.cell.op.to_string(),
                    "digits_a": c.cell.digits_a,
                    "digits_b": c.cell.digits_b,
                    "problems": c.total,
                    "exact_match": c.exact_match(),
                    "lower_95": c.lower_95(),
                    "trace_exact": c.trace_exact(),
                })
            })
            .collect();
        lines.push(format!(
            "exact match on {} held-out problems: {:.2} % (whole answer, trace included: {:.2} %)",
            problems.len(),
            100.0 * share(solved, problems.len()),
            100.0 * share(traced, problems.len()),
        ));
        lines.push(
            "  cell (a op b digits)  problems  exact match  95 % lower bound  trace exact".into(),
        );
        lines.extend(cells.iter().map(|c| {
            format!(
                "  {}{}{}{:>17}{:>10}{:>12.2} %{:>16.2} %{:>12.2} %",
                c.cell.digits_a,
                c.cell.op,
                c.cell.digits_b,
                "",
                c.total,
                100.0 * c.exact_match(),
                100.0 * c.lower_95(),
                100.0 * c.trace_exact(),
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
