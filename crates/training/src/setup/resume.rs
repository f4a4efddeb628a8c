//! `--resume`: the run in the directory, continued from its newest checkpoint under its
//! own config, of which only the recipe may change.

use super::RunSetup;
use super::init_from::pending_init_weights;
use super::run_data::open_run_data;
use crate::log::{EvalRow, History};
use crate::run::marker::{Resume, now_unix_s};
use crate::run::{RunDir, RunMarker, RunWriter};
use crate::train::TrainOptions;
use crate::{RunConfig, TrainError};
use burn::tensor::backend::AutodiffBackend;
use data::OpenDataset;
use std::path::Path;

/// Config keys `--resume --set` may change: the recipe. Everything else (the model's
/// shape, the tokenizer's task, the data, the evaluation cadence that numbers the
/// checkpoints) would make it another run.
const RESUMABLE: &[&str] = &[
    "max_iters",
    "eval_iters",
    "log_interval",
    "learning_rate",
    "decay_lr",
    "warmup_iters",
    "lr_decay_iters",
    "min_lr",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
    "muon_lr",
    "muon_momentum",
    "muon_ns_steps",
    "muon_weight_decay",
    "lr_schedule",
    "warmdown_iters",
    "grad_clip",
    "on_nonfinite_loss",
    "seed",
    "keep_checkpoints",
    "batch_size",
    "gradient_accumulation_steps",
    "dropout",
    "dtype",
];

/// The keys of the config file `file` whose values differ from the run's `saved` config,
/// as overrides. With `--data`, the file's dataset keys give way to it, as in a new run.
fn changed_keys(saved: &RunConfig, file: &Path, data: bool) -> Result<Vec<String>, TrainError> {
    let text = saved.to_toml();
    let mut changed = Vec::new();
    for kv in RunConfig::file_as_overrides(file)? {
        let key = kv.split_once('=').map_or("", |(k, _)| k);
        if data && key == "train.dataset" {
            continue;
        }
        // A key that does not parse stays, so that resumed_config names the error.
        let same = RunConfig::parse(&text, "the run's config.toml", std::slice::from_ref(&kv))
            .is_ok_and(|c| c == *saved);
        if !same {
            changed.push(kv);
        }
    }
    Ok(changed)
}

/// The saved config with `overrides` applied, refusing keys that would change the run.
fn resumed_config(saved: &RunConfig, overrides: &[String]) -> Result<RunConfig, TrainError> {
    let text = saved.to_toml();
    let config = RunConfig::parse(&text, "the run's config.toml", overrides)?;
    let before = toml::Table::try_from(saved).expect("configs serialise");
    let after = toml::Table::try_from(&config).expect("configs serialise");
    for (section, table) in &after {
        let old = before.get(section).and_then(|t| t.as_table());
        for (key, value) in table.as_table().into_iter().flatten() {
            let changed = old.and_then(|o| o.get(key)) != Some(value);
            if changed && !RESUMABLE.contains(&key.as_str()) {
                return Err(TrainError::Config(format!(
                    "--resume cannot change {section}.{key}: it would be another run (only {} may change); start a new run with another --out-dir",
                    RESUMABLE.join(", ")
                )));
            }
        }
    }
    Ok(config)
}

/// Sets up the run in `opts.out_dir` to continue, with the keys of `config` (the file
/// that started it, named again) and the `--set` overrides `set` applied.
pub(super) fn set_up<B: AutodiffBackend>(
    opts: &TrainOptions,
    config: Option<&Path>,
    set: &[String],
    device: &B::Device,
) -> Result<RunSetup, TrainError> {
    // The lock first: a second trainer stops here, before touching anything.
    let writer = RunWriter::resume(&opts.out_dir)?;
    let run = writer.run();
    let saved = run.config()?;
    let mut overrides = match config {
        Some(file) => changed_keys(&saved, file, opts.data.is_some())?,
        None => Vec::new(),
    };
    overrides.extend(set.iter().cloned());
    let overrides = &overrides;
    let config = resumed_config(&saved, overrides)?;
    let (config, OpenDataset { corpus, record, .. }) =
        open_run_data(run, config, opts.data.as_deref(), opts.allow_data_change)?;
    super::check_memory(opts, &config)?;
    let (start_epoch, rows) = resume_point(run)?;
    if start_epoch > 0 {
        // The state must load under the (new) config before config.toml changes.
        run.load_model_file::<B::InnerBackend>(&run.checkpoint_model_path(start_epoch), device)?;
        run.check_training_state::<B>(start_epoch, device)?;
    }
    let mut marker = run.marker()?.unwrap_or_else(|| RunMarker::new(None));
    marker.data = record;
    if marker.tokenizer.is_none() {
        marker.tokenizer = Some(run.tokenizer()?.kind());
    }
    let init_weights = pending_init_weights(&marker, start_epoch)?;
    marker.resumes.push(Resume {
        at_iter: rows.last().map_or(0, |r| r.iter),
        unix_s: now_unix_s(),
        set: overrides.clone(),
    });
    writer.continue_with(&marker, &config, &rows)?;
    Ok(RunSetup {
        writer,
        config,
        corpus,
        start_epoch,
        history: History::new(rows),
        init_weights,
    })
}

/// Where a run resumes: its newest checkpoint's epoch (0: none yet), and the evaluations
/// logged up to it. Evaluations logged after it (a kill between the log line and the
/// checkpoint write) are forgotten, so log and weights agree. Both logs must read whole
/// first: a damaged line is an error, never a reason to rewrite a log without it.
pub(super) fn resume_point(run: &RunDir) -> Result<(usize, Vec<EvalRow>), TrainError> {
    let start_epoch = run.checkpoint_epochs().pop().unwrap_or(0);
    run.train_log()?;
    let rows = run
        .rows()?
        .into_iter()
        .filter(|r| r.epoch <= start_epoch)
        .collect();
    Ok((start_epoch, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_refuses_keys_that_make_another_run() {
        let saved = RunConfig::default();
        let ok = resumed_config(
            &saved,
            &["max_iters=9000".into(), "learning_rate=1e-4".into()],
        )
        .unwrap();
        assert_eq!(ok.train.max_iters, 9000);
        for key in [
            "n_embd=48",
            "block_size=32",
            "dataset=file:x.txt",
            "eval_interval=7",
            "n_digits=2",
        ] {
            let msg = resumed_config(&saved, &[key.into()])
                .unwrap_err()
                .to_string();
            let name = key.split('=').next().unwrap();
            assert!(msg.contains(&format!(".{name}")), "{key}: {msg}");
        }
    }
}
