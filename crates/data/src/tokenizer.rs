//! Tokenizers turn text into integer ids and back. The lecture's is the simplest one that
//! works: every distinct character of the training text is one token. nanoGPT's larger
//! runs use GPT-2's byte-level BPE, and nanochat trains its own on its corpus
//! ([`crate::bpe`]); [`TextTokenizer`] is any of them.

use crate::bpe::BpeTokenizer;
use crate::{DataError, Result};
use serde::{Deserialize, Serialize};

/// What the model needs from any tokenizer (characters or GPT-2's BPE).
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

/// GPT-2's `<|endoftext|>`: the last id of its vocabulary, written between documents.
pub const GPT2_EOT: u32 = 50256;
/// GPT-2's vocabulary: 50,000 merges, 256 bytes and `<|endoftext|>`.
pub const GPT2_VOCAB_SIZE: usize = 50257;

/// Which kind of tokenizer: what `gpt prepare --tokenizer` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// One token per distinct character of the text (the lecture's).
    Char,
    /// GPT-2's byte-level BPE (`r50k_base`), 50,257 tokens.
    Gpt2,
    /// A byte-level BPE trained by `gpt tokenizer train` (a Hugging Face tokenizer.json).
    Bpe,
}

impl TokenizerKind {
    pub fn name(self) -> &'static str {
        match self {
            TokenizerKind::Char => "char",
            TokenizerKind::Gpt2 => "gpt2",
            TokenizerKind::Bpe => "bpe",
        }
    }
}

impl std::str::FromStr for TokenizerKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "char" => Ok(TokenizerKind::Char),
            "gpt2" => Ok(TokenizerKind::Gpt2),
            "bpe" => Ok(TokenizerKind::Bpe),
            _ => Err(format!("unknown tokenizer {s:?}: use char, gpt2 or bpe")),
        }
    }
}

/// The vocabulary a run's tokens come from: the lecture's characters, or GPT-2's byte-level
/// BPE. GPT-2's ranks ship inside the `tiktoken-rs` crate (its `r50k_base`, compiled in),
/// so a run records only the kind; a character tokenizer records its vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseTokenizer {
    Char(CharTokenizer),
    Gpt2,
    /// Its ids before the chat tokens: the merged vocabulary and `<|endoftext|>`.
    Bpe(BpeTokenizer),
}

/// The chat tokens (nanochat's set): they frame a conversation, so that a model finetuned
/// on conversations knows where a turn begins and ends, and where to stop replying. They
/// take the ids right after the base vocabulary, in this order, so a base run's ids keep
/// their meaning in its chat run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Special {
    /// Begins every conversation.
    Bos,
    UserStart,
    UserEnd,
    AssistantStart,
    /// Ends a reply: where generation stops.
    AssistantEnd,
}

impl Special {
    pub const ALL: [Special; 5] = [
        Special::Bos,
        Special::UserStart,
        Special::UserEnd,
        Special::AssistantStart,
        Special::AssistantEnd,
    ];

    /// How the token is written when decoded (encoding that text gives plain text).
    pub fn text(self) -> &'static str {
        match self {
            Special::Bos => "<|bos|>",
            Special::UserStart => "<|user_start|>",
            Special::UserEnd => "<|user_end|>",
            Special::AssistantStart => "<|assistant_start|>",
            Special::AssistantEnd => "<|assistant_end|>",
        }
    }
}

/// The one tokenizer type a run uses: a [`BaseTokenizer`], and for a chat run the
/// [`Special`] chat tokens after it.
///
/// Saved as `{"kind": "char", "chars": [...]}`, `{"kind": "gpt2"}` or `{"kind": "bpe",
/// "bpe": "<the tokenizer.json's text>", "sha256": "…"}`, with `"chat": true` when it has
/// the chat tokens; a bare `{"chars": [...]}`, which run directories may hold,
/// reads as a character tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SavedTokenizer", into = "SavedTokenizer")]
pub struct TextTokenizer {
    base: BaseTokenizer,
    chat: bool,
}

/// `tokenizer.json`'s fields.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedTokenizer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<TokenizerKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chars: Option<Vec<char>>,
    /// A BPE's Hugging Face tokenizer.json, its text exactly as trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bpe: Option<String>,
    /// The SHA-256 of `bpe`, checked on reading: what pins a run to its tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    chat: bool,
}

impl TryFrom<SavedTokenizer> for TextTokenizer {
    type Error = String;

    fn try_from(s: SavedTokenizer) -> std::result::Result<Self, String> {
        let base = match (s.kind, s.chars, s.bpe) {
            (None | Some(TokenizerKind::Char), Some(chars), None) => {
                let tok = CharTokenizer::from_text(&chars.iter().collect::<String>());
                if tok.chars != chars {
                    return Err("a character vocabulary must be sorted and without repeats".into());
                }
                BaseTokenizer::Char(tok)
            }
            (Some(TokenizerKind::Gpt2), None, None) => BaseTokenizer::Gpt2,
            (Some(TokenizerKind::Bpe), None, Some(json)) => {
                let bpe = BpeTokenizer::from_json(&json).map_err(|e| e.to_string())?;
                if s.sha256.as_deref() != Some(bpe.sha256().as_str()) {
                    return Err(
                        "the bpe tokenizer's text does not match its sha256: the file was edited"
                            .into(),
                    );
                }
                BaseTokenizer::Bpe(bpe)
            }
            (Some(TokenizerKind::Bpe), _, _) => {
                return Err("a bpe tokenizer needs its \"bpe\" text, and no \"chars\"".into());
            }
            (Some(TokenizerKind::Gpt2), _, _) => {
                return Err("a gpt2 tokenizer has no \"chars\" and no \"bpe\"".into());
            }
            (_, None, _) => return Err("a char tokenizer needs its \"chars\"".into()),
            (_, Some(_), Some(_)) => return Err("a char tokenizer has no \"bpe\"".into()),
        };
        Ok(TextTokenizer { base, chat: s.chat })
    }
}

impl From<TextTokenizer> for SavedTokenizer {
    fn from(t: TextTokenizer) -> Self {
        let kind = Some(t.kind());
        let (chars, bpe, sha256) = match t.base {
            BaseTokenizer::Char(c) => (Some(c.chars), None, None),
            BaseTokenizer::Gpt2 => (None, None, None),
            BaseTokenizer::Bpe(b) => (None, Some(b.json().to_string()), Some(b.sha256())),
        };
        SavedTokenizer {
            kind,
            chars,
            bpe,
            sha256,
            chat: t.chat,
        }
    }
}

/// GPT-2's encoder, built once from the ranks compiled into tiktoken-rs.
pub fn gpt2_bpe() -> &'static tiktoken_rs::CoreBPE {
    tiktoken_rs::r50k_base_singleton()
}

impl TextTokenizer {
    /// The lecture's characters.
    pub fn char(chars: CharTokenizer) -> Self {
        Self {
            base: BaseTokenizer::Char(chars),
            chat: false,
        }
    }

    /// A BPE trained by `gpt tokenizer train`.
    pub fn bpe(bpe: BpeTokenizer) -> Self {
        Self {
            base: BaseTokenizer::Bpe(bpe),
            chat: false,
        }
    }

    /// GPT-2's BPE.
    pub fn gpt2() -> Self {
        Self {
            base: BaseTokenizer::Gpt2,
            chat: false,
        }
    }

    /// The same vocabulary with the chat tokens after it.
    pub fn with_chat(self) -> Self {
        Self { chat: true, ..self }
    }

    /// The same vocabulary without the chat tokens: a chat run's base.
    pub fn without_chat(self) -> Self {
        Self {
            chat: false,
            ..self
        }
    }

    pub fn base(&self) -> &BaseTokenizer {
        &self.base
    }

    /// Whether it has the chat tokens (a chat run's tokenizer).
    pub fn is_chat(&self) -> bool {
        self.chat
    }

    pub fn kind(&self) -> TokenizerKind {
        match self.base {
            BaseTokenizer::Char(_) => TokenizerKind::Char,
            BaseTokenizer::Gpt2 => TokenizerKind::Gpt2,
            BaseTokenizer::Bpe(_) => TokenizerKind::Bpe,
        }
    }

    /// The tokens of the base vocabulary, before any chat token.
    pub fn base_vocab_size(&self) -> usize {
        match &self.base {
            BaseTokenizer::Char(c) => c.vocab_size(),
            BaseTokenizer::Gpt2 => GPT2_VOCAB_SIZE,
            BaseTokenizer::Bpe(b) => b.base_vocab_size(),
        }
    }

    /// A trained BPE's file's SHA-256 (see [`BpeTokenizer::sha256`]); `None` for the
    /// others, which have no file.
    pub fn bpe_sha256(&self) -> Option<String> {
        match &self.base {
            BaseTokenizer::Bpe(b) => Some(b.sha256()),
            _ => None,
        }
    }

    /// The id of a chat token; `None` when this tokenizer has none.
    pub fn special_id(&self, special: Special) -> Option<u32> {
        let index = Special::ALL.iter().position(|&s| s == special)?;
        self.chat.then(|| (self.base_vocab_size() + index) as u32)
    }

    /// The chat token `id` is, if it is one.
    pub fn special(&self, id: u32) -> Option<Special> {
        let index = (id as usize).checked_sub(self.base_vocab_size())?;
        self.chat
            .then(|| Special::ALL.get(index).copied())
            .flatten()
    }

    /// The tokenizer in words, for errors: `the gpt2 tokenizer (50257 tokens)`, `the bpe
    /// 84ae1a605876 tokenizer (1024 tokens)`.
    pub fn describe(&self) -> String {
        let chat = if self.chat { " with chat tokens" } else { "" };
        // Two trained BPEs differ by their file: name it by its hash.
        let file = match &self.base {
            BaseTokenizer::Bpe(b) => format!(" {}", &b.sha256()[..12]),
            _ => String::new(),
        };
        format!(
            "the {}{file} tokenizer{chat} ({} tokens)",
            self.kind().name(),
            self.vocab_size()
        )
    }

    /// The UTF-8 bytes of one token (a chat token's are its [`Special::text`]). A GPT-2
    /// token can hold part of a character, so a stream of tokens is decoded by joining
    /// bytes (see [`Utf8Stream`]).
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>> {
        if let Some(special) = self.special(id) {
            return Ok(special.text().as_bytes().to_vec());
        }
        match &self.base {
            BaseTokenizer::Char(c) => Ok(c.decode(&[id])?.into_bytes()),
            BaseTokenizer::Gpt2 => {
                self.check_id(id)?;
                gpt2_bpe()
                    .decode_bytes(&[id])
                    .map_err(|_| DataError::UnknownToken {
                        id,
                        vocab_size: self.vocab_size(),
                    })
            }
            BaseTokenizer::Bpe(b) => {
                self.check_id(id)?;
                b.token_bytes(id).ok_or(DataError::UnknownToken {
                    id,
                    vocab_size: self.vocab_size(),
                })
            }
        }
    }

    fn check_id(&self, id: u32) -> Result<()> {
        if (id as usize) < self.vocab_size() {
            Ok(())
        } else {
            Err(DataError::UnknownToken {
                id,
                vocab_size: self.vocab_size(),
            })
        }
    }
}

impl Tokenizer for TextTokenizer {
    fn vocab_size(&self) -> usize {
        self.base_vocab_size() + if self.chat { Special::ALL.len() } else { 0 }
    }

    /// Only the base vocabulary: a chat token's text in `text` is plain text, so a user
    /// cannot forge a turn. GPT-2: `encode_ordinary`, so `<|endoftext|>` in the text is
    /// plain text too, as nanoGPT's `prepare.py` encodes documents.
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.base {
            BaseTokenizer::Char(c) => c.encode(text),
            BaseTokenizer::Gpt2 => Ok(gpt2_bpe().encode_ordinary(text)),
            BaseTokenizer::Bpe(b) => b.encode(text),
        }
    }

    /// Bytes that are not UTF-8 on their own (a cut character) become U+FFFD.
    fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut out = Utf8Stream::default();
        let mut text = String::new();
        for &id in ids {
            text.push_str(&out.push(&self.token_bytes(id)?));
        }
        text.push_str(&out.finish());
        Ok(text)
    }
}

/// Joins the bytes of streamed tokens into text, holding back an incomplete character
/// until the token that completes it arrives.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// The text complete so far (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    text.push_str(s);
                    self.pending.clear();
                    return text;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    text.push_str(
                        std::str::from_utf8(&self.pending[..valid]).expect("valid up to here"),
                    );
                    match e.error_len() {
                        // An invalid sequence: replace it and go on.
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return text;
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left: an incomplete character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tests::shakespeare;

    /// Expected ids from GPT-2's published tokenizer, copied from two sources:
    /// - OpenAI's tiktoken, `tests/test_encoding.py` (`test_simple` and
    ///   `test_simple_repeated`, with `tiktoken.get_encoding("gpt2")`): "hello world" →
    ///   [31373, 995], "hello <|endoftext|>" with the special token allowed →
    ///   [31373, 220, 50256], "0" → [15], "00" → [405], "000" → [830], "0000" → [2388],
    ///   "00000" → [20483], "000000000" → [10535, 830];
    /// - Hugging Face transformers, `GPT2Tokenizer`'s docstring
    ///   (`src/transformers/models/gpt2/tokenization_gpt2.py`): "Hello world" →
    ///   [15496, 995] and " Hello world" → [18435, 995].
    #[test]
    fn gpt2_ids_match_the_published_tokenizer() {
        let tok = TextTokenizer::gpt2();
        let cases: [(&str, &[u32]); 9] = [
            ("hello world", &[31373, 995][..]),
            ("Hello world", &[15496, 995]),
            (" Hello world", &[18435, 995]),
            ("0", &[15]),
            ("00", &[405]),
            ("000", &[830]),
            ("0000", &[2388]),
            ("00000", &[20483]),
            ("000000000", &[10535, 830]),
        ];
        for (text, ids) in cases {
            assert_eq!(tok.encode(text).unwrap(), ids, "{text:?}");
            assert_eq!(tok.decode(ids).unwrap(), text);
        }
        let special = gpt2_bpe().encode_with_special_tokens("hello <|endoftext|>");
        assert_eq!(special, [31373, 220, GPT2_EOT]);
        assert_eq!(tok.vocab_size(), 50257);
        // encode_ordinary: the marker in a document is text, not the separator.
        assert!(!tok.encode("<|endoftext|>").unwrap().contains(&GPT2_EOT));
        assert!(matches!(
            tok.decode(&[50257]),
            Err(DataError::UnknownToken { id: 50257, .. })
        ));
    }

    #[test]
    fn gpt2_round_trips_the_full_tiny_shakespeare() {
        let text = shakespeare();
        let tok = TextTokenizer::gpt2();
        let ids = tok.encode(&text).unwrap();
        // About 3.4 characters per token on Shakespeare's English (nanoGPT's
        // shakespeare prepare.py reports 338,025 tokens in all).
        assert_eq!(ids.len(), 338_025);
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }

    #[test]
    fn streamed_bytes_join_cut_characters() {
        let tok = TextTokenizer::gpt2();
        let text = "naïve café — 日本語 🎉";
        let ids = tok.encode(text).unwrap();
        let mut stream = Utf8Stream::default();
        let mut out = String::new();
        for &id in &ids {
            let piece = stream.push(&tok.token_bytes(id).unwrap());
            assert!(!piece.contains(char::REPLACEMENT_CHARACTER));
            out.push_str(&piece);
        }
        out.push_str(&stream.finish());
        assert_eq!(out, text);
        // Some token of the emoji or the CJK text is a partial character.
        assert!(
            ids.iter()
                .any(|&id| std::str::from_utf8(&tok.token_bytes(id).unwrap()).is_err())
        );
    }

    #[test]
    fn tokenizer_files_old_and_new() {
        let char_tok = TextTokenizer::char(CharTokenizer::from_text("ab"));
        let json = serde_json::to_string(&char_tok).unwrap();
        assert_eq!(json, r#"{"kind":"char","chars":["a","b"]}"#);
        assert_eq!(
            serde_json::from_str::<TextTokenizer>(&json).unwrap(),
            char_tok
        );
        let legacy = r#"{"chars":["a","b"]}"#;
        assert_eq!(
            serde_json::from_str::<TextTokenizer>(legacy).unwrap(),
            char_tok
        );
        let gpt2 = serde_json::to_string(&TextTokenizer::gpt2()).unwrap();
        assert_eq!(gpt2, r#"{"kind":"gpt2"}"#);
        assert_eq!(
            serde_json::from_str::<TextTokenizer>(&gpt2).unwrap(),
            TextTokenizer::gpt2()
        );
        assert!(serde_json::from_str::<TextTokenizer>(r#"{"kind":"bpe"}"#).is_err());
        assert!(
            serde_json::from_str::<TextTokenizer>(r#"{"kind":"char","chars":["b","a"]}"#).is_err()
        );
        assert!(serde_json::from_str::<TextTokenizer>(r#"{"kind":"gpt2","chars":[]}"#).is_err());
    }

    #[test]
    fn chat_tokens_follow_the_base_vocabulary_and_never_come_from_text() {
        for base in [
            TextTokenizer::char(CharTokenizer::from_text("<|>_abdefginorstu")),
            TextTokenizer::gpt2(),
        ] {
            let n = base.vocab_size();
            assert_eq!(base.special_id(Special::Bos), None);
            let chat = base.clone().with_chat();
            assert_eq!(chat.vocab_size(), n + Special::ALL.len());
            assert_eq!(chat.base_vocab_size(), n);
            for (i, special) in Special::ALL.into_iter().enumerate() {
                let id = chat.special_id(special).unwrap();
                assert_eq!(id as usize, n + i);
                assert_eq!(chat.special(id), Some(special));
                assert_eq!(chat.decode(&[id]).unwrap(), special.text());
                // Typed as text, a chat token's name is plain text in the base vocabulary.
                let typed = chat.encode(special.text()).unwrap();
                assert_eq!(typed, base.encode(special.text()).unwrap());
                assert!(typed.iter().all(|&t| chat.special(t).is_none()));
            }
            assert_eq!(chat.special(n as u32 - 1), None);
            assert!(chat.decode(&[(n + Special::ALL.len()) as u32]).is_err());
            assert_eq!(chat.clone().without_chat(), base);
            let json = serde_json::to_string(&chat).unwrap();
            assert!(json.ends_with(r#","chat":true}"#), "{json}");
            assert_eq!(serde_json::from_str::<TextTokenizer>(&json).unwrap(), chat);
        }
    }

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
