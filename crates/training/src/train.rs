//! `train`: from a config and a text (or generated problems) to a trained run directory,
//! through burn-train.

use crate::loader::{EpochLoader, Pass};
use crate::log::{History, KeepRecentAndBest, RunLog, write_rows};
use crate::metrics::{Perplexity, SplitMean, TokensPerSecond};
use crate::optim::MatrixDecayAdamW;
use crate::recorder::AtomicRecorder;
use crate::renderer::PlainRenderer;
use crate::run::RunDir;
use crate::schedule::NanoGptSchedule;
use crate::step::{NonFiniteWatch, OnNonFinite, StepPolicy, Trainee};
use crate::{RunConfig, TrainError};
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::LearningRateMetric;
use burn::train::{Interrupter, Learner, SupervisedTraining};
use data::{CharTokenizer, Corpus, Split, TextSource, TokenStore, Tokenizer, load_text, mix_seed};
use model::Model;
use std::path::PathBuf;
use std::sync::Arc;

/// What `gpt train` asked for.
pub struct TrainOptions {
    /// For a resumed run: the overrides are applied on top of the run's own config.
    pub config: RunConfig,
    /// Overrides the config's `dataset`.
    pub data: Option<TextSource>,
    pub out_dir: PathBuf,
    pub resume: bool,
    /// Replace a run already in `out_dir`.
    pub overwrite: bool,
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
}

/// What the run trains on, and its tokenizer. A text's vocabulary is `saved` (a resumed
/// or finished run's) or built from the text; arithmetic has a fixed one.
pub fn prepare_corpus(
    config: &RunConfig,
    data: Option<TextSource>,
    saved: Option<CharTokenizer>,
) -> Result<(Corpus, CharTokenizer), TrainError> {
    if let Some(task) = config.task() {
        if data.is_some() {
            return Err(TrainError::Config(
                "--data gives a text, but this run's dataset is generated arithmetic; drop one of them".into(),
            ));
        }
        return Ok((Corpus::Problems(task.clone()), task.tokenizer()));
    }
    let text = load_text(&text_source(config, data))?;
    let tokenizer = saved.unwrap_or_else(|| CharTokenizer::from_text(&text));
    let store = prepare_tokens(&text, &tokenizer, config.model.block_size)?;
    Ok((Corpus::Text(store), tokenizer))
}

/// Where the text comes from: `--data`, else the config's `dataset` (a name or a path).
fn text_source(config: &RunConfig, data: Option<TextSource>) -> TextSource {
    data.unwrap_or_else(|| {
        let d = &config.train.dataset;
        if d.contains('/') || d.contains('.') {
            TextSource::Path(d.into())
        } else {
            TextSource::Named(d.clone())
        }
    })
}

/// Tokenizes the text and splits it 90/10.
fn prepare_tokens(
    text: &str,
    tokenizer: &CharTokenizer,
    block_size: usize,
) -> Result<TokenStore, TrainError> {
    let ids = tokenizer.encode(text)?;
    let store = TokenStore::new(&ids, tokenizer.vocab_size());
    store.check_block_size(block_size)?;
    Ok(store)
}

/// Trains (or resumes) a run. Blocks until `max_iters` or an interrupt.
pub fn train<B: AutodiffBackend>(
    opts: TrainOptions,
    device: &B::Device,
) -> Result<TrainReport, TrainError> {
    let run = RunDir::new(&opts.out_dir);
    let mut config = opts.config;
    let done = opts
        .resume
        .then(|| RunDir::open(&opts.out_dir))
        .transpose()?;
    let saved = done.as_ref().map(RunDir::tokenizer).transpose()?;
    let (corpus, tokenizer) = prepare_corpus(&config, opts.data, saved)?;
    let start_epoch = if let Some(done) = done {
        done.checkpoint_epochs().pop().unwrap_or(0)
    } else {
        if run.has_run() && !opts.overwrite {
            return Err(TrainError::Run(format!(
                "{} already holds a run: continue it with --resume, or replace it with --overwrite",
                run.path().display()
            )));
        }
        if opts.overwrite && run.path().exists() {
            std::fs::remove_dir_all(run.path()).map_err(|e| crate::run::io(run.path(), e))?;
        }
        config.model.vocab_size = tokenizer.vocab_size();
        0
    };
    let model = Model::<B>::new(&config.model, device)?;
    run.save_config(&config)?;
    run.save_tokenizer(&tokenizer)?;

    // Forget evaluations logged after the checkpoint we resume from (a kill between the
    // log line and the checkpoint write), so the log and the weights agree.
    let rows: Vec<_> = run
        .rows()
        .into_iter()
        .filter(|r| r.epoch <= start_epoch)
        .collect();
    write_rows(&run.metrics_path(), &rows).map_err(|e| crate::run::io(&run.metrics_path(), e))?;
    let history = History::new(rows);

    let t = &config.train;
    let num_epochs = t.max_iters.div_ceil(t.eval_interval);
    let start = std::time::Instant::now();
    if start_epoch < num_epochs {
        B::seed(device, mix_seed(t.seed, start_epoch as u64));
        let optim = MatrixDecayAdamW::init(&config);
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
            NanoGptSchedule::new(&config),
        );
        let train_dl =
            EpochLoader::<B>::new(Pass::Train, corpus.clone(), &config, start_epoch, device);
        let valid_dl =
            EpochLoader::<B::InnerBackend>::new(Pass::Eval, corpus, &config, start_epoch, device);
        let mut training =
            SupervisedTraining::new(run.path(), Arc::new(train_dl), Arc::new(valid_dl))
                .metric_train_numeric(SplitMean::loss())
                .metric_train_numeric(Perplexity::default())
                .metric_train_numeric(LearningRateMetric::new())
                .metric_train_numeric(TokensPerSecond::default())
                .metric_valid_numeric(SplitMean::loss_of(Split::Train))
                .metric_valid_numeric(SplitMean::loss_of(Split::Val))
                .with_metric_logger(RunLog::new(run.metrics_path(), history.clone(), !opts.tui))
                .with_file_checkpointer(AtomicRecorder)
                .with_checkpointing_strategy(KeepRecentAndBest::new(
                    t.keep_checkpoints,
                    history.clone(),
                    run.checkpoint_epochs(),
                ))
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
        if watch.skipped() > 0 {
            eprintln!(
                "warning: skipped {} updates whose loss was NaN or infinite (first at iteration {})",
                watch.skipped(),
                watch.first_nonfinite().unwrap_or(0)
            );
        }
        run.save_model(result.model, &run.model_path())?;
        if let Some(best) = history.best_epoch() {
            let from = run.checkpoint_model_path(best);
            if from.exists() {
                std::fs::copy(&from, run.best_path()).map_err(|e| crate::run::io(&from, e))?;
            }
        }
    }
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
    })
}
