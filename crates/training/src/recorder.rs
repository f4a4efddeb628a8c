//! Checkpoint files that a kill can never leave half-written.
//!
//! Burn's file recorders write straight to the destination, so a kill during a save
//! leaves a truncated file where the previous checkpoint was. This recorder serialises
//! in memory (named MessagePack at full precision, like `NamedMpkFileRecorder`), writes
//! a temporary file in the same directory, fsyncs it, and renames it over the
//! destination: the rename is atomic, so readers see the old file or the new one.
//! Full precision matters: half-precision records round AdamW's second moments to zero
//! and a resumed run's first step then blows up.

use burn::prelude::*;
use burn::record::{FileRecorder, FullPrecisionSettings, Recorder, RecorderError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Default)]
pub struct AtomicRecorder;

const EXTENSION: &str = "mpk";

impl<B: Backend> FileRecorder<B> for AtomicRecorder {
    fn file_extension() -> &'static str {
        EXTENSION
    }
}

impl<B: Backend> Recorder<B> for AtomicRecorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(&self, item: I, file: PathBuf) -> Result<(), RecorderError> {
        let mut bytes = Vec::new();
        rmp_serde::encode::write_named(&mut bytes, &item)
            .map_err(|e| RecorderError::Unknown(e.to_string()))?;
        let path = file.with_extension(EXTENSION);
        path.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| data::files::write_atomically(&path, &bytes))
            .map_err(|e| RecorderError::Unknown(format!("writing {}: {e}", path.display())))
    }

    fn load_item<I: DeserializeOwned>(&self, file: &mut PathBuf) -> Result<I, RecorderError> {
        let path = file.with_extension(EXTENSION);
        let bytes = std::fs::read(&path)
            .map_err(|e| RecorderError::FileNotFound(format!("{}: {e}", path.display())))?;
        rmp_serde::from_slice(&bytes).map_err(|e| {
            RecorderError::Unknown(format!(
                "{} is corrupt or not a checkpoint: {e}",
                path.display()
            ))
        })
    }
}
