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
use std::io::Write;
use std::path::{Path, PathBuf};

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
        write_atomically(&path, &bytes)
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

/// Writes `bytes` to `path` via a synced temporary file and a rename. On failure (a full
/// disk, say) the temporary file is removed and `path` keeps its old content.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    // Persist the rename itself.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
