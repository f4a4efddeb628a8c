//! The token store: the encoded text split 90/10 into train and val, as the lecture does
//! (`n = int(0.9*len(data))`), kept as `u16` when the vocabulary fits (half the memory).

use crate::{DataError, Result};
use std::sync::Arc;

/// A sequence of token ids in the narrowest integer type that holds the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tokens {
    U16(Vec<u16>),
    U32(Vec<u32>),
}

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
