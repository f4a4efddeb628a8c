//! `meta.json`: what a prepared directory holds and what it was made from, written last
//! so that its presence means "finished"; read back checked.

use super::{PARTIAL, TRAIN_BIN, VAL_BIN, bad, io_err};
use crate::{Result, TextTokenizer, Tokenizer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const META: &str = "meta.json";
/// `meta.json`'s format; a newer one is refused rather than misread.
pub const FORMAT: u32 = 1;
/// The seed of the document split (nanoGPT's openwebtext `prepare.py` uses 2357).
pub const SPLIT_SEED: u64 = 2357;
/// The largest `meta.json` read back (a character vocabulary lists its characters).
const MAX_META_BYTES: u64 = 64 << 20;

/// `meta.json`: what a prepared directory holds and what it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub format: u32,
    pub tokenizer: TextTokenizer,
    pub vocab_size: usize,
    pub dtype: Dtype,
    pub train_tokens: u64,
    pub val_tokens: u64,
    /// Documents read (empty ones are skipped).
    pub documents: u64,
    pub inputs: Vec<InputRecord>,
    pub split: SplitRecord,
}

/// The integer type of the token files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    U16,
    U32,
}

impl Dtype {
    /// u16 when every id fits in 16 bits.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= u16::MAX as usize + 1 {
            Dtype::U16
        } else {
            Dtype::U32
        }
    }

    pub fn width(self) -> usize {
        match self {
            Dtype::U16 => 2,
            Dtype::U32 => 4,
        }
    }
}

/// One input file, pinned by its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    pub rule: SplitRule,
    pub val_fraction: f64,
    /// The document hash's seed (`documents` rule).
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitRule {
    /// The last `val_fraction` of the tokens (one text).
    Tail,
    /// Each document to val with probability `val_fraction` (several documents).
    Documents,
}

/// Reads and checks `DIR/meta.json`, explaining what is missing when it is absent.
pub fn read_meta(dir: &Path) -> Result<Meta> {
    let path = dir.join(META);
    if !path.exists() {
        let unfinished = [TRAIN_BIN, VAL_BIN]
            .iter()
            .any(|n| dir.join(format!("{n}.{PARTIAL}")).exists() || dir.join(n).exists());
        return Err(bad(if unfinished {
            format!(
                "{} holds an unfinished `gpt prepare` (it stopped before writing meta.json); run it again",
                dir.display()
            )
        } else {
            format!(
                "{} is not a prepared data directory (no meta.json); make one with `gpt prepare --input PATH --out {}`",
                dir.display(),
                dir.display()
            )
        }));
    }
    crate::source::check_regular_file(&path, MAX_META_BYTES)?;
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let meta: Meta = serde_json::from_str(&text)
        .map_err(|e| bad(format!("{} is corrupt: {e}", path.display())))?;
    let wrong = |m: String| Err(bad(format!("{}: {m}", path.display())));
    if meta.format > FORMAT {
        return wrong(format!(
            "format {} is newer than this gpt understands ({FORMAT}); update burngpt",
            meta.format
        ));
    }
    if meta.vocab_size != meta.tokenizer.vocab_size() {
        return wrong(format!(
            "vocab_size {} but its tokenizer has {} tokens",
            meta.vocab_size,
            meta.tokenizer.vocab_size()
        ));
    }
    if meta.dtype != Dtype::for_vocab(meta.vocab_size) {
        return wrong(format!(
            "dtype {:?} does not fit vocab_size {}",
            meta.dtype, meta.vocab_size
        ));
    }
    Ok(meta)
}

/// The token files have the sizes meta.json says.
pub(super) fn check_token_files(dir: &Path, meta: &Meta) -> Result<()> {
    for (name, tokens) in [(TRAIN_BIN, meta.train_tokens), (VAL_BIN, meta.val_tokens)] {
        let path = dir.join(name);
        let len = std::fs::metadata(&path).map_err(io_err(&path))?.len();
        let expected = tokens
            .checked_mul(meta.dtype.width() as u64)
            .ok_or_else(|| {
                bad(format!(
                    "{}: token count overflows",
                    dir.join(META).display()
                ))
            })?;
        if len != expected {
            return Err(bad(format!(
                "{} has {len} bytes, but meta.json says {tokens} {:?} tokens ({expected} bytes): prepare it again with --force",
                path.display(),
                meta.dtype
            )));
        }
    }
    Ok(())
}

/// The bytes of `DIR/meta.json`: what pins a prepared directory in a run (see
/// [`DataRecord`](crate::DataRecord)).
pub fn read_meta_bytes(dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join(META);
    crate::source::check_regular_file(&path, MAX_META_BYTES)?;
    std::fs::read(&path).map_err(io_err(&path))
}
