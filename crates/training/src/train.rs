//! `train`: from a config and a text (or generated problems) to a trained run directory,
//! through burn-train. The run directory's lifecycle (create, resume, replace, lock) is
//! [`RunWriter`]'s; this file prepares the data and the Learner and launches it.

use crate::budget;
use crate::loader::{EpochLoader, Pass};
use crate::log::{History, RunLog};
use crate::metrics::{Perplexity, SplitMean, TokensPerSecond};
use crate::optim::MatrixDecayAdamW;
use crate::recorder::AtomicRecorder;
use crate::renderer::PlainRenderer;
use crate::run::marker::{Resume, now_unix_s};
use crate::run::writer::leftovers;
use crate::run::{DataRecord, RunDir, RunMarker, RunWriter};
use crate::schedule::NanoGptSchedule;
use crate::step::{NonFiniteWatch, OnNonFinite, StepPolicy, Trainee};
use crate::{RunConfig, TrainError};
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::LearningRateMetric;
use burn::train::{Interrupter, Learner, SupervisedTraining};
use data::{CharTokenizer, Corpus, Dataset, Split, TokenStore, Tokenizer, load_text, mix_seed};
use model::Model;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The reason the Ctrl-C handler gives the interrupter: a user's stop, not a failure.
pub const CTRL_C: &str = "Ctrl-C";
/// The reason burn-train's dashboard gives when the user presses `q`.
const TUI_STOP: &str = "Stopping training from user input.";

/// How `gpt train` starts.
pub enum Start {
    /// A new run with this config; `overwrite` replaces a run already in the directory.
    New {
        config: Box<RunConfig>,
        overwrite: bool,
    },
    /// Continue the run in the directory, with these `--set` overrides (recipe keys only).
    Resume { overrides: Vec<String> },
}

/// What `gpt train` asked for.
pub struct TrainOptions {
    pub start: Start,
    /// `--data`: a text file instead of the config's dataset.
    pub data: Option<PathBuf>,
    /// Accept a text that differs from the one the run was trained on.
    pub allow_data_change: bool,
    pub out_dir: PathBuf,
    /// Refuse configs whose training step would not fit in the available memory.
    pub memory_check: bool,
    /// Show burn-train's TUI dashboard (stdout is a terminal); else plain lines.
    pub tui: bool,
    /// Stops training after the current iteration (Ctrl-C, `q` in the TUI).
    pub interrupter: Interrupter,
}

/// How a training session ended.
#[derive(Debug)]
pub struct TrainReport {
    pub run: RunDir,
    /// Iterations done in total (across resumes), as of the last evaluation.
    pub iter: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Seconds spent training in this session.
    pub seconds: f64,
    pub interrupted: bool,
    /// Something the user should know (an old run put back, a leftover found).
    pub notes: Vec<String>,
}

/// What a run trains on, its tokenizer, and (for a text) the text's record. A text's
/// vocabulary is `saved` (a resumed or finished run's) or built from the text;
/// arithmetic has a fixed one.
pub fn prepare_corpus(
    config: &RunConfig,
    saved: Option<CharTokenizer>,
) -> Result<(Corpus, CharTokenizer, Option<DataRecord>), TrainError> {
    let Some(source) = config.train.dataset.text_source() else {
        let task = config.task().expect("arithmetic runs have a task");
        return Ok((Corpus::Problems(task.clone()), task.tokenizer(), None));
    };
    let text = load_text(&source)?;
    let record = DataRecord::of(&config.train.dataset, &text);
    let tokenizer = saved.unwrap_or_else(|| CharTokenizer::from_text(&text));
    let ids = tokenizer.encode(&text)?;
    let store = TokenStore::new(&ids, tokenizer.vocab_size());
    store.check_block_size(config.model.block_size)?;
    Ok((Corpus::Text(store), tokenizer, Some(record)))
}

/// Points `config` at `--data PATH` (made absolute, so the run finds it from anywhere).
pub fn use_data_file(config: &mut RunConfig, path: &Path) -> Result<(), TrainError> {
    if config.task().is_some() {
        return Err(TrainError::Config(
            "--data gives a text, but this run's dataset is generated arithmetic; drop one of them"
                .into(),
        ));
    }
    let path = std::path::absolute(path)
        .map_err(|e| TrainError::Config(format!("--data {}: {e}", path.display())))?;
    config.train.dataset = Dataset::File(path);
    Ok(())
}

/// The data of an existing run: its own, or `--data` when `allow_change` (or when it
/// names the same file). A text that changed since the run recorded it is refused unless
/// `allow_change`. Returns the corpus, the config pointing at the data used, and the
/// text's record.
pub fn run_corpus(
    run: &RunDir,
    mut config: RunConfig,
    data: Option<&Path>,
    allow_change: bool,
) -> Result<(Corpus, RunConfig, Option<DataRecord>), TrainError> {
    let recorded = run.marker()?.and_then(|m| m.data);
    if let Some(path) = data {
        let before = config.train.dataset.clone();
        use_data_file(&mut config, path)?;
        if config.train.dataset != before && !allow_change {
            return Err(TrainError::Run(format!(
                "this run was trained on {}; --data names another text: add --allow-data-change to use it",
                String::from(before)
            )));
        }
    }
    let (corpus, _, record) = prepare_corpus(&config, Some(run.tokenizer()?))?;
    if let (Some(was), Some(now)) = (&recorded, &record)
        && was.sha256 != now.sha256
        && !allow_change
    {
        return Err(TrainError::Run(format!(
            "the text {} is not the one this run was trained on (sha256 {}…, recorded {}…); add --allow-data-change to use it anyway",
            now.dataset,
            &now.sha256[..12],
            &was.sha256[..12]
        )));
    }
    Ok((corpus, config, record))
}

/// Config keys `--resume --set` may change: the recipe. Everything else (the model's
/// shape, the tokenizer's task, the data, the evaluation cadence that numbers the
/// checkpoints) would make it another run.
const RESUMABLE: &[&str] = &[
    "max_iters",
    "eval_iters",
    "learning_rate",
    "decay_lr",
    "warmup_iters",
    "lr_decay_iters",
    "min_lr",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
    "grad_clip",
    "on_nonfinite_loss",
    "seed",
    "keep_checkpoints",
    "batch_size",
    "dropout",
];

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

/// A run ready to launch: its writer, config, data and where it resumes.
struct Prepared {
    writer: RunWriter,
    config: RunConfig,
    corpus: Corpus,
    start_epoch: usize,
    history: History,
}

fn prepare<B: AutodiffBackend>(
    opts: &TrainOptions,
    device: &B::Device,
) -> Result<Prepared, TrainError> {
    let check_memory = |config: &RunConfig| {
        let available = opts.memory_check.then(budget::available_bytes).flatten();
        budget::check_fits(config, config.train.batch_size, available)
    };
    match &opts.start {
        Start::New { config, overwrite } => {
            let mut config = (**config).clone();
            if let Some(path) = &opts.data {
                use_data_file(&mut config, path)?;
            }
            let (corpus, tokenizer, record) = prepare_corpus(&config, None)?;
            config.model.vocab_size = tokenizer.vocab_size();
            config.model.validate()?;
            check_memory(&config)?;
            let writer = RunWriter::create(&opts.out_dir, *overwrite)?;
            writer.begin(&RunMarker::new(record), &config, &tokenizer)?;
            Ok(Prepared {
                writer,
                config,
                corpus,
                start_epoch: 0,
                history: History::default(),
            })
        }
        Start::Resume { overrides } => {
            // The lock first: a second trainer stops here, before touching anything.
            let writer = RunWriter::resume(&opts.out_dir)?;
            let run = writer.run();
            let config = resumed_config(&run.config()?, overrides)?;
            let (corpus, config, record) =
                run_corpus(run, config, opts.data.as_deref(), opts.allow_data_change)?;
            check_memory(&config)?;
            let start_epoch = run.checkpoint_epochs().pop().unwrap_or(0);
            if start_epoch > 0 {
                // The state must load under the (new) config before config.toml changes.
                run.load_model_file::<B::InnerBackend>(
                    &run.checkpoint_model_path(start_epoch),
                    device,
                )?;
            }
            // Forget evaluations logged after the checkpoint we resume from (a kill
            // between the log line and the checkpoint write), so log and weights agree.
            let rows: Vec<_> = run
                .rows()
                .into_iter()
                .filter(|r| r.epoch <= start_epoch)
                .collect();
            let mut marker = run.marker()?.unwrap_or_else(|| RunMarker::new(None));
            marker.data = record;
            marker.resumes.push(Resume {
                at_iter: rows.last().map_or(0, |r| r.iter),
                unix_s: now_unix_s(),
                set: overrides.clone(),
            });
            writer.continue_with(&marker, &config, &rows)?;
            Ok(Prepared {
                writer,
                config,
                corpus,
                start_epoch,
                history: History::new(rows),
            })
        }
    }
}

/// Trains (or resumes) a run. Blocks until `max_iters` or an interrupt.
pub fn train<B: AutodiffBackend>(
    opts: TrainOptions,
    device: &B::Device,
) -> Result<TrainReport, TrainError> {
    let Prepared {
        writer,
        config,
        corpus,
        start_epoch,
        history,
    } = prepare::<B>(&opts, device)?;
    let mut notes: Vec<String> = leftovers(&opts.out_dir)
        .iter()
        .map(|p| {
            format!(
                "{} holds a run an interrupted --overwrite moved aside; delete it or move it back",
                p.display()
            )
        })
        .collect();
    let run = writer.run().clone();
    let start = std::time::Instant::now();
    let launched = launch::<B>(
        &writer,
        &config,
        corpus,
        start_epoch,
        &history,
        &opts,
        device,
    );
    let settled = writer.settle()?;
    if let Err(e) = launched {
        return Err(match settled {
            Some(note) => TrainError::Run(format!("{e}; {note}")),
            None => e,
        });
    }
    notes.extend(settled);
    let last = history.rows().last().cloned();
    let iter = last.as_ref().map_or(0, |r| r.iter);
    Ok(TrainReport {
        iter,
        train_loss: last.as_ref().map_or(f64::NAN, |r| r.train_loss),
        val_loss: last.as_ref().map_or(f64::NAN, |r| r.val_loss),
        seconds: start.elapsed().as_secs_f64(),
        // (The TUI resets the interrupter when it closes, so ask the iteration count.)
        interrupted: iter < config.train.max_iters,
        run,
        notes,
    })
}

/// Builds the Learner and runs it from `start_epoch`; then saves the final and best
/// models. Any failure inside burn-train (a checkpoint or log write) is an error here.
fn launch<B: AutodiffBackend>(
    writer: &RunWriter,
    config: &RunConfig,
    corpus: Corpus,
    start_epoch: usize,
    history: &History,
    opts: &TrainOptions,
    device: &B::Device,
) -> Result<(), TrainError> {
    let run = writer.run();
    let t = &config.train;
    let num_epochs = t.max_iters.div_ceil(t.eval_interval);
    if start_epoch >= num_epochs {
        return Ok(());
    }
    B::seed(device, mix_seed(t.seed, start_epoch as u64));
    let model = Model::<B>::new(&config.model, device)?;
    let optim = MatrixDecayAdamW::init(config);
    let policy = StepPolicy {
        grad_clip: t.grad_clip,
        on_nonfinite: t.on_nonfinite_loss,
        watch: Arc::new(NonFiniteWatch::new(
            history.rows().last().map_or(0, |r| r.iter),
            opts.interrupter.clone(),
        )),
    };
    let watch = policy.watch.clone();
    let learner = Learner::new(
        Trainee::new(model, policy),
        optim,
        NanoGptSchedule::new(config),
    );
    let train_dl = EpochLoader::<B>::new(Pass::Train, corpus.clone(), config, start_epoch, device);
    let valid_dl =
        EpochLoader::<B::InnerBackend>::new(Pass::Eval, corpus, config, start_epoch, device);
    let log = RunLog::new(
        run.metrics_path(),
        history.clone(),
        !opts.tui,
        opts.interrupter.clone(),
    );
    let mut training = SupervisedTraining::new(run.path(), Arc::new(train_dl), Arc::new(valid_dl))
        .metric_train_numeric(SplitMean::loss())
        .metric_train_numeric(Perplexity::default())
        .metric_train_numeric(LearningRateMetric::new())
        .metric_train_numeric(TokensPerSecond::default())
        .metric_valid_numeric(SplitMean::loss_of(Split::Train))
        .metric_valid_numeric(SplitMean::loss_of(Split::Val))
        .with_metric_logger(log)
        .with_file_checkpointer(AtomicRecorder)
        .with_checkpointing_strategy(writer.checkpoint_policy(t.keep_checkpoints, history.clone()))
        .with_interrupter(opts.interrupter.clone())
        .num_epochs(num_epochs);
    if config.task().is_some() {
        training = training.metric_valid_numeric(SplitMean::exact_match());
    }
    if start_epoch > 0 {
        training = training.checkpoint(start_epoch);
    }
    if !opts.tui {
        training = training.renderer(PlainRenderer);
    }
    let result = training.launch(learner);
    if let (OnNonFinite::Stop, Some(iter)) = (t.on_nonfinite_loss, watch.first_nonfinite()) {
        // The update was skipped, but the run stops here: keep the last checkpoint
        // (all finite) as the model to resume from, and don't write model.mpk.
        let kept = match history.rows().last() {
            Some(r) => format!("keeping its last checkpoint (iteration {})", r.iter),
            None => "before its first checkpoint".to_string(),
        };
        return Err(TrainError::NonFinite { iter, kept });
    }
    // burn-train reports a failed checkpoint write (and our log a failed row) by stopping
    // the run with the cause as the reason; a user's stop gives one of these two.
    if let Some(reason) = opts.interrupter.get_message()
        && reason != CTRL_C
        && reason != TUI_STOP
    {
        return Err(TrainError::Run(format!("training failed: {reason}")));
    }
    if watch.skipped() > 0 {
        eprintln!(
            "warning: skipped {} updates whose loss was NaN or infinite (first at iteration {})",
            watch.skipped(),
            watch.first_nonfinite().unwrap_or(0)
        );
    }
    writer.finish(result.model, history)
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
