//! The one process that writes a run directory, from `gpt train` start to finish.
//!
//! - **One writer.** The writer holds an exclusive advisory lock on `run.lock` for as
//!   long as it lives (`std::fs::File::try_lock`); the OS releases it when the process
//!   dies, so a SIGKILL never leaves a stale lock. A second trainer fails at once, naming
//!   the holder's pid, which the lock file records. Readers (`sample`, `eval`, `info`,
//!   `plot`) take no lock: every file they read is replaced atomically.
//! - **Only runs are replaced.** `--overwrite` replaces a folder that holds a run
//!   (`run.json`, or a `config.toml` without one); a non-empty folder that holds no run
//!   is refused, naming what is in it.
//! - **Replacing loses nothing early.** The old run is renamed aside to
//!   `.NAME.replaced-PID` beside it, and deleted only once the new run has a checkpoint;
//!   if the new run fails before that, it is removed and the old one is moved back.

use super::checkpoint::KeepRecentAndBest;
use super::{RunDir, RunMarker, io};
use crate::log::{EvalRow, History, write_rows};
use crate::step::TrainingModel;
use crate::{RunConfig, TrainError};
use burn::prelude::Backend;
use data::TextTokenizer;
use data::files::{Folder, Found, write_atomically};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

const LOCK: &str = "run.lock";

/// A run directory, to the rule every command that writes a folder follows: the marker
/// (or `config.toml`) makes it a run; a lock file left by a start that failed early is
/// the trainer's own.
const RUN: Folder = Folder {
    holds: "run",
    marks: super::RUN_MARKS,
    writes: |name| name == LOCK,
    hint: "--overwrite replaces only a run directory: choose another --out-dir",
};

pub struct RunWriter {
    run: RunDir,
    /// Held for the writer's lifetime.
    _lock: File,
    /// The run `--overwrite` moved aside, until the new run has a checkpoint.
    replaced: Option<PathBuf>,
}

impl RunWriter {
    /// A new run in `path`: an empty or missing folder, or (with `overwrite`) one that
    /// holds a run, which is moved aside.
    pub fn create(path: &Path, overwrite: bool) -> Result<Self, TrainError> {
        let mut replaced = None;
        let found = RUN.check(path).map_err(TrainError::Run)?;
        if found == Found::Marked {
            if !overwrite {
                return Err(TrainError::Run(format!(
                    "{} already holds a run: continue it with --resume, or replace it with --overwrite",
                    path.display()
                )));
            }
            // Refuses while another process trains the old run.
            let old_lock = lock(path)?;
            let aside = aside_path(path);
            std::fs::rename(path, &aside).map_err(|e| io(path, e))?;
            drop(old_lock);
            replaced = Some(aside);
        }
        let created = std::fs::create_dir_all(path)
            .map_err(|e| io(path, e))
            .and_then(|()| lock(path));
        match created {
            Ok(lock) => Ok(Self {
                run: RunDir::new(path),
                _lock: lock,
                replaced,
            }),
            Err(e) => {
                if let Some(aside) = &replaced {
                    let _ = std::fs::remove_dir(path);
                    let _ = std::fs::rename(aside, path);
                }
                Err(e)
            }
        }
    }

    /// The run in `path`, to continue it.
    pub fn resume(path: &Path) -> Result<Self, TrainError> {
        let run = RunDir::open(path)?;
        let lock = lock(path)?;
        Ok(Self {
            run,
            _lock: lock,
            replaced: None,
        })
    }

    pub fn run(&self) -> &RunDir {
        &self.run
    }

    /// A new run's files: the marker, the config, the tokenizer and an empty log.
    pub fn begin(
        &self,
        marker: &RunMarker,
        config: &RunConfig,
        tokenizer: &TextTokenizer,
    ) -> Result<(), TrainError> {
        self.run.save_marker(marker)?;
        self.run.save_config(config)?;
        self.run.save_tokenizer(tokenizer)?;
        self.write_rows(&[])
    }

    /// A resumed run's files, once its checkpoint has loaded under `config`: the config
    /// (with the resume's overrides), the marker, and the log cut back to `rows`.
    pub fn continue_with(
        &self,
        marker: &RunMarker,
        config: &RunConfig,
        rows: &[EvalRow],
    ) -> Result<(), TrainError> {
        self.run.save_config(config)?;
        self.run.save_marker(marker)?;
        self.write_rows(rows)
    }

    fn write_rows(&self, rows: &[EvalRow]) -> Result<(), TrainError> {
        let path = self.run.metrics_path();
        write_rows(&path, rows).map_err(|e| io(&path, e))
    }

    /// Which checkpoints the Learner keeps: the newest `keep` and the best by val loss.
    pub fn checkpoint_policy(&self, keep: usize, history: History) -> KeepRecentAndBest {
        KeepRecentAndBest::new(keep, history, self.run.checkpoint_epochs())
    }

    /// The end of a session: the final model as `model.mpk`, the best checkpoint's as
    /// `best.mpk`.
    pub fn finish<B: Backend>(
        &self,
        training_model: TrainingModel<B>,
        history: &History,
    ) -> Result<(), TrainError> {
        self.run
            .save_model(training_model, &self.run.model_path())?;
        if let Some(best) = history.best_epoch() {
            let from = self.run.checkpoint_model_path(best);
            if from.exists() {
                let bytes = std::fs::read(&from).map_err(|e| io(&from, e))?;
                let to = self.run.best_path();
                write_atomically(&to, &bytes).map_err(|e| io(&to, e))?;
            }
        }
        Ok(())
    }

    /// Ends the replacement of an old run: deleted if the new one has a checkpoint (or a
    /// final model), else the new one is removed and the old one moved back. Returns a
    /// note for the user when the old run was kept.
    pub fn end_replacement(self) -> Result<Option<String>, TrainError> {
        let Some(aside) = self.replaced else {
            return Ok(None);
        };
        let path = self.run.path().to_path_buf();
        let progressed = !self.run.checkpoint_epochs().is_empty() || self.run.model_path().exists();
        if progressed {
            std::fs::remove_dir_all(&aside).map_err(|e| io(&aside, e))?;
            return Ok(None);
        }
        drop(self._lock);
        // Everything in `path` was written by this process since the old run moved out.
        std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
        std::fs::rename(&aside, &path).map_err(|e| io(&aside, e))?;
        Ok(Some(format!(
            "the new run failed before its first checkpoint; the previous run in {} is back in place",
            path.display()
        )))
    }
}

/// Takes the writer lock of the run directory `dir`, writing this process's pid in it.
fn lock(dir: &Path) -> Result<File, TrainError> {
    let path = dir.join(LOCK);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {
            let pid = std::process::id().to_string();
            file.set_len(0)
                .and_then(|()| file.write_all(pid.as_bytes()))
                .and_then(|()| file.sync_data())
                .map_err(|e| io(&path, e))?;
            Ok(file)
        }
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            Err(TrainError::Run(format!(
                "{} is being written by another gpt train (pid {}); wait for it to finish or stop it",
                dir.display(),
                holder.trim()
            )))
        }
        Err(TryLockError::Error(e)) => Err(io(&path, e)),
    }
}

/// `.NAME.replaced-PID` beside `path`.
fn aside_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    path.with_file_name(format!(".{name}.replaced-{}", std::process::id()))
}

/// Runs an earlier `--overwrite` of `path` left aside (it was killed before finishing).
pub fn leftovers(path: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!(".{}.replaced-", name.to_string_lossy());
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}
