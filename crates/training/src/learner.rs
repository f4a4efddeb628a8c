//! The Learner's assembly: the model (fresh, or the `--init-from` weights), the optimizer, the
//! schedule, the loaders, metrics, log, checkpointer and renderer, handed to burn-train
//! and run; then the final and best models saved.

use crate::host_record::{HostCheckpointed, HostOptimizer};
use crate::loader::{EpochLoader, Pass};
use crate::log::{History, RunLog};
use crate::logged::{RL_VALUES, STEP_VALUES};
use crate::loss_scale::LossScaler;
use crate::metrics::{Perplexity, SplitMean, TokensPerSecond};
use crate::recorder::AtomicRecorder;
use crate::renderer::{Dashboard, Iterations, PlainRenderer};
use crate::rl::{ExactResult, Rl};
use crate::run::RunWriter;
use crate::schedule::NanoGptSchedule;
use crate::step::{HostReads, NonFiniteWatch, OnNonFinite, StepPolicy, TrainingModel};
use crate::train::{CTRL_C, MultiDevice, TrainOptions};
use crate::{RunConfig, TrainError};
use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::LearningRateMetric;
use burn::train::{Learner, SupervisedTraining};
use data::{Corpus, Split, mix_seed};
use model::{Model, Precision};
use std::path::PathBuf;
use std::sync::Arc;

/// The reason burn-train's dashboard gives when the user presses `q`.
const TUI_STOP: &str = "Stopping training from user input.";

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
pub(crate) struct StartingPoint<B: burn::prelude::Backend> {
    pub start_epoch: usize,
    pub init_weights: Option<PathBuf>,
    /// Several devices of this process (burn-train's DDP).
    pub multi: Option<MultiDevice<B>>,
}

/// Builds the Learner and runs it from `start_epoch`; then saves the final and best
/// models. Any failure inside burn-train (a checkpoint or log write) is an error here.
/// Data-parallel, returns the hash of the final weights, checked to be every rank's.
pub(crate) fn launch<B: AutodiffBackend>(
    writer: &RunWriter,
    config: &RunConfig,
    corpus: Corpus,
    origin: StartingPoint<B>,
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
        Some(path) => {
            crate::setup::load_init_weights::<B>(path, config, device)?.map(&mut RequireGrad)
        }
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
    let optim = crate::optim::init(config);
    let start_iter = history.rows().last().map_or(0, |r| r.iter);
    let policy = StepPolicy {
        accumulation: t.gradient_accumulation_steps,
        grad_clip: t.grad_clip,
        on_nonfinite: t.on_nonfinite_loss,
        watch: Arc::new(NonFiniteWatch::new(start_iter, opts.interrupter.clone())),
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
        rl: match (config.rl.enabled(), config.task()) {
            (true, Some(task)) => Some(Arc::new(Rl {
                config: config.rl.clone(),
                reward: Arc::new(ExactResult::new(task.clone())),
                seed: mix_seed(t.seed, rank as u64),
            })),
            _ => None,
        },
    };
    let scaler = policy.loss_scale.clone();
    let watch = policy.watch.clone();
    let devices = multi.as_ref().map_or(1, |m| m.devices);
    // Host records: checkpoints are read back here, on the training thread (see
    // `host_record`: Burn's fusion loses tensors read on the checkpointer's thread).
    let learner = Learner::new(
        HostCheckpointed(TrainingModel::new(model, policy)),
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
    let iterations = Iterations::new(t, start_iter);
    let log = RunLog::new(
        run.metrics_path(),
        history.clone(),
        (!opts.tui && leader).then(|| iterations.clone()),
        opts.interrupter.clone(),
    )
    .with_log_interval(t.log_interval);
    let training = SupervisedTraining::new(run.path(), Arc::new(train_dl), Arc::new(valid_dl));
    let rl = config.rl.enabled();
    let mut training = STEP_VALUES
        .iter()
        .filter(|v| rl || !RL_VALUES.contains(v))
        .fold(training, |t, v| t.metric_train_numeric(SplitMean::step(v)))
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
    training = if opts.tui && leader {
        training.renderer(Dashboard::terminal(opts.interrupter.clone(), iterations))
    } else {
        training.renderer(PlainRenderer)
    };
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
