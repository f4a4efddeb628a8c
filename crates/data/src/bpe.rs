//! A byte-level BPE trained on the user's own corpus, as nanochat trains its tokenizer
//! first: GPT-2's scheme (every byte is a token, then the most frequent adjacent pairs are
//! merged, within the pieces a split pattern cuts the text into), on any language.
//!
//! Training, encoding and the file format are Hugging Face's `tokenizers` crate's: the
//! file is the `tokenizer.json` that `transformers.PreTrainedTokenizerFast` and every tool
//! of that ecosystem read, so a tokenizer trained here is used there unchanged.
//!
//! The specials take the last ids, in a fixed order: `<|endoftext|>` (between documents,
//! as GPT-2's id 50256), then the chat tokens of [`Special::ALL`]. So the ids before the
//! chat tokens are a run's base vocabulary and the chat tokens follow it, as they do for
//! the other tokenizers ([`crate::TextTokenizer`]). Text never produces a special: a
//! `<|endoftext|>` written in a document is encoded as the characters it is made of.

use crate::{DataError, Result, Special};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{self, Split};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// Written between documents, as GPT-2's.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// How text is cut into pieces before merging: a merge never crosses a piece's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitPattern {
    /// GPT-2's: contractions, runs of letters, of digits, of other symbols, of spaces.
    Gpt2,
    /// GPT-4's (`cl100k_base`), nanochat's choice: case-insensitive contractions, digits
    /// in groups of at most three, and newlines kept apart.
    Gpt4,
}

impl SplitPattern {
    pub fn regex(self) -> &'static str {
        match self {
            SplitPattern::Gpt2 => {
                r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
            }
            SplitPattern::Gpt4 => {
                r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"
            }
        }
    }
}

impl std::str::FromStr for SplitPattern {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "gpt2" => Ok(SplitPattern::Gpt2),
            "gpt4" => Ok(SplitPattern::Gpt4),
            _ => Err(format!("unknown split pattern {s:?}: use gpt2 or gpt4")),
        }
    }
}

/// The specials, in id order after the merged vocabulary.
fn specials() -> impl Iterator<Item = &'static str> {
    std::iter::once(END_OF_TEXT).chain(Special::ALL.iter().map(|s| s.text()))
}

/// The fewest tokens a vocabulary can have: every byte and every special.
pub fn min_vocab_size() -> usize {
    256 + specials().count()
}

/// A byte-level BPE and the file it was read from.
#[derive(Clone)]
pub struct BpeTokenizer {
    tokenizer: Arc<Tokenizer>,
    /// The file's text, kept as read: what a run records and `gpt export` writes.
    json: Arc<str>,
    /// The token of each byte value (see [`bytes_to_unicode`]), and back.
    byte_of: Arc<std::collections::HashMap<char, u8>>,
}

impl std::fmt::Debug for BpeTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BpeTokenizer({} tokens, sha256 {})",
            self.vocab_size(),
            self.sha256()
        )
    }
}

impl PartialEq for BpeTokenizer {
    fn eq(&self, other: &Self) -> bool {
        self.json == other.json
    }
}

impl Eq for BpeTokenizer {}

impl BpeTokenizer {
    /// Learns merges from `texts` until the vocabulary, specials included, has
    /// `vocab_size` tokens (fewer when the text has no more pairs to merge). Counting
    /// runs on all cores; `progress` draws the trainer's bars on stderr.
    pub fn train<I, S>(
        texts: I,
        vocab_size: usize,
        split: SplitPattern,
        progress: bool,
    ) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if vocab_size < min_vocab_size() {
            return Err(DataError::Tokenizer(format!(
                "a byte-level BPE needs at least {} tokens (256 bytes and {} specials), got {vocab_size}",
                min_vocab_size(),
                specials().count()
            )));
        }
        let mut tokenizer = Tokenizer::new(BPE::default());
        let pattern = split::SplitPattern::Regex(split.regex().into());
        let pieces = Split::new(pattern, SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| DataError::Tokenizer(format!("the split pattern: {e}")))?;
        // The pattern cuts the text; ByteLevel then only maps bytes to its characters.
        let bytes = ByteLevel::new(false, false, false);
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(pieces),
            PreTokenizerWrapper::ByteLevel(bytes),
        ]))));
        tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(bytes)));
        let mut trainer: TrainerWrapper = BpeTrainer::builder()
            .vocab_size(vocab_size - specials().count())
            .min_frequency(0)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .show_progress(progress)
            .build()
            .into();
        tokenizer
            .train(&mut trainer, texts)
            .map_err(|e| DataError::Tokenizer(format!("training: {e}")))?;
        tokenizer
            .add_special_tokens(specials().map(|s| AddedToken::from(s, true)))
            .map_err(|e| DataError::Tokenizer(format!("adding the specials: {e}")))?;
        let json = tokenizer
            .to_string(true)
            .map_err(|e| DataError::Tokenizer(format!("writing the tokenizer: {e}")))?;
        Self::from_json(&json)
    }

    /// Reads a `tokenizer.json`: a byte-level BPE whose last ids are this project's
    /// specials in their order (one this module trained).
    pub fn from_json(json: &str) -> Result<Self> {
        let mut tokenizer: Tokenizer = json
            .parse()
            .map_err(|e| DataError::Tokenizer(format!("not a Hugging Face tokenizer.json: {e}")))?;
        // A special's text in a document is text.
        tokenizer.set_encode_special_tokens(true);
        let this = Self {
            tokenizer: Arc::new(tokenizer),
            json: json.into(),
            byte_of: Arc::new(
                bytes_to_unicode()
                    .iter()
                    .enumerate()
                    .map(|(b, &c)| (c, b as u8))
                    .collect(),
            ),
        };
        let n = this.vocab_size();
        let base = n.saturating_sub(specials().count());
        for (i, special) in specials().enumerate() {
            if this.tokenizer.token_to_id(special) != Some((base + i) as u32) {
                return Err(DataError::Tokenizer(format!(
                    "not a tokenizer `gpt tokenizer train` wrote: its last {} ids must be {}",
                    specials().count(),
                    specials().collect::<Vec<_>>().join(" ")
                )));
            }
        }
        for b in bytes_to_unicode() {
            if this.tokenizer.token_to_id(&b.to_string()).is_none() {
                return Err(DataError::Tokenizer(
                    "not a byte-level BPE: a byte has no token of its own".into(),
                ));
            }
        }
        Ok(this)
    }

    /// Reads the file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(|err| DataError::Io {
            path: path.display().to_string(),
            err,
        })?;
        Self::from_json(&json).map_err(|e| match e {
            DataError::Tokenizer(why) => DataError::Tokenizer(format!("{}: {why}", path.display())),
            e => e,
        })
    }

    /// The file's text, as read.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The SHA-256 of the file's text, in hex: what pins a run to its tokenizer.
    pub fn sha256(&self) -> String {
        Sha256::digest(self.json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Every token, specials included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The tokens before the chat tokens: the merged vocabulary and `<|endoftext|>`.
    pub fn base_vocab_size(&self) -> usize {
        self.vocab_size() - Special::ALL.len()
    }

    /// `<|endoftext|>`'s id.
    pub fn end_of_text(&self) -> u32 {
        (self.base_vocab_size() - 1) as u32
    }

    /// The merges learned: every token but the 256 bytes and the specials.
    pub fn merges(&self) -> usize {
        self.vocab_size() - min_vocab_size()
    }

    /// The ids of `text`; a special's text in it is plain text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| DataError::Tokenizer(format!("encoding: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The bytes of token `id` (a special's are its text); `None` past the vocabulary.
    /// A token can hold part of a character: join tokens' bytes before reading them
    /// as UTF-8.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let token = self.tokenizer.id_to_token(id)?;
        if id >= self.end_of_text() {
            return Some(token.into_bytes());
        }
        token
            .chars()
            .map(|c| self.byte_of.get(&c).copied())
            .collect()
    }
}

/// The character that stands for each byte value in a byte-level vocabulary (GPT-2's
/// `bytes_to_unicode` in OpenAI's encoder.py): printable Latin-1 bytes stand for
/// themselves, the others for the characters from U+0100 on, in order, so that every
/// token is a printable string in a vocabulary file.
pub fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
    let mut chars = ['\0'; 256];
    let mut next = 256;
    for b in 0..256u32 {
        chars[b as usize] = if printable(b) {
            char::from_u32(b)
        } else {
            next += 1;
            char::from_u32(next - 1)
        }
        .expect("below U+0200");
    }
    chars
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// One tokenizer for the tests, trained once on mixed-script text.
    fn trained() -> &'static BpeTokenizer {
        static BPE: OnceLock<BpeTokenizer> = OnceLock::new();
        BPE.get_or_init(|| {
            let text = "First Citizen: Before we proceed any further, hear me speak.\n\n\
                        Привет, как дела? 你好，世界。 Γειά σου κόσμε! 12345 we're 😀\n";
            let texts = std::iter::repeat_n(text, 50);
            BpeTokenizer::train(texts, 360, SplitPattern::Gpt4, false).unwrap()
        })
    }

    fn decode(bpe: &BpeTokenizer, ids: &[u32]) -> Vec<u8> {
        ids.iter()
            .flat_map(|&id| bpe.token_bytes(id).unwrap())
            .collect()
    }

    proptest! {
        /// Any text, in any script, encodes and decodes back to its bytes.
        #[test]
        fn encode_then_decode_is_the_identity(text in "\\PC*|[\\s\\S]{0,64}") {
            let bpe = trained();
            let ids = bpe.encode(&text).unwrap();
            prop_assert_eq!(decode(bpe, &ids), text.as_bytes());
        }
    }

    /// The vocabulary has the size asked for, its merges learned from the text (fewer
    /// tokens than bytes), and the specials at its last ids in their order.
    #[test]
    fn trains_to_the_size_with_the_specials_last() {
        let bpe = trained();
        assert_eq!(bpe.vocab_size(), 360);
        assert_eq!(bpe.merges(), 360 - min_vocab_size());
        let text = "First Citizen: Before we proceed";
        assert!(bpe.encode(text).unwrap().len() < text.len() / 2);
        for (i, special) in specials().enumerate() {
            assert_eq!(bpe.tokenizer.token_to_id(special), Some(354 + i as u32));
            assert_eq!(bpe.token_bytes(354 + i as u32).unwrap(), special.as_bytes());
        }
        assert_eq!(bpe.end_of_text(), 354);
        assert_eq!(bpe.base_vocab_size(), 355);
        assert_eq!(bpe.token_bytes(360), None);
    }

    /// A special's text in a document is text: no id at or past `<|endoftext|>`'s.
    #[test]
    fn specials_are_never_produced_from_text() {
        let bpe = trained();
        let text: String = specials().collect::<Vec<_>>().join(" ");
        let ids = bpe.encode(&text).unwrap();
        assert!(ids.iter().all(|&id| id < bpe.end_of_text()), "{ids:?}");
        assert_eq!(decode(bpe, &ids), text.as_bytes());
    }

    /// Saved and read back, the file gives the same ids; another file is refused with a
    /// reason.
    #[test]
    fn a_saved_file_reloads_to_the_same_ids() {
        let bpe = trained();
        let again = BpeTokenizer::from_json(bpe.json()).unwrap();
        assert_eq!(&again, bpe);
        assert_eq!(again.sha256(), bpe.sha256());
        let text = "Привет, как дела? Before we proceed 😀";
        assert_eq!(again.encode(text).unwrap(), bpe.encode(text).unwrap());
        let mut untrained = Tokenizer::new(BPE::default());
        untrained.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        let other = untrained.to_string(false).unwrap();
        let e = BpeTokenizer::from_json(&other).unwrap_err().to_string();
        assert!(e.contains("its last 6 ids must be"), "{e}");
        let e = BpeTokenizer::from_json("{").unwrap_err().to_string();
        assert!(e.contains("not a Hugging Face tokenizer.json"), "{e}");
        let e = BpeTokenizer::train(std::iter::once("a"), 100, SplitPattern::Gpt2, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 262 tokens"), "{e}");
    }

    /// The table is GPT-2's: printable ASCII stands for itself, space is U+0120 (Ġ),
    /// newline U+010A (Ċ), and no two bytes share a character.
    #[test]
    fn bytes_to_unicode_is_gpt2s() {
        let table = bytes_to_unicode();
        assert_eq!(table[b'A' as usize], 'A');
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        let distinct: std::collections::HashSet<char> = table.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }
}
