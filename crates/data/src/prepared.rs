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

use crate::tokens::MappedTokens;
use crate::{
    CharTokenizer, DataError, GPT2_EOT, Result, TextTokenizer, TokenStore, Tokenizer,
    TokenizerKind, Tokens, mix_seed,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

pub const META: &str = "meta.json";
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

/// `meta.json`'s format; a newer one is refused rather than misread.
pub const FORMAT: u32 = 1;
/// The seed of the document split (nanoGPT's openwebtext `prepare.py` uses 2357).
pub const SPLIT_SEED: u64 = 2357;
/// The size of the pieces encoded in parallel.
const PIECE_BYTES: usize = 1 << 20;
/// Text with no safe cut point is cut anyway past this size (see [`cut_point`]).
const MAX_PIECE_BYTES: usize = 64 << 20;
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

/// What `gpt prepare` was asked for.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub tokenizer: TokenizerKind,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Txt,
    Jsonl,
}

#[derive(Debug, Clone)]
struct InputFile {
    path: PathBuf,
    format: Format,
    bytes: u64,
}

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

/// The files to read: each input file, or each `.txt`/`.jsonl` under an input directory
/// (in name order), as absolute paths.
fn input_files(inputs: &[PathBuf]) -> Result<Vec<InputFile>> {
    fn format_of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "txt" => Some(Format::Txt),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }
    /// Walks `dir` (whose real path is the last of `ancestors`), following links to
    /// directories but refusing one that leads back to a directory it is inside.
    fn walk(dir: &Path, ancestors: &mut Vec<PathBuf>, seen: &mut Seen) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .map(|e| e.map(|e| e.path()).map_err(io_err(dir)))
            .collect::<Result<_>>()?;
        entries.sort();
        for path in entries {
            if path.is_dir() {
                let real = std::fs::canonicalize(&path).map_err(io_err(&path))?;
                if ancestors.contains(&real) {
                    return Err(bad(format!(
                        "{} leads back to {}, a directory it is inside: a loop (remove the link, or pass the directories it should add as --input)",
                        path.display(),
                        real.display()
                    )));
                }
                if seen.dirs.insert(real.clone()) {
                    ancestors.push(real);
                    walk(&path, ancestors, seen)?;
                    ancestors.pop();
                }
            } else if path.is_file() && format_of(&path).is_some() {
                seen.file(path)?;
            }
        }
        Ok(())
    }
    /// The directories walked and the files found, each once by its real path.
    #[derive(Default)]
    struct Seen {
        dirs: HashSet<PathBuf>,
        real_files: HashSet<PathBuf>,
        files: Vec<PathBuf>,
    }
    impl Seen {
        fn file(&mut self, path: PathBuf) -> Result<()> {
            let real = std::fs::canonicalize(&path).map_err(io_err(&path))?;
            if self.real_files.insert(real) {
                self.files.push(path);
            }
            Ok(())
        }
    }
    if inputs.is_empty() {
        return Err(bad("no --input given".into()));
    }
    let mut seen = Seen::default();
    for input in inputs {
        // A named dataset (`tinyshakespeare`) that is not a path here: its verified copy.
        let named = input
            .to_str()
            .filter(|name| !input.exists() && crate::source::Manifest::named(name).is_ok());
        let input = match named {
            Some(name) => crate::source::named_path(name)?,
            None => input.clone(),
        };
        let input = std::path::absolute(&input).map_err(io_err(&input))?;
        let meta = std::fs::metadata(&input).map_err(io_err(&input))?;
        if meta.is_dir() {
            let before = seen.files.len();
            let real = std::fs::canonicalize(&input).map_err(io_err(&input))?;
            if seen.dirs.insert(real.clone()) {
                walk(&input, &mut vec![real], &mut seen)?;
            }
            if seen.files.len() == before {
                return Err(bad(format!(
                    "{} holds no .txt or .jsonl file{}",
                    input.display(),
                    if before > 0 {
                        " that the inputs before it did not"
                    } else {
                        ""
                    }
                )));
            }
        } else if format_of(&input).is_none() {
            return Err(bad(format!(
                "{}: expected a .txt or .jsonl file, or a directory of them",
                input.display()
            )));
        } else {
            crate::source::check_regular_file(&input, u64::MAX)?;
            seen.file(input)?;
        }
    }
    seen.files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::metadata(&path).map_err(io_err(&path))?.len();
            let format = format_of(&path).expect("filtered by extension");
            Ok(InputFile {
                path,
                format,
                bytes,
            })
        })
        .collect()
}

/// Where to cut `text` so that its two halves, encoded separately, give the ids of the
/// whole: the first ASCII space at or after `from` that sits between two printable ASCII
/// characters (`x y`). GPT-2's pre-tokenizer
/// (`'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s`)
/// never takes a space into the piece of the non-space before it, and a single space
/// followed by a non-space always starts a new piece (` ?\p{L}`, ` ?\p{N}` or
/// ` ?[^\s…]`), so a piece boundary falls there in the whole text too; BPE merges never
/// cross pieces. The cut is returned as the index of the space (the second half starts
/// with it).
pub fn cut_point(text: &[u8], from: usize) -> Option<usize> {
    let start = from.max(1);
    if text.len() < 2 || start >= text.len() - 1 {
        return None;
    }
    text[start..text.len() - 1]
        .iter()
        .position(|&b| b == b' ')
        .map(|i| i + start)
        .and_then(|first| {
            (first..text.len() - 1).find(|&i| {
                text[i] == b' ' && text[i - 1].is_ascii_graphic() && text[i + 1].is_ascii_graphic()
            })
        })
}

/// A piece of a document, ready to encode.
struct Piece {
    text: String,
    /// The last piece of its document (GPT-2: `<|endoftext|>` follows it).
    doc_end: bool,
    /// The document goes to val (`documents` split).
    val: bool,
    /// Input bytes this piece accounts for (progress).
    bytes: u64,
}

enum Msg {
    Piece(Piece),
    /// An input file was read to its end.
    FileDone {
        file: usize,
        sha256: String,
    },
}

/// Reads every input file in order, sending pieces of about `piece_bytes` and the
/// files' sha256. Runs on its own thread; stops at the first error, which it sends.
struct Reader {
    files: Vec<InputFile>,
    piece_bytes: usize,
    rule: SplitRule,
    val_fraction: f64,
}

impl Reader {
    fn run(self, tx: SyncSender<Result<Msg>>) {
        let mut doc = 0u64;
        for (i, f) in self.files.iter().enumerate() {
            let sent = match f.format {
                Format::Txt => self.read_txt(i, f, &mut doc, &tx),
                Format::Jsonl => self.read_jsonl(i, f, &mut doc, &tx),
            };
            match sent {
                Ok(true) => {}
                // The receiver is gone (it failed): nothing more to do.
                Ok(false) => return,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    }

    fn is_val(&self, doc: u64) -> bool {
        self.rule == SplitRule::Documents
            && (mix_seed(SPLIT_SEED, doc) as f64 / u64::MAX as f64) < self.val_fraction
    }

    /// Sends the pieces of one document held in `text` (its bytes of input: `bytes`).
    /// Returns false when the receiver has gone.
    fn send_doc(
        &self,
        text: &str,
        bytes: u64,
        doc: &mut u64,
        tx: &SyncSender<Result<Msg>>,
    ) -> bool {
        if text.is_empty() {
            return true;
        }
        let val = self.is_val(*doc);
        *doc += 1;
        let mut rest = text;
        let mut left = bytes;
        loop {
            let cut = cut_point(rest.as_bytes(), self.piece_bytes).filter(|_| {
                rest.len() > self.piece_bytes + 1 // a short rest stays whole
            });
            let (head, tail) = match cut {
                Some(c) => rest.split_at(c),
                None => (rest, ""),
            };
            let doc_end = tail.is_empty();
            let piece_bytes = if doc_end {
                left
            } else {
                (head.len() as u64).min(left)
            };
            left -= piece_bytes;
            let piece = Piece {
                text: head.to_string(),
                doc_end,
                val,
                bytes: piece_bytes,
            };
            if tx.send(Ok(Msg::Piece(piece))).is_err() {
                return false;
            }
            if doc_end {
                return true;
            }
            rest = tail;
        }
    }

    /// A `.txt` file: one document, read in blocks and sent as it goes.
    fn read_txt(
        &self,
        file: usize,
        f: &InputFile,
        doc: &mut u64,
        tx: &SyncSender<Result<Msg>>,
    ) -> Result<bool> {
        let mut reader = File::open(&f.path).map_err(io_err(&f.path))?;
        let mut hasher = Sha256::new();
        let mut pending: Vec<u8> = Vec::new();
        // File offset of pending[0], for error messages.
        let mut offset = 0u64;
        let mut block = vec![0u8; 1 << 20];
        let mut searched = 0usize;
        let mut any = false;
        let val = self.is_val(*doc);
        let not_utf8 = |at: u64| DataError::NotUtf8 {
            path: f.path.display().to_string(),
            offset: at as usize,
        };
        loop {
            let n = reader.read(&mut block).map_err(io_err(&f.path))?;
            hasher.update(&block[..n]);
            pending.extend_from_slice(&block[..n]);
            let eof = n == 0;
            // Send whole pieces while there is more than one piece's worth.
            while pending.len() > self.piece_bytes + 1 {
                let cut = match cut_point(&pending, self.piece_bytes.max(searched)) {
                    Some(c) => c,
                    None if pending.len() >= MAX_PIECE_BYTES => {
                        // No safe cut in 64 MiB (no "x y" at all): cut at a character
                        // boundary; the ids may differ from one encoding of the whole
                        // around this one cut.
                        let mut c = pending.len() - 1;
                        while c > 0 && (pending[c] & 0xC0) == 0x80 {
                            c -= 1;
                        }
                        c
                    }
                    None if eof => break,
                    None => {
                        searched = pending.len().saturating_sub(1);
                        break;
                    }
                };
                searched = 0;
                let head: Vec<u8> = pending.drain(..cut).collect();
                let text = String::from_utf8(head)
                    .map_err(|e| not_utf8(offset + e.utf8_error().valid_up_to() as u64))?;
                offset += text.len() as u64;
                any = true;
                let piece = Piece {
                    bytes: text.len() as u64,
                    text,
                    doc_end: false,
                    val,
                };
                if tx.send(Ok(Msg::Piece(piece))).is_err() {
                    return Ok(false);
                }
                if !eof {
                    break; // read more before cutting again
                }
            }
            if eof {
                break;
            }
        }
        let text = String::from_utf8(pending)
            .map_err(|e| not_utf8(offset + e.utf8_error().valid_up_to() as u64))?;
        // An empty file is no document; otherwise the rest (perhaps empty, when the text
        // ended at a cut) is its last piece and carries its end.
        if any || !text.is_empty() {
            *doc += 1;
            let piece = Piece {
                bytes: text.len() as u64,
                text,
                doc_end: true,
                val,
            };
            if tx.send(Ok(Msg::Piece(piece))).is_err() {
                return Ok(false);
            }
        }
        let sha256 = format!("{:x}", hasher.finalize());
        Ok(tx.send(Ok(Msg::FileDone { file, sha256 })).is_ok())
    }

    /// A `.jsonl` file: one document per line, its `text` field.
    fn read_jsonl(
        &self,
        file: usize,
        f: &InputFile,
        doc: &mut u64,
        tx: &SyncSender<Result<Msg>>,
    ) -> Result<bool> {
        #[derive(Deserialize)]
        struct Line {
            text: String,
        }
        let mut reader =
            BufReader::with_capacity(1 << 20, File::open(&f.path).map_err(io_err(&f.path))?);
        let mut hasher = Sha256::new();
        let mut line = Vec::new();
        let mut number = 0usize;
        // Bytes of blank lines, counted into the next document's progress.
        let mut carry = 0u64;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(io_err(&f.path))?;
            if n == 0 {
                break;
            }
            number += 1;
            hasher.update(&line);
            carry += n as u64;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed: Line = serde_json::from_slice(&line).map_err(|e| {
                bad(format!(
                    "{} line {number}: not a JSON object with a \"text\" string ({e})",
                    f.path.display()
                ))
            })?;
            if !self.send_doc(&parsed.text, carry, doc, tx) {
                return Ok(false);
            }
            carry = 0;
        }
        let sha256 = format!("{:x}", hasher.finalize());
        Ok(tx.send(Ok(Msg::FileDone { file, sha256 })).is_ok())
    }
}

/// Runs a [`Reader`] on its own thread and hands `each` batches of messages (about four
/// pieces per core), in input order.
fn for_each_batch(reader: Reader, mut each: impl FnMut(Vec<Msg>) -> Result<()>) -> Result<()> {
    let batch_len = rayon::current_num_threads() * 4;
    let (tx, rx): (SyncSender<Result<Msg>>, Receiver<Result<Msg>>) = sync_channel(batch_len * 2);
    let handle = std::thread::spawn(move || reader.run(tx));
    let result = (|| {
        loop {
            let mut batch = Vec::with_capacity(batch_len + 1);
            let mut pieces = 0;
            while pieces < batch_len {
                match rx.recv() {
                    Ok(msg) => {
                        let msg = msg?;
                        pieces += matches!(msg, Msg::Piece(_)) as usize;
                        batch.push(msg);
                    }
                    Err(_) => break, // the reader is done
                }
            }
            if batch.is_empty() {
                return Ok(());
            }
            each(batch)?;
        }
    })();
    drop(rx); // a reader still sending stops at its next send
    handle
        .join()
        .map_err(|_| bad("the input reader thread panicked".into()))?;
    result
}

/// The sorted characters of all inputs (the character vocabulary's first pass).
fn scan_chars(reader: Reader, progress: &dyn Progress) -> Result<(CharTokenizer, Vec<String>)> {
    let mut ascii = [false; 128];
    let mut other = BTreeSet::new();
    let mut hashes = Vec::new();
    for_each_batch(reader, |batch| {
        let texts: Vec<&Piece> = batch
            .iter()
            .filter_map(|m| match m {
                Msg::Piece(p) => Some(p),
                Msg::FileDone { .. } => None,
            })
            .collect();
        let found: Vec<([bool; 128], BTreeSet<char>)> = texts
            .par_iter()
            .map(|p| {
                let mut a = [false; 128];
                let mut o = BTreeSet::new();
                for &b in p.text.as_bytes() {
                    if b < 128 {
                        a[b as usize] = true;
                    }
                }
                if !p.text.is_ascii() {
                    o.extend(p.text.chars().filter(|c| !c.is_ascii()));
                }
                (a, o)
            })
            .collect();
        for (a, o) in found {
            for (seen, new) in ascii.iter_mut().zip(a) {
                *seen |= new;
            }
            other.extend(o);
        }
        for msg in &batch {
            match msg {
                Msg::Piece(p) => progress.advance(p.bytes, 0),
                Msg::FileDone { sha256, .. } => hashes.push(sha256.clone()),
            }
        }
        Ok(())
    })?;
    let text: String = (0u8..128)
        .filter(|&b| ascii[b as usize])
        .map(char::from)
        .chain(other)
        .collect();
    Ok((CharTokenizer::from_text(&text), hashes))
}

/// A token file being written: `NAME.partial` until [`TokenFile::finish`].
struct TokenFile {
    path: PathBuf,
    partial: PathBuf,
    out: BufWriter<File>,
    tokens: u64,
}

impl TokenFile {
    fn create(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let partial = dir.join(format!("{name}.{PARTIAL}"));
        // Readable too: the tail split copies the end of train into val.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(write_err(&partial))?;
        Ok(Self {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            partial,
            tokens: 0,
        })
    }

    fn write(&mut self, bytes: &[u8], width: usize) -> Result<()> {
        self.tokens += (bytes.len() / width) as u64;
        self.out.write_all(bytes).map_err(write_err(&self.partial))
    }

    /// Flushes and syncs the partial file, and hands it back for the tail split.
    fn into_file(self) -> Result<(File, PathBuf, PathBuf, u64)> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| write_err(&self.partial)(e.into_error()))?;
        file.sync_all().map_err(write_err(&self.partial))?;
        Ok((file, self.partial, self.path, self.tokens))
    }
}

/// `ids` as little-endian bytes of `width`.
fn to_bytes(ids: &[u32], width: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * width);
    if width == 2 {
        for &id in ids {
            out.extend_from_slice(&(id as u16).to_le_bytes());
        }
    } else {
        for &id in ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out
}

/// Tokenizes the inputs into `opts.out` (see the module doc), or does nothing when it
/// already holds them prepared the same way.
pub fn prepare(opts: &PrepareOptions, progress: &dyn Progress) -> Result<Outcome> {
    prepare_with(opts, progress, PIECE_BYTES)
}

fn prepare_with(
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
    let (tokenizer, scanned) = match opts.tokenizer {
        TokenizerKind::Gpt2 => (TextTokenizer::Gpt2, None),
        TokenizerKind::Char => {
            progress.begin("scanning", total);
            let (chars, hashes) = scan_chars(reader(files.clone()), progress)?;
            (TextTokenizer::Char(chars), Some(hashes))
        }
    };
    let vocab_size = tokenizer.vocab_size();
    let dtype = Dtype::for_vocab(vocab_size);
    let width = dtype.width();
    let eot = (opts.tokenizer == TokenizerKind::Gpt2).then_some(GPT2_EOT);
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

/// The directory's meta when it already holds exactly these inputs (paths, sizes,
/// sha256) prepared with these options; an error naming the difference otherwise. A
/// directory whose token files were damaged is prepared again (`None`).
fn unchanged(
    out: &Path,
    opts: &PrepareOptions,
    files: &[InputFile],
    split: &SplitRecord,
) -> Result<Option<Meta>> {
    let meta = match read_meta(out) {
        Ok(meta) => meta,
        Err(e) => {
            return Err(bad(format!(
                "{e}; add --force to prepare {} again",
                out.display()
            )));
        }
    };
    let differs = |what: String| {
        Err(bad(format!(
            "{} already holds data prepared {what}; add --force to replace it, or choose another --out",
            out.display()
        )))
    };
    if meta.tokenizer.kind() != opts.tokenizer {
        return differs(format!(
            "with the {} tokenizer",
            meta.tokenizer.kind().name()
        ));
    }
    if meta.split != *split {
        return differs(format!(
            "with --val-fraction {} ({:?} split)",
            meta.split.val_fraction, meta.split.rule
        ));
    }
    let listed: Vec<(&Path, u64)> = files.iter().map(|f| (f.path.as_path(), f.bytes)).collect();
    let recorded: Vec<(&Path, u64)> = meta
        .inputs
        .iter()
        .map(|r| (r.path.as_path(), r.bytes))
        .collect();
    if listed != recorded {
        return differs("from other inputs (paths or sizes differ)".into());
    }
    for (f, r) in files.iter().zip(&meta.inputs) {
        if sha256_file(&f.path)? != r.sha256 {
            return differs(format!(
                "from another version of {} (its sha256 changed)",
                f.path.display()
            ));
        }
    }
    Ok(check_token_files(out, &meta).is_ok().then_some(meta))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io_err(path))?;
    Ok(format!("{:x}", hasher.finalize()))
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
fn check_token_files(dir: &Path, meta: &Meta) -> Result<()> {
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

/// A prepared directory's tokenizer and splits, memory-mapped. Checks the files against
/// meta.json (sizes, every id within the vocabulary) before use.
pub fn open(dir: &Path) -> Result<(Meta, TokenStore)> {
    let meta = read_meta(dir)?;
    check_token_files(dir, &meta)?;
    let map = |name: &str| -> Result<Tokens> {
        let path = dir.join(name);
        let file = File::open(&path).map_err(io_err(&path))?;
        // SAFETY: the map is read-only; as with nanoGPT's np.memmap, the file must not be
        // truncated while a run reads it (gpt prepare never rewrites a finished file in
        // place: it writes *.partial and renames).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(&path))?;
        let tokens = MappedTokens::new(map, meta.dtype.width());
        if let Some(max) = tokens.max_id()
            && max as usize >= meta.vocab_size
        {
            return Err(bad(format!(
                "{} holds token id {max}, outside the vocabulary of {}: prepare it again with --force",
                path.display(),
                meta.vocab_size
            )));
        }
        Ok(Tokens::Mapped(tokens))
    };
    let store = TokenStore::from_splits(map(TRAIN_BIN)?, map(VAL_BIN)?);
    Ok((meta, store))
}

/// The bytes of `DIR/meta.json`: what pins a prepared directory in a run (see
/// [`DataRecord`](crate::DataRecord)).
pub fn read_meta_bytes(dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join(META);
    crate::source::check_regular_file(&path, MAX_META_BYTES)?;
    std::fs::read(&path).map_err(io_err(&path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tests::shakespeare;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("burngpt-prepared-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn opts(kind: TokenizerKind, inputs: Vec<PathBuf>, out: PathBuf, f: f64) -> PrepareOptions {
        PrepareOptions {
            tokenizer: kind,
            inputs,
            out,
            val_fraction: f,
            force: false,
        }
    }

    fn all_ids(store: &TokenStore) -> (Vec<u32>, Vec<u32>) {
        let get = |s| {
            let t = store.split(s);
            t.range(0, t.len())
        };
        (get(crate::Split::Train), get(crate::Split::Val))
    }

    #[test]
    fn cut_points_sit_between_words() {
        assert_eq!(cut_point(b"ab cd ef", 0), Some(2));
        assert_eq!(cut_point(b"ab cd ef", 3), Some(5));
        assert_eq!(cut_point(b"ab  cd", 0), None); // two spaces: `\s+(?!\S)` spans them
        assert_eq!(cut_point(b"ab\n cd", 0), None);
        assert_eq!(cut_point(b"abcdef", 0), None);
        assert_eq!(cut_point(b"a ", 0), None);
    }

    /// Encoding the pieces separately gives the ids of encoding the whole text.
    #[test]
    fn pieces_encode_like_the_whole_text() {
        let text = shakespeare();
        let dir = temp_dir("pieces");
        let input = dir.join("input.txt");
        std::fs::write(&input, &text).unwrap();
        let out = dir.join("out");
        // Small pieces: hundreds of cuts.
        let meta = match prepare_with(
            &opts(TokenizerKind::Gpt2, vec![input], out.clone(), 0.1),
            &Silent,
            3000,
        )
        .unwrap()
        {
            Outcome::Prepared(m) => m,
            Outcome::Unchanged(_) => panic!("a new directory is prepared"),
        };
        let mut whole = TextTokenizer::Gpt2.encode(&text).unwrap();
        whole.push(GPT2_EOT);
        let (_, store) = open(&out).unwrap();
        let (train, val) = all_ids(&store);
        assert_eq!([train, val].concat(), whole);
        assert_eq!(meta.train_tokens + meta.val_tokens, whole.len() as u64);
        assert_eq!(meta.dtype, Dtype::U16);
        assert_eq!(meta.split.rule, SplitRule::Tail);
        assert_eq!(meta.documents, 1);
    }

    /// The character path gives the in-memory store's vocabulary and 90/10 split.
    #[test]
    fn char_tail_split_matches_the_lecture() {
        let text = shakespeare();
        let dir = temp_dir("char");
        let input = dir.join("input.txt");
        std::fs::write(&input, &text).unwrap();
        let out = dir.join("out");
        prepare_with(
            &opts(TokenizerKind::Char, vec![input.clone()], out.clone(), 0.1),
            &Silent,
            5000,
        )
        .unwrap();
        let (meta, store) = open(&out).unwrap();
        let tok = CharTokenizer::from_text(&text);
        assert_eq!(meta.tokenizer, TextTokenizer::Char(tok.clone()));
        let memory = TokenStore::new(&tok.encode(&text).unwrap(), tok.vocab_size());
        let (train, val) = all_ids(&store);
        let (mtrain, mval) = all_ids(&memory);
        assert_eq!(train, mtrain);
        assert_eq!(val, mval);
        assert_eq!(meta.inputs[0].sha256.len(), 64);
        assert_eq!(meta.inputs[0].bytes, text.len() as u64);
        // Again: nothing to do. Another fraction: refused without --force.
        let again = prepare(
            &opts(TokenizerKind::Char, vec![input.clone()], out.clone(), 0.1),
            &Silent,
        );
        assert!(matches!(again, Ok(Outcome::Unchanged(_))));
        let other = opts(TokenizerKind::Char, vec![input.clone()], out.clone(), 0.2);
        let msg = prepare(&other, &Silent).unwrap_err().to_string();
        assert!(
            msg.contains("--force") && msg.contains("--val-fraction 0.1"),
            "{msg}"
        );
        let forced = PrepareOptions {
            force: true,
            ..other
        };
        assert!(matches!(
            prepare(&forced, &Silent),
            Ok(Outcome::Prepared(_))
        ));
    }

    #[test]
    fn jsonl_documents_are_split_by_document_with_separators() {
        let dir = temp_dir("jsonl");
        let docs: Vec<String> = (0..400)
            .map(|i| format!("Document number {i} says hello."))
            .collect();
        let jsonl: String = docs
            .iter()
            .map(|d| format!("{}\n", serde_json::json!({ "text": d, "id": 7 })))
            .collect();
        std::fs::create_dir_all(dir.join("corpus/sub")).unwrap();
        std::fs::write(dir.join("corpus/a.jsonl"), &jsonl).unwrap();
        std::fs::write(dir.join("corpus/sub/b.txt"), "A plain text document.").unwrap();
        std::fs::write(dir.join("corpus/ignored.md"), "not read").unwrap();
        let out = dir.join("out");
        prepare(
            &opts(
                TokenizerKind::Gpt2,
                vec![dir.join("corpus")],
                out.clone(),
                0.1,
            ),
            &Silent,
        )
        .unwrap();
        let (meta, store) = open(&out).unwrap();
        assert_eq!(meta.documents, 401);
        assert_eq!(meta.inputs.len(), 2);
        assert_eq!(meta.split.rule, SplitRule::Documents);
        let (train, val) = all_ids(&store);
        let eots = |ids: &[u32]| ids.iter().filter(|&&i| i == GPT2_EOT).count();
        assert_eq!(eots(&train) + eots(&val), 401);
        // About a tenth of the documents went to val, each whole.
        assert!((20..70).contains(&eots(&val)), "{}", eots(&val));
        let text = TextTokenizer::Gpt2.decode(&val).unwrap();
        for doc in text.split("<|endoftext|>").filter(|d| !d.is_empty()) {
            assert!(docs.iter().any(|d| d == doc), "{doc:?}");
        }
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let dir = temp_dir("bad");
        let out = dir.join("out");
        let jsonl = dir.join("x.jsonl");
        std::fs::write(&jsonl, "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n").unwrap();
        let msg = prepare(
            &opts(TokenizerKind::Gpt2, vec![jsonl], out.clone(), 0.5),
            &Silent,
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("line 2") && msg.contains("\"text\""), "{msg}");
        assert!(!out.join(META).exists());
        assert!(!out.join("train.bin.partial").exists());
        let csv = dir.join("x.csv");
        std::fs::write(&csv, "a,b").unwrap();
        let msg = prepare(
            &opts(TokenizerKind::Gpt2, vec![csv], out.clone(), 0.5),
            &Silent,
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains(".txt or .jsonl"), "{msg}");
        let bin = dir.join("y.txt");
        std::fs::write(&bin, [b'o', b'k', 0xff]).unwrap();
        let msg = prepare(
            &opts(TokenizerKind::Char, vec![bin], out.clone(), 0.5),
            &Silent,
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("not UTF-8") && msg.contains("offset 2"),
            "{msg}"
        );
        let msg = open(&out).unwrap_err().to_string();
        assert!(msg.contains("no meta.json"), "{msg}");
    }

    #[test]
    fn damaged_directories_are_refused() {
        let dir = temp_dir("damaged");
        let input = dir.join("t.txt");
        std::fs::write(&input, "hello there, general kenobi. ".repeat(50)).unwrap();
        let out = dir.join("out");
        prepare(
            &opts(TokenizerKind::Char, vec![input], out.clone(), 0.1),
            &Silent,
        )
        .unwrap();
        assert!(open(&out).is_ok());
        // A killed run: token files but no meta.json.
        let meta = std::fs::read(out.join(META)).unwrap();
        std::fs::remove_file(out.join(META)).unwrap();
        let msg = open(&out).unwrap_err().to_string();
        assert!(msg.contains("unfinished"), "{msg}");
        std::fs::write(out.join(META), &meta).unwrap();
        // A truncated token file.
        let train = std::fs::read(out.join(TRAIN_BIN)).unwrap();
        std::fs::write(out.join(TRAIN_BIN), &train[..train.len() - 2]).unwrap();
        let msg = open(&out).unwrap_err().to_string();
        assert!(msg.contains("--force"), "{msg}");
        // An id outside the vocabulary.
        let mut bad_ids = train.clone();
        bad_ids[0] = 0xff;
        bad_ids[1] = 0xff;
        std::fs::write(out.join(TRAIN_BIN), &bad_ids).unwrap();
        let msg = open(&out).unwrap_err().to_string();
        assert!(msg.contains("65535") && msg.contains("outside"), "{msg}");
    }

    #[test]
    fn wide_vocabularies_are_stored_as_u32() {
        assert_eq!(Dtype::for_vocab(65_536), Dtype::U16);
        assert_eq!(Dtype::for_vocab(65_537), Dtype::U32);
        assert_eq!(to_bytes(&[1, 70_000], 4), [1, 0, 0, 0, 0x70, 0x11, 1, 0]);
        assert_eq!(to_bytes(&[1, 258], 2), [1, 0, 2, 1]);
    }
}
