//! A token file being written: little-endian ids appended to `NAME.partial`, then synced
//! and handed back for the split.

use super::{PARTIAL, write_err};
use crate::Result;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A token file being written: `NAME.partial` until [`TokenFile::finish`].
pub(super) struct TokenFile {
    path: PathBuf,
    partial: PathBuf,
    out: BufWriter<File>,
    tokens: u64,
}

impl TokenFile {
    pub(super) fn create(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let partial = dir.join(format!("{name}.{PARTIAL}"));
        // Readable too: the tail split copies the end of train into val.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(write_err(&partial))?;
        Ok(Self {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            partial,
            tokens: 0,
        })
    }

    pub(super) fn write(&mut self, bytes: &[u8], width: usize) -> Result<()> {
        self.tokens += (bytes.len() / width) as u64;
        self.out.write_all(bytes).map_err(write_err(&self.partial))
    }

    /// Flushes and syncs the partial file, and hands it back for the tail split.
    pub(super) fn into_file(self) -> Result<(File, PathBuf, PathBuf, u64)> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| write_err(&self.partial)(e.into_error()))?;
        file.sync_all().map_err(write_err(&self.partial))?;
        Ok((file, self.partial, self.path, self.tokens))
    }
}

/// `ids` as little-endian bytes of `width`.
pub(super) fn to_bytes(ids: &[u32], width: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * width);
    if width == 2 {
        for &id in ids {
            out.extend_from_slice(&(id as u16).to_le_bytes());
        }
    } else {
        for &id in ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::Dtype;

    #[test]
    fn wide_vocabularies_are_stored_as_u32() {
        assert_eq!(Dtype::for_vocab(65_536), Dtype::U16);
        assert_eq!(Dtype::for_vocab(65_537), Dtype::U32);
        assert_eq!(to_bytes(&[1, 70_000], 4), [1, 0, 0, 0, 0x70, 0x11, 1, 0]);
        assert_eq!(to_bytes(&[1, 258], 2), [1, 0, 2, 1]);
    }
}
