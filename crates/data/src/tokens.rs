//! The token store: the encoded text split 90/10 into train and val, as the lecture does
//! (`n = int(0.9*len(data))`), kept as `u16` when the vocabulary fits (half the memory).

use crate::{DataError, Result};
use std::sync::Arc;

/// A sequence of token ids in the narrowest integer type that holds the vocabulary: in
/// memory, or a prepared `train.bin`/`val.bin` mapped from disk (see `prepared`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tokens {
    U16(Vec<u16>),
    U32(Vec<u32>),
    Mapped(MappedTokens),
}

/// Little-endian `u16` or `u32` ids in a memory-mapped file: the OS pages in what the
/// random chunks touch, so a corpus larger than memory trains as one in memory does.
#[derive(Clone)]
pub struct MappedTokens {
    map: Arc<memmap2::Mmap>,
    /// Bytes per id: 2 or 4.
    width: usize,
}

impl MappedTokens {
    /// `map` holds whole ids of `width` bytes (checked by the caller).
    pub(crate) fn new(map: memmap2::Mmap, width: usize) -> Self {
        assert!(width == 2 || width == 4, "ids are u16 or u32");
        assert_eq!(map.len() % width, 0, "a whole number of ids");
        Self {
            map: Arc::new(map),
            width,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len() / self.width
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn range(&self, start: usize, end: usize) -> Vec<u32> {
        let bytes = &self.map[start * self.width..end * self.width];
        match self.width {
            2 => bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
                .collect(),
            _ => bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        }
    }

    /// The largest id (None when empty): one pass over the file.
    pub(crate) fn max_id(&self) -> Option<u32> {
        match self.width {
            2 => self
                .map
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
                .max(),
            _ => self
                .map
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .max(),
        }
    }
}

impl std::fmt::Debug for MappedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MappedTokens({} ids of {} bytes)",
            self.len(),
            self.width
        )
    }
}

impl PartialEq for MappedTokens {
    fn eq(&self, other: &Self) -> bool {
        self.width == other.width && self.map[..] == other.map[..]
    }
}

impl Eq for MappedTokens {}

impl Tokens {
    /// Stores `ids` compactly; `vocab_size` decides the width.
    pub fn new(ids: &[u32], vocab_size: usize) -> Self {
        if vocab_size <= u16::MAX as usize + 1 {
            Tokens::U16(ids.iter().map(|&id| id as u16).collect())
        } else {
            Tokens::U32(ids.to_vec())
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Tokens::U16(v) => v.len(),
            Tokens::U32(v) => v.len(),
            Tokens::Mapped(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids in `start..end`, widened to `u32`.
    pub fn range(&self, start: usize, end: usize) -> Vec<u32> {
        match self {
            Tokens::U16(v) => v[start..end].iter().map(|&id| id as u32).collect(),
            Tokens::U32(v) => v[start..end].to_vec(),
            Tokens::Mapped(m) => m.range(start, end),
        }
    }
}

/// Which half of the 90/10 split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// The encoded text, split into train (first 90 %) and val (last 10 %).
#[derive(Debug, Clone)]
pub struct TokenStore {
    train: Arc<Tokens>,
    val: Arc<Tokens>,
}

impl TokenStore {
    /// Splits `ids` at `int(0.9 * len)`.
    pub fn new(ids: &[u32], vocab_size: usize) -> Self {
        let n = (ids.len() as f64 * 0.9) as usize;
        Self {
            train: Arc::new(Tokens::new(&ids[..n], vocab_size)),
            val: Arc::new(Tokens::new(&ids[n..], vocab_size)),
        }
    }

    /// A store whose splits were made elsewhere (a prepared directory's files).
    pub fn from_splits(train: Tokens, val: Tokens) -> Self {
        Self {
            train: Arc::new(train),
            val: Arc::new(val),
        }
    }

    pub fn split(&self, split: Split) -> &Arc<Tokens> {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// Both splits must hold at least one `block_size` chunk plus its shifted target.
    pub fn check_block_size(&self, block_size: usize) -> Result<()> {
        for split in [Split::Train, Split::Val] {
            let len = self.split(split).len();
            if len < block_size + 1 {
                return Err(DataError::TooShort {
                    split: split.name(),
                    len,
                    block_size,
                    needed: block_size + 1,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tests::shakespeare;
    use crate::{CharTokenizer, Tokenizer};

    #[test]
    fn lecture_split_sizes() {
        let text = shakespeare();
        let tok = CharTokenizer::from_text(&text);
        let store = TokenStore::new(&tok.encode(&text).unwrap(), tok.vocab_size());
        assert_eq!(store.split(Split::Train).len(), 1_003_854);
        assert_eq!(store.split(Split::Val).len(), 111_540);
        assert!(matches!(**store.split(Split::Train), Tokens::U16(_)));
    }

    #[test]
    fn wide_vocabularies_use_u32() {
        let t = Tokens::new(&[70_000, 1], 70_001);
        assert!(matches!(t, Tokens::U32(_)));
        assert_eq!(t.range(0, 2), vec![70_000, 1]);
    }

    #[test]
    fn too_short_for_block_size_is_a_clear_error() {
        let store = TokenStore::new(&(0..100).collect::<Vec<u32>>(), 100);
        assert!(store.check_block_size(8).is_ok());
        let msg = store.check_block_size(10).unwrap_err().to_string();
        assert!(
            msg.contains("val split has 10 tokens") && msg.contains("block_size 10"),
            "{msg}"
        );
    }
}
