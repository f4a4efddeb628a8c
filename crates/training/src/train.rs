//! `train`: from a config and a text (or generated problems) to a trained run directory,
//! through burn-train. The run directory's lifecycle (create, resume, replace, lock) is
//! [`RunWriter`]'s; this file prepares the data and the Learner and launches it.

use crate::budget;
use crate::distributed::DataParallel;
use crate::host_record::{HostCheckpointed, HostOptimizer};
use crate::loader::{EpochLoader, Pass};
use crate::log::{EvalRow, History, RunLog};
use crate::loss_scale::LossScaler;
use crate::metrics::{Perplexity, SplitMean, TokensPerSecond};
use crate::optim::MatrixDecayAdamW;
use crate::recorder::AtomicRecorder;
use crate::renderer::PlainRenderer;
use crate::run::marker::{InitRecord, Resume, now_unix_s};
use crate::run::writer::leftovers;
use crate::run::{RunDir, RunMarker, RunWriter};
use crate::schedule::NanoGptSchedule;
use crate::step::{HostReads, NonFiniteWatch, OnNonFinite, StepPolicy, Trainee};
use crate::{RunConfig, TrainError};
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::LearningRateMetric;
use burn::train::{ExecutionStrategy, Interrupter, Learner, SupervisedTraining};
use data::{Corpus, Dataset, OpenDataset, Split, TextTokenizer, Tokenizer, mix_seed};
use model::{Model, Precision};
use sha2::Digest;
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
    /// Continue the run in the directory, with the keys of `config` (the command that
    /// started it, run again) and these `--set` overrides: recipe keys only may change.
    Resume {
        config: Option<PathBuf>,
        overrides: Vec<String>,
    },
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
    /// `--init-from`: a new run starts from another run's weights (fresh optimizer and
    /// schedule), as nanoGPT's `init_from`.
    pub init_from: Option<InitFrom>,
    /// Under an MPI launcher: this process's place in the data-parallel job. Rank 0
    /// prepares and writes the run; the others read it and train beside it.
    pub data_parallel: Option<Arc<DataParallel>>,
    /// The backend computes asynchronously (a GPU): read the loss back only every
    /// `log_interval` iterations (see [`HostReads`]). The CPU backends read every step.
    pub asynchronous: bool,
}

/// The run whose weights a new run starts from.
#[derive(Debug, Clone)]
pub struct InitFrom {
    pub run: PathBuf,
    /// `best.mpk` instead of the final `model.mpk`.
    pub best: bool,
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
    /// Data-parallel: the hash of the final weights, the same on every rank (checked).
    pub weights_hash: Option<u64>,
}

/// Points `config` at `--data PATH` (made absolute, so the run finds it from anywhere):
/// a text file, or a directory `gpt prepare` made.
pub fn use_data_path(config: &mut RunConfig, path: &Path) -> Result<(), TrainError> {
    if config.task().is_some() {
        return Err(TrainError::Config(
            "--data gives a text, but this run's dataset is generated arithmetic; drop one of them"
                .into(),
        ));
    }
    let path = std::path::absolute(path)
        .map_err(|e| TrainError::Config(format!("--data {}: {e}", path.display())))?;
    config.train.dataset = Dataset::from_path(path);
    Ok(())
}

/// Opens `config`'s dataset, with `saved` as its tokenizer when given.
fn open_dataset(
    config: &RunConfig,
    saved: Option<TextTokenizer>,
) -> Result<OpenDataset, TrainError> {
    let block_size = config.model.block_size;
    Ok(config.train.dataset.open(&config.task, block_size, saved)?)
}

/// The data of an existing run: its own, or `--data` when `allow_change` (or when it
/// names the same data). Data that changed since the run recorded it is refused unless
/// `allow_change`. Returns the config pointing at the data used, and the data opened
/// with the run's tokenizer.
pub fn open_run_data(
    run: &RunDir,
    mut config: RunConfig,
    data: Option<&Path>,
    allow_change: bool,
) -> Result<(RunConfig, OpenDataset), TrainError> {
    let recorded = run.marker()?.and_then(|m| m.data);
    if let Some(path) = data {
        let before = config.train.dataset.clone();
        use_data_path(&mut config, path)?;
        if config.train.dataset != before && !allow_change {
            return Err(TrainError::Run(format!(
                "this run was trained on {before}; --data names another text: add --allow-data-change to use it"
            )));
        }
    }
    let opened = open_dataset(&config, Some(run.tokenizer()?))?;
    if let (Some(was), Some(now)) = (&recorded, &opened.record)
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
    Ok((config, opened))
}

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

/// A run ready to launch: its writer, config, data and where it resumes.
struct Prepared {
    writer: RunWriter,
    config: RunConfig,
    corpus: Corpus,
    start_epoch: usize,
    history: History,
    /// The weights to start from (`--init-from`), checked against the model already.
    init_weights: Option<PathBuf>,
}

/// The weights file of `--init-from`, checked: the architecture (all of `[model]` but
/// dropout and dtype) and the tokenizer must match, and the file must hold exactly the model's
/// tensors. Returns the file and what run.json records about it.
fn init_weights<B: AutodiffBackend>(
    init: &InitFrom,
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    device: &B::Device,
) -> Result<(PathBuf, InitRecord), TrainError> {
    if model::hf::is_hf_dir(&init.run) {
        return init_hf_weights::<B>(init, config, tokenizer, device);
    }
    let source = RunDir::open(&init.run)?;
    let name = source.path().display().to_string();
    let theirs = source.tokenizer()?;
    if theirs != *tokenizer {
        let detail = match (&theirs, tokenizer) {
            (TextTokenizer::Char(a), TextTokenizer::Char(b)) => format!(
                "character vocabularies differ ({} characters there, {} here{})",
                a.vocab_size(),
                b.vocab_size(),
                a.chars()
                    .iter()
                    .find(|c| !b.chars().contains(c))
                    .or_else(|| b.chars().iter().find(|c| !a.chars().contains(c)))
                    .map(|c| format!("; {c:?} is in only one"))
                    .unwrap_or_default()
            ),
            _ => format!(
                "{name} uses {}, this run's data {}",
                theirs.describe(),
                tokenizer.describe()
            ),
        };
        return Err(TrainError::Config(format!(
            "--init-from {name}: the tokenizer differs: {detail}"
        )));
    }
    let mut theirs = toml::Table::try_from(&source.config()?.model).expect("configs serialise");
    let mut ours = toml::Table::try_from(&config.model).expect("configs serialise");
    // Dropout is a training choice, not part of the weights (nanoGPT overrides it too);
    // so is the dtype of the matmuls: the weights are float32 in every dtype.
    for key in ["dropout", "dtype"] {
        theirs.remove(key);
        ours.remove(key);
    }
    let mut keys: Vec<&String> = theirs.keys().chain(ours.keys()).collect();
    keys.sort();
    keys.dedup();
    let differs: Vec<String> = keys
        .into_iter()
        .filter(|k| theirs.get(*k) != ours.get(*k))
        .map(|k| {
            let show = |v: Option<&toml::Value>| v.map_or("unset".into(), |v| v.to_string());
            format!(
                "{k} = {} there, {} here",
                show(theirs.get(k)),
                show(ours.get(k))
            )
        })
        .collect();
    if !differs.is_empty() {
        return Err(TrainError::Config(format!(
            "--init-from {name}: the architecture differs: {}",
            differs.join(", ")
        )));
    }
    let (path, weights) = if init.best {
        (source.best_path(), "best")
    } else {
        (source.model_path(), "final")
    };
    if !path.exists() {
        return Err(TrainError::Run(format!(
            "--init-from {name}: {} does not exist ({})",
            path.display(),
            if init.best {
                "no evaluation has finished"
            } else {
                "the run has not finished or been stopped; --init-weights best takes its best checkpoint"
            }
        )));
    }
    source.load_model_file_as::<B::InnerBackend>(&path, &config.model, device)?;
    let bytes = std::fs::read(&path).map_err(|e| crate::run::io(&path, e))?;
    let rows = source.rows()?;
    let iter = if init.best {
        rows.iter()
            .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
            .map_or(0, |r| r.iter)
    } else {
        rows.last().map_or(0, |r| r.iter)
    };
    let record = InitRecord {
        run: std::path::absolute(source.path())
            .unwrap_or_else(|_| source.path().to_path_buf())
            .display()
            .to_string(),
        weights: weights.into(),
        iter,
        sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
    };
    Ok((path, record))
}

/// `--init-from` a Hugging Face GPT-2 directory (`config.json` + `model.safetensors`,
/// which the CLI finds or downloads for `gpt2` … `gpt2-xl`): its tokens must be this run's
/// (GPT-2's BPE for GPT-2's 50,257), its architecture this config's (dropout aside; a
/// smaller block_size crops the position table). Checked by loading it.
fn init_hf_weights<B: AutodiffBackend>(
    init: &InitFrom,
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    device: &B::Device,
) -> Result<(PathBuf, InitRecord), TrainError> {
    let name = init.run.display().to_string();
    let gpt2_tokens = *tokenizer == TextTokenizer::Gpt2;
    let theirs = model::hf::read_config(&init.run)
        .map_err(|e| TrainError::Config(format!("--init-from {name}: {e}")))?;
    if (theirs.vocab_size == data::tokenizer::GPT2_VOCAB_SIZE) != gpt2_tokens {
        return Err(TrainError::Config(format!(
            "--init-from {name}: GPT-2's weights need GPT-2's BPE tokens, and this run's data uses {} (prepare the text with `gpt prepare --tokenizer gpt2`)",
            tokenizer.describe()
        )));
    }
    model::hf::load_gpt2_as::<B::InnerBackend>(&init.run, &config.model, device)
        .map_err(|e| TrainError::Config(format!("--init-from {name}: {e}")))?;
    let path = init.run.join(model::hf::WEIGHTS_FILE);
    let bytes = std::fs::read(&path).map_err(|e| crate::run::io(&path, e))?;
    let record = InitRecord {
        run: std::path::absolute(&init.run)
            .unwrap_or_else(|_| init.run.clone())
            .display()
            .to_string(),
        weights: HF_WEIGHTS.into(),
        iter: 0,
        sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
    };
    Ok((path, record))
}

/// `InitRecord::weights` of a run that started from Hugging Face weights.
const HF_WEIGHTS: &str = "hugging-face";

/// The weights file a run started from, for a resume before its first checkpoint; it
/// must still be the file the run recorded.
fn recorded_init_weights(record: &InitRecord) -> Result<PathBuf, TrainError> {
    let run = RunDir::new(&record.run);
    let path = match record.weights.as_str() {
        HF_WEIGHTS => run.path().join(model::hf::WEIGHTS_FILE),
        "best" => run.best_path(),
        _ => run.model_path(),
    };
    let bytes = std::fs::read(&path).map_err(|e| crate::run::io(&path, e))?;
    if format!("{:x}", sha2::Sha256::digest(&bytes)) != record.sha256 {
        return Err(TrainError::Run(format!(
            "this run starts from {}, which changed since the run began; start a new run",
            path.display()
        )));
    }
    Ok(path)
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
                use_data_path(&mut config, path)?;
            }
            let dataset = &config.train.dataset;
            config.train.dataset = dataset
                .resolved()
                .map_err(|e| TrainError::Config(format!("dataset {dataset}: {e}")))?;
            let OpenDataset {
                corpus,
                tokenizer,
                record,
            } = open_dataset(&config, None)?;
            config.model.vocab_size = tokenizer.vocab_size();
            config.model.validate()?;
            let init = opts
                .init_from
                .as_ref()
                .map(|init| init_weights::<B>(init, &config, &tokenizer, device))
                .transpose()?;
            check_memory(&config)?;
            let writer = RunWriter::create(&opts.out_dir, *overwrite)?;
            let mut marker = RunMarker::new(record);
            marker.tokenizer = Some(tokenizer.kind());
            let (init_weights, init_record) = init.unzip();
            marker.init_from = init_record;
            writer.begin(&marker, &config, &tokenizer)?;
            Ok(Prepared {
                writer,
                config,
                corpus,
                start_epoch: 0,
                history: History::default(),
                init_weights,
            })
        }
        Start::Resume {
            config,
            overrides: set,
        } => {
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
            check_memory(&config)?;
            let (start_epoch, rows) = resume_point(run)?;
            if start_epoch > 0 {
                // The state must load under the (new) config before config.toml changes.
                run.load_model_file::<B::InnerBackend>(
                    &run.checkpoint_model_path(start_epoch),
                    device,
                )?;
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
            Ok(Prepared {
                writer,
                config,
                corpus,
                start_epoch,
                history: History::new(rows),
                init_weights,
            })
        }
    }
}

/// Several devices of one process, trained by burn-train's DDP strategy (which the
/// caller builds where the backend has an all-reduce: NCCL on CUDA). Each device takes its
/// share of every step's batch, as MPI ranks do, and the schedule counts optimizer steps.
pub struct MultiDevice<B: burn::prelude::Backend> {
    pub strategy: ExecutionStrategy<B>,
    pub devices: usize,
}

/// Trains (or resumes) a run. Blocks until `max_iters` or an interrupt.
pub fn train<B: AutodiffBackend>(
    opts: TrainOptions,
    device: &B::Device,
) -> Result<TrainReport, TrainError> {
    train_on::<B>(opts, device, None)
}

/// [`train`], on several devices when `multi` is given.
pub fn train_on<B: AutodiffBackend>(
    opts: TrainOptions,
    device: &B::Device,
    multi: Option<MultiDevice<B>>,
) -> Result<TrainReport, TrainError> {
    if multi.is_some() && opts.data_parallel.is_some() {
        return Err(TrainError::Config(
            "several devices in one process (--devices) and several MPI processes cannot be combined: run one process per GPU under mpirun instead".into(),
        ));
    }
    let dp = opts.data_parallel.clone();
    let Prepared {
        writer,
        config,
        corpus,
        start_epoch,
        history,
        init_weights,
    } = match &dp {
        None => prepare::<B>(&opts, device)?,
        Some(dp) if dp.is_leader() => {
            let prepared = prepare::<B>(&opts, device)?;
            dp.barrier(); // the run directory is ready for the other ranks to read
            prepared
        }
        Some(dp) => {
            dp.barrier();
            follow(&opts, dp.rank())?
        }
    };
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
        Origin {
            start_epoch,
            init_weights,
            multi,
        },
        &history,
        &opts,
        device,
    );
    let settled = writer.settle()?;
    if dp.as_ref().is_some_and(|dp| !dp.is_leader()) {
        // A follower's scratch directory (see `follow`) has served its purpose.
        let _ = std::fs::remove_dir_all(run.path());
    }
    let weights_hash = match launched {
        Ok(hash) => hash,
        Err(e) => {
            return Err(match settled {
                Some(note) => TrainError::Run(format!("{e}; {note}")),
                None => e,
            });
        }
    };
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
        weights_hash,
    })
}

/// Where a run resumes: its newest checkpoint's epoch (0: none yet), and the evaluations
/// logged up to it. Evaluations logged after it (a kill between the log line and the
/// checkpoint write) are forgotten, so log and weights agree. Both logs must read whole
/// first: a damaged line is an error, never a reason to rewrite a log without it.
fn resume_point(run: &RunDir) -> Result<(usize, Vec<EvalRow>), TrainError> {
    let start_epoch = run.checkpoint_epochs().pop().unwrap_or(0);
    run.train_log()?;
    let rows = run
        .rows()?
        .into_iter()
        .filter(|r| r.epoch <= start_epoch)
        .collect();
    Ok((start_epoch, rows))
}

/// The `--init-from` weights a run must start from again: those it recorded, when it was
/// killed before its first checkpoint.
fn pending_init_weights(
    marker: &RunMarker,
    start_epoch: usize,
) -> Result<Option<PathBuf>, TrainError> {
    match (&marker.init_from, start_epoch) {
        (Some(record), 0) => Ok(Some(recorded_init_weights(record)?)),
        _ => Ok(None),
    }
}

/// A rank other than 0 of a data-parallel job: the run rank 0 has just prepared, read
/// (never written), and a scratch run directory of this process's own for burn-train to
/// write its checkpoints and logs into, holding a copy of the checkpoint to resume from.
/// Only rank 0's run directory is the run; `train` deletes the scratch one at the end.
fn follow(opts: &TrainOptions, rank: usize) -> Result<Prepared, TrainError> {
    let run = RunDir::new(&opts.out_dir);
    let (config, OpenDataset { corpus, .. }) = open_run_data(&run, run.config()?, None, true)?;
    let (start_epoch, rows) = resume_point(&run)?;
    let marker = run.marker()?.unwrap_or_else(|| RunMarker::new(None));
    let init_weights = pending_init_weights(&marker, start_epoch)?;
    let scratch = std::env::temp_dir().join(format!("burngpt-rank{rank}-{}", std::process::id()));
    let writer = RunWriter::create(&scratch, false)?;
    writer.begin(&marker, &config, &run.tokenizer()?)?;
    if start_epoch > 0 {
        let (from, to) = (run.checkpoint_dir(), writer.run().checkpoint_dir());
        std::fs::create_dir_all(&to)
            .map_err(|e| TrainError::Run(format!("{}: {e}", to.display())))?;
        let suffix = format!("-{start_epoch}.mpk");
        for entry in std::fs::read_dir(&from)
            .map_err(|e| TrainError::Run(format!("{}: {e}", from.display())))?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .map_err(|e| TrainError::Run(format!("{}: {e}", entry.path().display())))?;
        }
    }
    Ok(Prepared {
        writer,
        config,
        corpus,
        start_epoch,
        history: History::new(rows),
        init_weights,
    })
}

/// Marks every parameter of a loaded model as trainable.
struct RequireGrad;

impl<B: burn::prelude::Backend> burn::module::ModuleMapper<B> for RequireGrad {
    fn map_float<const D: usize>(
        &mut self,
        p: burn::module::Param<burn::prelude::Tensor<B, D>>,
    ) -> burn::module::Param<burn::prelude::Tensor<B, D>> {
        p.map(|t| t.require_grad())
    }
}

/// Where a session starts: the epochs already done, (a new `--init-from` run) the
/// weights to start from, and on which devices.
struct Origin<B: burn::prelude::Backend> {
    start_epoch: usize,
    init_weights: Option<PathBuf>,
    /// Several devices of this process (burn-train's DDP).
    multi: Option<MultiDevice<B>>,
}

/// Builds the Learner and runs it from `start_epoch`; then saves the final and best
/// models. Any failure inside burn-train (a checkpoint or log write) is an error here.
/// Data-parallel, returns the hash of the final weights, checked to be every rank's.
fn launch<B: AutodiffBackend>(
    writer: &RunWriter,
    config: &RunConfig,
    corpus: Corpus,
    origin: Origin<B>,
    history: &History,
    opts: &TrainOptions,
    device: &B::Device,
) -> Result<Option<u64>, TrainError> {
    let multi = origin.multi;
    let run = writer.run();
    let start_epoch = origin.start_epoch;
    let t = &config.train;
    let num_epochs = t.max_iters.div_ceil(t.eval_interval);
    if start_epoch >= num_epochs {
        return Ok(None);
    }
    let dp = opts.data_parallel.as_ref();
    let (rank, ranks) = dp.map_or((0, 1), |dp| (dp.rank(), dp.ranks()));
    B::seed(device, mix_seed(t.seed, start_epoch as u64));
    let model = match &origin.init_weights {
        // --init-from: the other run's weights (checked in `init_weights`), under this
        // run's config (its dropout); the optimizer and schedule start fresh.
        Some(path) if path.extension().is_some_and(|e| e == "safetensors") => {
            let dir = path.parent().unwrap_or(Path::new("."));
            let gpt = model::hf::load_gpt2_as::<B>(dir, &config.model, device)
                .map_err(|e| TrainError::Config(format!("--init-from {}: {e}", dir.display())))?;
            Model::Gpt(burn::module::Module::map(gpt, &mut RequireGrad))
        }
        Some(path) => RunDir::new(path.parent().unwrap_or(Path::new(".")))
            .load_model_file_as::<B>(path, &config.model, device)?,
        None => Model::<B>::new(&config.model, device)?,
    };
    if let Some(dp) = dp {
        // Every rank drew the same initial weights from the same seed (checked here, the
        // lazily initialised parameters made real first); from now on each rank's dropout
        // draws its own masks.
        dp.check_identical(&model).map_err(TrainError::Run)?;
        B::seed(
            device,
            mix_seed(mix_seed(t.seed, start_epoch as u64), rank as u64),
        );
    }
    let optim = MatrixDecayAdamW::init(config);
    let policy = StepPolicy {
        accumulation: t.gradient_accumulation_steps,
        grad_clip: t.grad_clip,
        on_nonfinite: t.on_nonfinite_loss,
        watch: Arc::new(NonFiniteWatch::new(
            history.rows().last().map_or(0, |r| r.iter),
            opts.interrupter.clone(),
        )),
        data_parallel: dp.cloned(),
        loss_scale: (config.model.dtype == Precision::Float16).then(|| Arc::new(LossScaler::new())),
        host_reads: if opts.asynchronous && t.on_nonfinite_loss == OnNonFinite::Stop {
            HostReads {
                every: t.log_interval,
                eval_interval: t.eval_interval,
            }
        } else {
            HostReads::EVERY_STEP
        },
    };
    let scaler = policy.loss_scale.clone();
    let watch = policy.watch.clone();
    let devices = multi.as_ref().map_or(1, |m| m.devices);
    // Host records: checkpoints are read back here, on the training thread (see
    // `host_record`: Burn's fusion loses tensors read on the checkpointer's thread).
    let learner = Learner::new(
        HostCheckpointed(Trainee::new(model, policy)),
        HostOptimizer::new(optim, device),
        NanoGptSchedule::new(config).with_calls_per_step(devices),
    );
    let train_dl = EpochLoader::<B>::new(Pass::Train, corpus.clone(), config, start_epoch, device)
        .sharded(rank, ranks)
        .on_devices(devices);
    let valid_dl =
        EpochLoader::<B::InnerBackend>::new(Pass::Eval, corpus, config, start_epoch, device);
    // Rank 0 alone speaks (and shows the dashboard).
    let leader = rank == 0;
    let log = RunLog::new(
        run.metrics_path(),
        history.clone(),
        !opts.tui && leader,
        opts.interrupter.clone(),
    )
    .with_log_interval(t.log_interval);
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
    if let Some(multi) = multi {
        training = training.with_training_strategy(multi.strategy.into());
    }
    if !opts.tui || !leader {
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
    if let Some(s) = scaler.filter(|s| s.skipped() > 0) {
        eprintln!(
            "float16: skipped {} updates whose gradients overflowed (loss scale now {})",
            s.skipped(),
            s.scale()
        );
    }
    let hash = dp
        .map(|dp| dp.check_identical(&result.model.0))
        .transpose()
        .map_err(TrainError::Run)?;
    writer.finish(result.model.0, history)?;
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::NanoGptSchedule;
    use burn::backend::{Autodiff, Flex};

    /// A tiny run on a small text with `k` micro-batches per step; its evaluations.
    fn tiny_run(k: usize) -> (RunConfig, Vec<EvalRow>) {
        tiny_run_with(&format!("accum-{k}"), |c| {
            c.train.gradient_accumulation_steps = k
        })
    }

    /// As [`tiny_run`] with one micro-batch per step, after `change`.
    fn tiny_run_with(name: &str, change: impl Fn(&mut RunConfig)) -> (RunConfig, Vec<EvalRow>) {
        let dir = scratch(name);
        let out = tiny_train(&dir, "run", None, change);
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    /// An empty scratch directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("burngpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Trains the tiny model (after `change`) into `dir/run`, on a small text in `dir`,
    /// starting from `init_from`'s weights if given; its evaluations.
    fn tiny_train(
        dir: &Path,
        run: &str,
        init_from: Option<InitFrom>,
        change: impl Fn(&mut RunConfig),
    ) -> (RunConfig, Vec<EvalRow>) {
        let text = dir.join("text.txt");
        std::fs::write(
            &text,
            "the quick brown fox jumps over the lazy dog. ".repeat(40),
        )
        .unwrap();
        let mut config = RunConfig::default();
        config.model.n_layer = 1;
        config.model.n_head = 2;
        config.model.n_embd = 8;
        config.model.block_size = 8;
        config.model.dropout = 0.0;
        config.train.dataset = Dataset::File(text);
        config.train.batch_size = 2;
        config.train.max_iters = 6;
        config.train.eval_interval = 3;
        config.train.eval_iters = 1;
        config.train.decay_lr = true;
        config.train.learning_rate = 1e-3;
        config.train.min_lr = 1e-4;
        config.train.warmup_iters = 2;
        config.train.lr_decay_iters = 6;
        change(&mut config);
        let report = train::<Autodiff<Flex>>(
            TrainOptions {
                start: Start::New {
                    config: Box::new(config.clone()),
                    overwrite: false,
                },
                data: None,
                allow_data_change: false,
                out_dir: dir.join(run),
                memory_check: false,
                tui: false,
                interrupter: Interrupter::new(),
                data_parallel: None,
                init_from,
                asynchronous: false,
            },
            &Default::default(),
        )
        .unwrap();
        (config, report.run.rows().unwrap())
    }

    /// Mixed precision trains as f32 does: the same 200 steps (same data, same seed, the
    /// same starting weights) in bfloat16 and in float16 (with its loss scaler) end within
    /// 0.05 of the f32 losses.
    #[test]
    fn mixed_precision_follows_f32_training() {
        let dir = scratch("mixed-precision");
        // Tiny Shakespeare at a moderate learning rate: on a repeated sentence at 1e-2 the
        // model memorises, and its trajectory is chaotic enough for bfloat16 to end 0.07
        // away now and then; here 150 runs stayed within 0.01.
        let common = |c: &mut RunConfig| {
            c.train.dataset = Dataset::Named("tinyshakespeare".into());
            c.model.n_embd = 16;
            c.train.batch_size = 4;
            c.train.max_iters = 200;
            c.train.eval_interval = 200;
            c.train.eval_iters = 16;
            c.train.warmup_iters = 10;
            c.train.lr_decay_iters = 200;
            c.train.learning_rate = 3e-3;
        };
        // The starting weights come from a file, not from the seeded initialisation: the
        // backend's random generator is one per process, and tests running alongside draw
        // from it too.
        tiny_train(&dir, "init", None, |c| {
            common(c);
            c.train.max_iters = 1;
            c.train.eval_interval = 1;
        });
        let run = |dtype: Precision| {
            let init = InitFrom {
                run: dir.join("init"),
                best: false,
            };
            let (_, rows) = tiny_train(&dir, dtype.as_str(), Some(init), |c| {
                common(c);
                c.model.dtype = dtype;
            });
            let last = rows.last().expect("one evaluation");
            (last.train_loss, last.val_loss)
        };
        let f32 = run(Precision::Float32);
        assert!(
            f32.0 < 3.2,
            "the f32 run learned (ln 65 = 4.17 at the start): {f32:?}"
        );
        for dtype in [Precision::BFloat16, Precision::Float16] {
            let low = run(dtype);
            assert!(
                (low.0 - f32.0).abs() < 0.05 && (low.1 - f32.1).abs() < 0.05,
                "{dtype}: {low:?} vs f32 {f32:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Iterations, evaluations and the learning rate count optimizer steps: after n steps
    /// the schedule is at step n for k = 1 and k = 4 alike (burn-train's own
    /// accumulation would have stepped it 4n times).
    #[test]
    fn gradient_accumulation_counts_optimizer_steps() {
        let (config, one) = tiny_run(1);
        let (_, four) = tiny_run(4);
        let schedule = NanoGptSchedule::new(&config);
        for rows in [&one, &four] {
            let iters: Vec<usize> = rows.iter().map(|r| r.iter).collect();
            assert_eq!(iters, [3, 6]);
            for (row, it) in rows.iter().zip([2, 5]) {
                let want = schedule.lr_at(it);
                assert!((row.lr - want).abs() < 1e-6 * want, "{} vs {want}", row.lr);
            }
        }
        assert_ne!(schedule.lr_at(5), schedule.lr_at(4 * 6 - 1));
        // Four times the tokens per step: the throughput metric counts them all.
        assert!(four[1].tokens_per_s > 0.0);
    }

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
