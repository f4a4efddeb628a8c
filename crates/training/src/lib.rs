//! burn-train glue: nanoGPT's training recipe run by burn-train's Learner.
//!
//! - [`config`]: the run's config (model + recipe), presets and `--set` overrides.
//! - [`loader`]: nanoGPT's iterations and evaluations expressed as burn-train epochs.
//! - [`step`]: the training recipe, one iteration in nanoGPT's order (micro-batches, loss
//!   scaling, all-reduce, clipping; the Learner then steps the optimizer), and the eval step.
//! - [`rl`]: reinforcement learning with a verifiable reward, one more kind of step.
//! - [`schedule`]: warmup + cosine or warmup–stable–decay learning rate; [`clip`]: global
//!   gradient-norm clipping; [`optim`]: AdamW decaying matrices only, as nanoGPT, or
//!   [`muon`] for the hidden matrices beside it.
//! - [`logged`]: the values a step logs, each declared once; [`metrics`], [`log`],
//!   [`renderer`]: what is measured, logged and shown.
//! - [`run`], [`recorder`]: the run directory (read, written by one locked writer) and
//!   its crash-safe, validated checkpoints; [`budget`]: will a config fit in memory.
//! - [`distributed`]: data-parallel training over MPI processes (`mpirun`, feature `mpi`).
//! - [`setup`]: a session's run set up (new, resumed, data-parallel follower,
//!   `--init-from`); [`learner`]: the Learner assembled and launched.
//! - [`train()`], [`eval`] and [`exact`] (exact match on arithmetic): the entry points the
//!   CLI calls.

pub mod budget;
pub mod clip;
pub mod config;
pub mod distributed;
pub mod eval;
pub mod exact;
pub mod host_record;
mod learner;
pub mod loader;
pub mod log;
pub mod logged;
pub mod loss_scale;
pub mod metrics;
pub mod muon;
pub mod optim;
pub mod recorder;
pub mod renderer;
pub mod rl;
pub mod run;
pub mod schedule;
pub mod setup;
pub mod step;
pub mod train;

pub use config::{RunConfig, TrainConfig};
pub use run::RunDir;
pub use train::{MultiDevice, Start, TrainOptions, TrainReport, train, train_on};

/// Everything that can stop a run, worded for the user.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error("{0}")]
    Run(String),
    #[error("{0}")]
    Checkpoint(String),
    #[error(
        "the loss became NaN or infinite at iteration {iter}; the run stopped, {kept}. Lower learning_rate or set grad_clip, then --resume; or set on_nonfinite_loss=\"skip\""
    )]
    NonFinite { iter: usize, kept: String },
}
