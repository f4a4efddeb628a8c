//! `gpt prepare` itself: the inputs tokenized on all cores into the token files, split,
//! and `meta.json` written last (see the module doc of `prepared`).

use super::chars::scan_chars;
use super::inputs::{Format, InputFile, input_files};
use super::meta::{Dtype, FORMAT, InputRecord, META, Meta, SPLIT_SEED, SplitRecord, SplitRule};
use super::reader::{Msg, PIECE_BYTES, Reader, for_each_batch};
use super::token_file::{TokenFile, to_bytes};
use super::up_to_date::unchanged;
use super::{LOCK, PARTIAL, PREPARED, TRAIN_BIN, VAL_BIN, bad, write_err};
use crate::bpe::BpeTokenizer;
use crate::tokenizer::BaseTokenizer;
use crate::{GPT2_EOT, Result, TextTokenizer, Tokenizer, TokenizerKind};
use rayon::prelude::*;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The tokenizer `gpt prepare` encodes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareTokenizer {
    /// One token per character, the vocabulary scanned from the inputs first.
    Char,
    Gpt2,
    /// A file `gpt tokenizer train` wrote.
    Bpe(BpeTokenizer),
}

impl PrepareTokenizer {
    pub fn kind(&self) -> TokenizerKind {
        match self {
            PrepareTokenizer::Char => TokenizerKind::Char,
            PrepareTokenizer::Gpt2 => TokenizerKind::Gpt2,
            PrepareTokenizer::Bpe(_) => TokenizerKind::Bpe,
        }
    }

    /// Whether data prepared with `tokenizer` was prepared with this one (a BPE: the same
    /// file).
    pub fn made(&self, tokenizer: &TextTokenizer) -> bool {
        match (self, tokenizer.base()) {
            (PrepareTokenizer::Bpe(ours), BaseTokenizer::Bpe(theirs)) => ours == theirs,
            _ => self.kind() == tokenizer.kind(),
        }
    }
}

/// What `gpt prepare` was asked for.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub tokenizer: PrepareTokenizer,
    /// Files (`.txt`, `.jsonl`) and directories of them.
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub val_fraction: f64,
    /// Prepare again even when the directory already holds these inputs, prepared.
    pub force: bool,
}

/// How `prepare` ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The directory was written.
    Prepared(Meta),
    /// It already held these inputs, prepared the same way: nothing was done.
    Unchanged(Meta),
}

/// What `prepare` reports as it goes (the CLI draws a progress bar or prints lines).
pub trait Progress: Sync {
    /// A pass over `total_bytes` of input begins (`"scanning"` for the character
    /// vocabulary, then `"tokenizing"`).
    fn begin(&self, _pass: &str, _total_bytes: u64) {}
    /// `bytes` of input were processed, giving `tokens`.
    fn advance(&self, _bytes: u64, _tokens: u64) {}
    /// An input file was finished (tokenizing pass).
    fn file_done(&self, _path: &Path, _bytes: u64, _tokens: u64) {}
}

/// Reports nothing.
pub struct Silent;
impl Progress for Silent {}

/// Takes the writer lock of the prepared directory `dir`: a second `gpt prepare` on it
/// fails at once instead of interleaving its writes.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(write_err(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(bad(format!(
            "{} is being written by another gpt prepare; wait for it to finish",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(write_err(&path)(e)),
    }
}

/// Tokenizes the inputs into `opts.out` (see the module doc), or does nothing when it
/// already holds them prepared the same way.
pub fn prepare(opts: &PrepareOptions, progress: &dyn Progress) -> Result<Outcome> {
    prepare_with(opts, progress, PIECE_BYTES)
}

pub(super) fn prepare_with(
    opts: &PrepareOptions,
    progress: &dyn Progress,
    piece_bytes: usize,
) -> Result<Outcome> {
    let f = opts.val_fraction;
    if !(f > 0.0 && f < 1.0) {
        return Err(bad(format!(
            "--val-fraction must be between 0 and 1 (exclusive), got {f}"
        )));
    }
    let files = input_files(&opts.inputs)?;
    let rule = if files.len() == 1 && files[0].format == Format::Txt {
        SplitRule::Tail
    } else {
        SplitRule::Documents
    };
    let split = SplitRecord {
        rule,
        val_fraction: f,
        seed: SPLIT_SEED,
    };
    let out = &opts.out;
    PREPARED.check(out).map_err(bad)?;
    std::fs::create_dir_all(out).map_err(write_err(out))?;
    let _lock = lock(out)?;
    let meta_path = out.join(META);
    if meta_path.exists() {
        if !opts.force
            && let Some(meta) = unchanged(out, opts, &files, &split)?
        {
            return Ok(Outcome::Unchanged(meta));
        }
        // From here on the directory is not a finished one.
        std::fs::remove_file(&meta_path).map_err(write_err(&meta_path))?;
    }
    let total: u64 = files.iter().map(|f| f.bytes).sum();
    let reader = |files: Vec<InputFile>| Reader {
        files,
        piece_bytes,
        rule,
        val_fraction: f,
    };
    let (tokenizer, scanned) = match &opts.tokenizer {
        PrepareTokenizer::Gpt2 => (TextTokenizer::gpt2(), None),
        PrepareTokenizer::Bpe(bpe) => (TextTokenizer::bpe(bpe.clone()), None),
        PrepareTokenizer::Char => {
            progress.begin("scanning", total);
            let (chars, hashes) = scan_chars(reader(files.clone()), progress)?;
            (TextTokenizer::char(chars), Some(hashes))
        }
    };
    let vocab_size = tokenizer.vocab_size();
    let dtype = Dtype::for_vocab(vocab_size);
    let width = dtype.width();
    let eot = match &opts.tokenizer {
        PrepareTokenizer::Gpt2 => Some(GPT2_EOT),
        PrepareTokenizer::Bpe(bpe) => Some(bpe.end_of_text()),
        PrepareTokenizer::Char => None,
    };
    let mut train = TokenFile::create(out, TRAIN_BIN)?;
    let mut val = TokenFile::create(out, VAL_BIN)?;
    let mut records: Vec<InputRecord> = Vec::new();
    let mut documents = 0u64;
    let mut file_tokens = 0u64;
    progress.begin("tokenizing", total);
    let written = for_each_batch(reader(files.clone()), |batch| {
        let encoded: Vec<Option<Result<Vec<u8>>>> = batch
            .par_iter()
            .map(|m| match m {
                Msg::Piece(p) => Some(tokenizer.encode(&p.text).map(|mut ids| {
                    if p.doc_end {
                        ids.extend(eot);
                    }
                    to_bytes(&ids, width)
                })),
                Msg::FileDone { .. } => None,
            })
            .collect();
        for (msg, bytes) in batch.iter().zip(encoded) {
            match msg {
                Msg::Piece(p) => {
                    let bytes = bytes.expect("pieces are encoded")?;
                    let to = if p.val { &mut val } else { &mut train };
                    to.write(&bytes, width)?;
                    let tokens = (bytes.len() / width) as u64;
                    file_tokens += tokens;
                    documents += p.doc_end as u64;
                    progress.advance(p.bytes, tokens);
                }
                Msg::FileDone { file, sha256 } => {
                    let f = &files[*file];
                    if let Some(before) = scanned.as_ref().and_then(|h| h.get(*file))
                        && before != sha256
                    {
                        return Err(bad(format!(
                            "{} changed while it was being prepared; run gpt prepare again",
                            f.path.display()
                        )));
                    }
                    progress.file_done(&f.path, f.bytes, file_tokens);
                    file_tokens = 0;
                    records.push(InputRecord {
                        path: f.path.clone(),
                        bytes: f.bytes,
                        sha256: sha256.clone(),
                    });
                }
            }
        }
        Ok(())
    });
    let finished = written.and_then(|()| {
        let (mut train_file, train_partial, train_path, mut train_tokens) = train.into_file()?;
        let (mut val_file, val_partial, val_path, mut val_tokens) = val.into_file()?;
        if rule == SplitRule::Tail {
            // The lecture's split: train is the first int((1 - f) * n) tokens.
            let n = train_tokens;
            let keep = (n as f64 * (1.0 - f)) as u64;
            let at = keep * width as u64;
            train_file
                .seek(SeekFrom::Start(at))
                .map_err(write_err(&train_partial))?;
            std::io::copy(&mut (&train_file).take((n - keep) * width as u64), &mut val_file)
                .map_err(write_err(&val_partial))?;
            train_file.set_len(at).map_err(write_err(&train_partial))?;
            for (file, path) in [(&train_file, &train_partial), (&val_file, &val_partial)] {
                file.sync_all().map_err(write_err(path))?;
            }
            train_tokens = keep;
            val_tokens = n - keep;
        }
        val_file.flush().map_err(write_err(&val_partial))?;
        if train_tokens == 0 || val_tokens == 0 {
            let (which, hint) = match rule {
                SplitRule::Tail => ("one of the splits", "use a longer text"),
                SplitRule::Documents if val_tokens == 0 => (
                    "the val split",
                    "no document fell into val: raise --val-fraction or add documents",
                ),
                SplitRule::Documents => ("the train split", "lower --val-fraction"),
            };
            return Err(bad(format!(
                "{which} is empty ({train_tokens} train, {val_tokens} val tokens from {documents} documents); {hint}"
            )));
        }
        for (partial, path) in [(&train_partial, &train_path), (&val_partial, &val_path)] {
            std::fs::rename(partial, path).map_err(write_err(path))?;
        }
        let meta = Meta {
            format: FORMAT,
            tokenizer: tokenizer.clone(),
            vocab_size,
            dtype,
            train_tokens,
            val_tokens,
            documents,
            inputs: records.clone(),
            split: split.clone(),
        };
        let json = serde_json::to_string_pretty(&meta).expect("a meta always serialises");
        crate::files::write_atomically(&meta_path, json.as_bytes()).map_err(write_err(&meta_path))?;
        Ok(meta)
    });
    match finished {
        Ok(meta) => Ok(Outcome::Prepared(meta)),
        Err(e) => {
            for name in [TRAIN_BIN, VAL_BIN] {
                let _ = std::fs::remove_file(out.join(format!("{name}.{PARTIAL}")));
            }
            Err(e)
        }
    }
}
