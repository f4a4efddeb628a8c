//! `gpt prepare`: corpora larger than memory, as nanoGPT's `prepare.py` makes them.
//!
//! ```text
//! DIR/
//!   train.bin   the train split's token ids, flat little-endian u16 (u32 when the
//!   val.bin     vocabulary does not fit in 16 bits)
//!   meta.json   the tokenizer, vocabulary size, token counts, the inputs (path, size,
//!               sha256) and the split; written last, so its presence means "finished"
//! ```
//!
//! Inputs are `.txt` files (one document each), `.jsonl` files (one document per line,
//! its `text` field) or directories of them (walked in name order); a named dataset
//! (`tinyshakespeare`) stands for its verified local copy. With GPT-2's BPE each
//! document ends with `<|endoftext|>` (nanoGPT's `ids.append(enc.eot_token)`); a character
//! vocabulary has no such token, so documents are concatenated as they are.
//!
//! **Streaming.** One thread reads the inputs and cuts them into pieces of about 1 MiB
//! at points where GPT-2's pre-tokenizer starts a new piece anyway (see [`cut_point`]), so
//! encoding the pieces separately gives exactly the ids of encoding the whole; the pieces
//! are encoded in parallel on all cores (rayon) and written in order. Memory holds a few
//! pieces per core, whatever the input's size.
//!
//! **The split.** A single `.txt` input (Tiny Shakespeare) is split by position: the last
//! `val_fraction` of its tokens are val, as the lecture and nanoGPT's shakespeare
//! `prepare.py` do (`int(0.9 * n)` for 0.1). Several documents are split by document: each
//! goes to val with probability `val_fraction`, by a fixed hash of its index (nanoGPT's
//! openwebtext `prepare.py` shuffles documents into a 0.0005 val split the same way).
//!
//! **Crash safety.** The token files are written as `*.partial` and renamed when complete,
//! then `meta.json` is written atomically; `--force` removes `meta.json` before anything
//! else. A killed run leaves no `meta.json`, and [`open`] refuses a directory without one.
//! Re-running on the same inputs (same paths, sizes and sha256) and options does nothing.
//!
//! One file per concept: `meta` (`meta.json`), `inputs` (the files to read), `cut` (where
//! a text may be cut), `reader` (the pieces streamed from the inputs), `chars` (the
//! character vocabulary's pass), `token_file` (a token file being written), `write` (`gpt
//! prepare` itself), `up_to_date` (is there nothing to do) and `open` (a prepared
//! directory read back).

mod chars;
mod cut;
mod inputs;
mod meta;
mod open;
mod reader;
mod texts;
mod token_file;
mod up_to_date;
mod write;

pub use cut::cut_point;
pub use meta::{
    Dtype, FORMAT, InputRecord, META, Meta, SPLIT_SEED, SplitRecord, SplitRule, read_meta,
    read_meta_bytes,
};
pub use open::open;
pub use texts::{InputText, InputsRead, input_text};
pub use write::{Outcome, PrepareOptions, PrepareTokenizer, Progress, Silent, prepare};

use crate::DataError;
use std::path::Path;

pub const TRAIN_BIN: &str = "train.bin";
pub const VAL_BIN: &str = "val.bin";
/// What an unfinished token file is called until it is complete.
const PARTIAL: &str = "partial";
/// Held by the one `gpt prepare` writing a directory; its presence marks the directory
/// as prepared data even before `meta.json` exists (a killed run's).
const LOCK: &str = "prepare.lock";

/// A prepared directory, to the rule every command that writes a folder follows: marked by
/// `meta.json` or the lock; a folder holding only unfinished token files is one too.
const PREPARED: crate::files::Folder = crate::files::Folder {
    holds: "prepared data",
    marks: &[META, LOCK],
    writes: |name| name.ends_with(PARTIAL),
    hint: "choose another --out (or an empty one)",
};

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |err| DataError::Io {
        path: path.display().to_string(),
        err,
    }
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |err| DataError::Write {
        path: path.display().to_string(),
        err,
    }
}

fn bad(msg: String) -> DataError {
    DataError::Prepared(msg)
}

#[cfg(test)]
mod tests;
