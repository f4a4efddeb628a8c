//! Run setup: what a training session starts from, one file per way it starts.
//!
//! - [`new_run`]: a new run directory, its data opened and pinned in `run.json`;
//! - [`resume`]: the run in the directory, continued from its newest checkpoint;
//! - [`follower`]: a data-parallel rank other than 0, beside the run rank 0 set up;
//! - [`init_from`]: the weights of another run (or Hugging Face's GPT-2) a new run
//!   starts from;
//! - [`run_data`]: a run's data, opened through [`Dataset::open`](data::Dataset::open).
//!
//! Each gives a [`RunSetup`], which `learner` launches.

mod follower;
mod init_from;
mod new_run;
mod resume;
mod run_data;

pub(crate) use follower::follower;
pub(crate) use init_from::load_init_weights;
pub use run_data::{open_run_data, use_data_path};

use crate::budget;
use crate::log::History;
use crate::run::RunWriter;
use crate::train::{Start, TrainOptions};
use crate::{RunConfig, TrainError};
use burn::tensor::backend::AutodiffBackend;
use data::Corpus;
use std::path::PathBuf;

/// A run set up to launch: its writer, config, data and where it starts.
pub(crate) struct RunSetup {
    pub writer: RunWriter,
    pub config: RunConfig,
    pub corpus: Corpus,
    pub start_epoch: usize,
    pub history: History,
    /// The weights to start from (`--init-from`), checked against the model already.
    pub init_weights: Option<PathBuf>,
}

/// The session `opts.start` asks for: a new run, or the one in the directory resumed.
pub(crate) fn set_up<B: AutodiffBackend>(
    opts: &TrainOptions,
    device: &B::Device,
) -> Result<RunSetup, TrainError> {
    match &opts.start {
        Start::New { config, overwrite } => new_run::set_up::<B>(opts, config, *overwrite, device),
        Start::Resume { config, overrides } => {
            resume::set_up::<B>(opts, config.as_deref(), overrides, device)
        }
    }
}

/// Refuses a config whose training step would not fit in the available memory (unless
/// `--no-memory-check`).
fn check_memory(opts: &TrainOptions, config: &RunConfig) -> Result<(), TrainError> {
    let available = opts.memory_check.then(budget::available_bytes).flatten();
    budget::check_fits(config, config.train.batch_size, available)
}
