//! A prepared directory read back: its token files memory-mapped, checked against
//! `meta.json` first.

use super::meta::{Meta, check_token_files, read_meta};
use super::{TRAIN_BIN, VAL_BIN, bad, io_err};
use crate::tokens::MappedTokens;
use crate::{Result, TokenStore, Tokens};
use std::fs::File;
use std::path::Path;

/// A prepared directory's tokenizer and splits, memory-mapped. Checks the files against
/// meta.json (sizes, every id within the vocabulary) before use.
pub fn open(dir: &Path) -> Result<(Meta, TokenStore)> {
    let meta = read_meta(dir)?;
    check_token_files(dir, &meta)?;
    let map = |name: &str| -> Result<Tokens> {
        let path = dir.join(name);
        let file = File::open(&path).map_err(io_err(&path))?;
        // SAFETY: the map is read-only; as with nanoGPT's np.memmap, the file must not be
        // truncated while a run reads it (gpt prepare never rewrites a finished file in
        // place: it writes *.partial and renames).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(&path))?;
        let tokens = MappedTokens::new(map, meta.dtype.width());
        if let Some(max) = tokens.max_id()
            && max as usize >= meta.vocab_size
        {
            return Err(bad(format!(
                "{} holds token id {max}, outside the vocabulary of {}: prepare it again with --force",
                path.display(),
                meta.vocab_size
            )));
        }
        Ok(Tokens::Mapped(tokens))
    };
    let store = TokenStore::from_splits(map(TRAIN_BIN)?, map(VAL_BIN)?);
    Ok((meta, store))
}
