//! A data-parallel rank other than 0: it reads the run rank 0 set up, and writes only a
//! scratch directory of its own.

use super::RunSetup;
use super::init_from::pending_init_weights;
use super::resume::resume_point;
use super::run_data::open_run_data;
use crate::TrainError;
use crate::log::History;
use crate::run::{RunDir, RunMarker, RunWriter};
use crate::train::TrainOptions;
use data::OpenDataset;

/// A rank other than 0 of a data-parallel job: the run rank 0 has just set up, read
/// (never written), and a scratch run directory of this process's own for burn-train to
/// write its checkpoints and logs into, holding a copy of the checkpoint to resume from.
/// Only rank 0's run directory is the run; `train` deletes the scratch one at the end.
pub(crate) fn follower(opts: &TrainOptions, rank: usize) -> Result<RunSetup, TrainError> {
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
    Ok(RunSetup {
        writer,
        config,
        corpus,
        start_epoch,
        history: History::new(rows),
        init_weights,
    })
}
