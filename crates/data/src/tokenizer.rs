//! Tokenizers turn text into integer ids and back. The lecture's is the simplest one that
//! works: every distinct character of the training text is one token.

use crate::{DataError, Result};
use serde::{Deserialize, Serialize};

/// What the model needs from any tokenizer (character-level now, GPT-2 BPE later).
pub trait Tokenizer {
    /// Number of distinct token ids; the model's `vocab_size`.
    fn vocab_size(&self) -> usize;
    /// Text → ids. Fails on text the vocabulary cannot express, naming the culprit.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// Ids → text. Fails on an id outside the vocabulary.
    fn decode(&self, ids: &[u32]) -> Result<String>;
}

/// The lecture's tokenizer: the vocabulary is the sorted set of characters in the
/// training text (`chars = sorted(list(set(text)))`), and a token id is a character's
/// index in it. Serializable, so a checkpoint carries the exact vocabulary it was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharTokenizer {
    chars: Vec<char>,
}

impl CharTokenizer {
    /// Builds the vocabulary from `text`.
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self { chars }
    }

    /// The vocabulary in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    fn id(&self, ch: char) -> Option<u32> {
        // The vocabulary is sorted, so lookup is a binary search (`stoi` in the lecture).
        self.chars.binary_search(&ch).ok().map(|i| i as u32)
    }
}

impl Tokenizer for CharTokenizer {
    fn vocab_size(&self) -> usize {
        self.chars.len()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .enumerate()
            .map(|(position, ch)| {
                self.id(ch).ok_or(DataError::UnknownChar {
                    ch,
                    position,
                    vocab_size: self.vocab_size(),
                })
            })
            .collect()
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        ids.iter()
            .map(|&id| {
                self.chars
                    .get(id as usize)
                    .copied()
                    .ok_or(DataError::UnknownToken {
                        id,
                        vocab_size: self.vocab_size(),
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tests::shakespeare;

    #[test]
    fn round_trips_the_full_tiny_shakespeare() {
        let text = shakespeare();
        let tok = CharTokenizer::from_text(&text);
        assert_eq!(tok.vocab_size(), 65);
        assert_eq!(tok.chars()[0], '\n');
        assert_eq!(tok.chars()[1], ' ');
        let ids = tok.encode(&text).unwrap();
        assert_eq!(ids.len(), text.len());
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }

    #[test]
    fn unknown_character_names_the_character_and_position() {
        let tok = CharTokenizer::from_text("hello world");
        let err = tok.encode("hold é").unwrap_err();
        assert!(matches!(
            err,
            DataError::UnknownChar {
                ch: 'é',
                position: 5,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(msg.contains("'é'") && msg.contains("position 5"), "{msg}");
    }

    #[test]
    fn unknown_id_is_an_error() {
        let tok = CharTokenizer::from_text("ab");
        assert!(tok.decode(&[0, 1]).is_ok());
        assert!(matches!(
            tok.decode(&[2]),
            Err(DataError::UnknownToken { id: 2, .. })
        ));
    }

    #[test]
    fn serde_round_trip() {
        let tok = CharTokenizer::from_text("the quick brown fox");
        let text = toml::to_string(&tok).unwrap();
        let back: CharTokenizer = toml::from_str(&text).unwrap();
        assert_eq!(back, tok);
    }

    // Fuzzing: arbitrary text and ids never panic, and any text round-trips through the
    // vocabulary built from it.
    proptest::proptest! {
        #[test]
        fn any_text_round_trips(text in "\\PC*") {
            let tok = CharTokenizer::from_text(&text);
            proptest::prop_assert_eq!(tok.decode(&tok.encode(&text).unwrap()).unwrap(), text);
        }

        #[test]
        fn encode_and_decode_never_panic(
            vocab in "\\PC*",
            text in "\\PC*",
            ids in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..64),
        ) {
            let tok = CharTokenizer::from_text(&vocab);
            let _ = tok.encode(&text);
            let _ = tok.decode(&ids);
        }
    }
}
