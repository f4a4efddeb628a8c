//! Supervised finetuning's examples: conversations rendered by the one chat template,
//! split into train and val by conversation, and served as `block_size + 1` chunks.
//!
//! A chunk starts with a whole conversation and packs more after it while they fit whole
//! (nanochat's SFT packs the same way), then pads; padding is never scored. A conversation
//! longer than `block_size + 1` tokens is cut there: training sees its beginning, and a
//! conversation with no reply token inside that window is left out. Both are counted when
//! the data is opened.

use crate::conversation::{Conversation, Rendered, render};
use crate::{Chunk, DataError, Result, Special, Split, TextTokenizer, mix_seed};
use burn::data::dataset::Dataset;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// One conversation in this many is held out for val (chosen by a hash of its tokens, so
/// copies of a conversation land in the same split).
const HELD_OUT_EVERY: u64 = 10;

/// Rendered conversations, split.
#[derive(Debug, Clone)]
pub struct ConversationStore {
    train: Arc<Vec<Rendered>>,
    val: Arc<Vec<Rendered>>,
    /// The id written after the last conversation of a chunk (never scored).
    pad: u32,
}

impl ConversationStore {
    /// Renders `conversations` with `tokenizer` (which has the chat tokens) for a model of
    /// `block_size`, and says what it left out or cut, one note per kind.
    pub fn new(
        conversations: &[Conversation],
        tokenizer: &TextTokenizer,
        block_size: usize,
    ) -> Result<(Self, Vec<String>)> {
        let window = block_size + 1;
        let mut notes = Vec::new();
        let (mut unknown, mut no_reply, mut cut) = (Vec::new(), 0, 0);
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for c in conversations {
            let r = match render(&c.messages, tokenizer) {
                Ok(r) => r,
                Err(DataError::UnknownChar { ch, .. }) => {
                    unknown.push(ch);
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Target j of a chunk is token j + 1: a reply must start within the window.
            if !r.scored[1..window.min(r.ids.len())].contains(&true) {
                no_reply += 1;
                continue;
            }
            cut += usize::from(r.ids.len() > window);
            let hash = r.ids.iter().fold(0, |h, &id| mix_seed(h, id as u64));
            if hash.is_multiple_of(HELD_OUT_EVERY) {
                val.push(r);
            } else {
                train.push(r);
            }
        }
        let n = conversations.len();
        if !unknown.is_empty() {
            let mut chars = unknown.clone();
            chars.sort_unstable();
            chars.dedup();
            let shown: Vec<String> = chars.iter().take(8).map(|c| format!("{c:?}")).collect();
            notes.push(format!(
                "{} of {n} conversations use characters outside {} ({}{}): left out",
                unknown.len(),
                tokenizer.describe(),
                shown.join(" "),
                if chars.len() > 8 { " …" } else { "" }
            ));
        }
        if no_reply > 0 {
            notes.push(format!(
                "{no_reply} of {n} conversations have no reply within block_size + 1 = {window} tokens: left out"
            ));
        }
        if cut > 0 {
            notes.push(format!(
                "{cut} of {n} conversations are longer than block_size + 1 = {window} tokens: training sees their first {window}"
            ));
        }
        if train.is_empty() && val.is_empty() {
            return Err(DataError::Conversation(format!(
                "none of the {n} conversations can be trained on with {} and block_size {block_size}",
                tokenizer.describe()
            )));
        }
        if train.is_empty() || val.is_empty() {
            notes.push(format!(
                "{} conversations are too few to hold one in {HELD_OUT_EVERY} out: val is the train set",
                train.len() + val.len()
            ));
            train.append(&mut val);
            val = train.clone();
        }
        let pad = tokenizer
            .special_id(Special::Bos)
            .expect("render checked the chat tokens");
        let store = Self {
            train: Arc::new(train),
            val: Arc::new(val),
            pad,
        };
        Ok((store, notes))
    }

    pub fn split(&self, split: Split) -> &Arc<Vec<Rendered>> {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// `len` packed chunks of random conversations of `split`; item `i` depends only on
    /// `(seed, i)`, as `RandomChunks`' do.
    pub fn random_chunks(
        &self,
        split: Split,
        block_size: usize,
        len: usize,
        seed: u64,
    ) -> PackedConversations {
        PackedConversations {
            conversations: self.split(split).clone(),
            block_size,
            len,
            seed,
            pad: self.pad,
        }
    }

    /// Every conversation of `split` once, one per chunk: the deterministic whole-split
    /// loss.
    pub fn each(&self, split: Split, block_size: usize) -> EachConversation {
        EachConversation {
            conversations: self.split(split).clone(),
            block_size,
            pad: self.pad,
        }
    }
}

/// A chunk of `block_size + 1` tokens being filled with conversations.
struct Packing {
    tokens: Vec<u32>,
    /// Whether each token is a target to learn (`Rendered::scored`).
    scored: Vec<bool>,
    window: usize,
}

impl Packing {
    fn new(block_size: usize) -> Self {
        Self {
            tokens: Vec::new(),
            scored: Vec::new(),
            window: block_size + 1,
        }
    }

    fn room(&self) -> usize {
        self.window - self.tokens.len()
    }

    /// Appends as much of `r` as fits.
    fn push(&mut self, r: &Rendered) {
        let n = r.ids.len().min(self.room());
        self.tokens.extend_from_slice(&r.ids[..n]);
        self.scored.extend_from_slice(&r.scored[..n]);
    }

    fn finish(mut self, pad: u32) -> Chunk {
        let room = self.room();
        self.tokens.extend(std::iter::repeat_n(pad, room));
        self.scored.extend(std::iter::repeat_n(false, room));
        // Target j is token j + 1.
        Chunk {
            tokens: self.tokens,
            scored: Some(self.scored.split_off(1)),
        }
    }
}

/// Random conversations packed into chunks (see the module docs).
#[derive(Debug, Clone)]
pub struct PackedConversations {
    conversations: Arc<Vec<Rendered>>,
    block_size: usize,
    len: usize,
    seed: u64,
    pad: u32,
}

impl Dataset<Chunk> for PackedConversations {
    fn get(&self, index: usize) -> Option<Chunk> {
        if index >= self.len {
            return None;
        }
        let mut rng = StdRng::seed_from_u64(mix_seed(self.seed, index as u64));
        let mut draw = || &self.conversations[rng.random_range(0..self.conversations.len())];
        let mut chunk = Packing::new(self.block_size);
        chunk.push(draw());
        loop {
            let next = draw();
            if next.ids.len() > chunk.room() {
                break;
            }
            chunk.push(next);
        }
        Some(chunk.finish(self.pad))
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// Each conversation of a split alone in its chunk, in order.
#[derive(Debug, Clone)]
pub struct EachConversation {
    conversations: Arc<Vec<Rendered>>,
    block_size: usize,
    pad: u32,
}

impl Dataset<Chunk> for EachConversation {
    fn get(&self, index: usize) -> Option<Chunk> {
        let r = self.conversations.get(index)?;
        let mut chunk = Packing::new(self.block_size);
        chunk.push(r);
        Some(chunk.finish(self.pad))
    }

    fn len(&self) -> usize {
        self.conversations.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Message;
    use crate::{CharTokenizer, Tokenizer};

    fn tokenizer() -> TextTokenizer {
        TextTokenizer::char(CharTokenizer::from_text("abcdefghijklmnopqrstuvwxyz ?!")).with_chat()
    }

    fn conversation(i: usize) -> Conversation {
        let word = |n: usize| {
            ((b'a' + (n % 26) as u8) as char)
                .to_string()
                .repeat(1 + n % 5)
        };
        Conversation {
            messages: vec![Message::user(word(i)), Message::assistant(word(i + 7))],
        }
    }

    #[test]
    fn chunks_pack_whole_conversations_and_score_only_replies() {
        let tok = tokenizer();
        let conversations: Vec<Conversation> = (0..200).map(conversation).collect();
        let (store, notes) = ConversationStore::new(&conversations, &tok, 32).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let (train, val) = (store.split(Split::Train), store.split(Split::Val));
        assert_eq!(train.len() + val.len(), 200);
        assert!((5..=40).contains(&val.len()), "{}", val.len());
        let chunks = store.random_chunks(Split::Train, 32, 50, 7);
        let bos = tok.special_id(Special::Bos).unwrap();
        for i in 0..50 {
            let chunk = chunks.get(i).unwrap();
            assert_eq!(chunk, chunks.get(i).unwrap());
            assert_eq!(chunk.tokens.len(), 33);
            let scored = chunk.scored.as_ref().unwrap();
            assert_eq!(scored.len(), 32);
            // Every scored target is a reply character or its end, never a pad or a prompt.
            for (j, &s) in scored.iter().enumerate() {
                let next = chunk.tokens[j + 1];
                if s {
                    assert!(
                        tok.special(next).is_none_or(|s| s == Special::AssistantEnd),
                        "{next}"
                    );
                }
            }
            // Each conversation in the chunk is a whole one from the split.
            let text = tok.decode(&chunk.tokens).unwrap();
            let text = text.trim_end_matches("<|bos|>");
            assert_eq!(chunk.tokens[0], bos);
            for piece in text.split("<|bos|>").skip(1) {
                let whole = format!("<|bos|>{piece}");
                assert!(
                    train.iter().any(|r| tok.decode(&r.ids).unwrap() == whole),
                    "{whole}"
                );
            }
        }
    }

    #[test]
    fn long_conversations_are_cut_and_counted_and_val_is_never_empty() {
        let tok = tokenizer();
        let long = Conversation {
            messages: vec![
                Message::user("a".repeat(4)),
                Message::assistant("b".repeat(40)),
            ],
        };
        let too_long_to_answer = Conversation {
            messages: vec![Message::user("a".repeat(40)), Message::assistant("b")],
        };
        let (store, notes) =
            ConversationStore::new(&[long.clone(), too_long_to_answer], &tok, 16).unwrap();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes[0].contains("1 of 2 conversations have no reply"),
            "{}",
            notes[0]
        );
        assert!(
            notes[1].contains("1 of 2 conversations are longer"),
            "{}",
            notes[1]
        );
        assert!(notes[2].contains("val is the train set"), "{}", notes[2]);
        assert_eq!(store.split(Split::Val).len(), 1);
        let chunk = store.each(Split::Val, 16).get(0).unwrap();
        assert_eq!(chunk.tokens.len(), 17);
        // <|bos|> <|user_start|> aaaa <|user_end|> <|assistant_start|>: reply from token 8.
        let scored = chunk.scored.unwrap();
        assert_eq!(scored.iter().position(|&s| s), Some(7));
        assert!(scored[7..].iter().all(|&s| s));
    }

    #[test]
    fn characters_outside_a_saved_vocabulary_leave_a_conversation_out() {
        let tok = tokenizer();
        let odd = Conversation {
            messages: vec![Message::user("hi 42"), Message::assistant("ok")],
        };
        let (_, notes) = ConversationStore::new(&[conversation(1), odd], &tok, 32).unwrap();
        assert!(
            notes[0].contains("1 of 2 conversations use characters outside")
                && notes[0].contains("'4'"),
            "{notes:?}"
        );
        let err = ConversationStore::new(&[conversation(0)], &tok.clone().without_chat(), 32);
        assert!(err.unwrap_err().to_string().contains("no chat tokens"));
    }
}
