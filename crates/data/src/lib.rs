//! Text → tokens → batches: the lecture's data pipeline, with no model code.
//!
//! - [`dataset`]: what a run trains on ([`Dataset`]: a named dataset, a file, a prepared
//!   directory or generated problems), its one string form, and the one way to open it.
//! - [`source`]: where text comes from (a local file or a named, checksummed dataset).
//! - [`tokenizer`]: the lecture's character-level tokenizer and GPT-2's BPE, one
//!   [`TextTokenizer`] behind a [`Tokenizer`] trait.
//! - [`prepared`]: `gpt prepare`'s corpora larger than memory: streamed, tokenized in
//!   parallel into `train.bin`/`val.bin` + `meta.json`, read back memory-mapped.
//! - [`files`]: atomic writes, the rule for which folder a command may write, downloads
//!   with timeouts.
//! - [`tokens`]: the compact token store and the 90/10 train/val split.
//! - [`conversation`]: the chat format (JSON lines of messages) and the one chat template
//!   that renders a conversation into tokens and a loss mask.
//! - [`batcher`]: random `block_size` chunks and the Burn [`Batcher`](burn::data::dataloader::batcher::Batcher)
//!   that stacks them into `(inputs, targets)`, as the lecture's `get_batch`.
//! - Exercise 2, arithmetic instead of text: [`problem`] (one problem, its steps, user
//!   input), [`arithmetic`] (the task and its character layout), [`generator`] (endless
//!   random problems, a held-out part); [`corpus`] lets a run train on either.
//! - [`sft`]: conversations (see [`conversation`]) split and packed into chunks whose loss
//!   counts the replies only.

pub mod arithmetic;
pub mod batcher;
pub mod bpe;
pub mod conversation;
pub mod corpus;
pub mod dataset;
pub mod files;
pub mod generator;
pub mod prepared;
pub mod problem;
pub mod sft;
pub mod source;
pub mod tokenizer;
pub mod tokens;

pub use arithmetic::TaskConfig;
pub use batcher::{Chunk, ConsecutiveWindows, LmBatch, LmBatcher, RandomChunks, mix_seed};
pub use corpus::Corpus;
pub use dataset::{DataRecord, Dataset, OpenDataset};
pub use problem::{Op, Problem};
pub use source::{TextSource, load_text};
pub use tokenizer::{
    BaseTokenizer, CharTokenizer, GPT2_EOT, GPT2_VOCAB_SIZE, Special, TextTokenizer, Tokenizer,
    TokenizerKind, Utf8Stream,
};
pub use tokens::{Split, TokenStore, Tokens};

/// Everything that can go wrong between a path on disk and a batch of tokens.
/// Each message is meant to be shown to a user as it is.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    // Not named `source`: the message already includes the cause, and a `source` field
    // would make error reporters print it twice.
    #[error("cannot read {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("cannot write into {path}: {err}")]
    Write { path: String, err: std::io::Error },
    #[error("refusing to read {path}: {reason}")]
    TooLarge { path: String, reason: String },
    #[error("{path} is empty: there is no text to train on")]
    Empty { path: String },
    #[error("{path} is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { path: String, offset: usize },
    #[error(
        "character {ch:?} at position {position} is not in the vocabulary ({vocab_size} characters seen in the training text)"
    )]
    UnknownChar {
        ch: char,
        position: usize,
        vocab_size: usize,
    },
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    UnknownToken { id: u32, vocab_size: usize },
    #[error("unknown dataset {name:?} (known: {known}); pass a text file with --data PATH instead")]
    UnknownDataset { name: String, known: String },
    #[error(
        "could not download {name} from {url}: {reason}. With no network, point --data PATH at a local copy or set BURNGPT_DATA_DIR to a folder holding {name}/input.txt"
    )]
    Download {
        name: String,
        url: String,
        reason: String,
    },
    #[error("{path} does not match the {name} manifest: {reason}")]
    Checksum {
        name: String,
        path: String,
        reason: String,
    },
    #[error(
        "{input:?} is not a problem this run can solve: {reason} (write numbers of up to {n_digits} digits around one of {ops}, like 12+345=)"
    )]
    BadProblem {
        input: String,
        reason: String,
        n_digits: usize,
        ops: String,
    },
    #[error("{0}")]
    Prepared(String),
    #[error("{0}")]
    Tokenizer(String),
    #[error("{0}")]
    Conversation(String),
    #[error("invalid [task]: {0}")]
    InvalidTask(String),
    #[error(
        "the {split} split has {len} tokens, too few for block_size {block_size} (needs at least {needed}); use more text or a smaller block_size"
    )]
    TooShort {
        split: &'static str,
        len: usize,
        block_size: usize,
        needed: usize,
    },
}

pub type Result<T> = std::result::Result<T, DataError>;
