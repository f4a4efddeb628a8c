//! The reading thread: every input in order, cut into pieces of about 1 MiB at
//! [`cut_point`]s, each marked with its document's split, handed on in batches.

use super::cut::cut_point;
use super::inputs::{Format, InputFile};
use super::meta::{SPLIT_SEED, SplitRule};
use super::{bad, io_err};
use crate::{DataError, Result, mix_seed};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// The size of the pieces encoded in parallel.
pub(super) const PIECE_BYTES: usize = 1 << 20;
/// Text with no safe cut point is cut anyway past this size (see [`cut_point`]).
const MAX_PIECE_BYTES: usize = 64 << 20;

/// A piece of a document, ready to encode.
pub(super) struct Piece {
    pub text: String,
    /// The last piece of its document (GPT-2: `<|endoftext|>` follows it).
    pub doc_end: bool,
    /// The document goes to val (`documents` split).
    pub val: bool,
    /// Input bytes this piece accounts for (progress).
    pub bytes: u64,
}

pub(super) enum Msg {
    Piece(Piece),
    /// An input file was read to its end.
    FileDone {
        file: usize,
        sha256: String,
    },
}

/// Reads every input file in order, sending pieces of about `piece_bytes` and the
/// files' sha256. Runs on its own thread; stops at the first error, which it sends.
pub(super) struct Reader {
    pub files: Vec<InputFile>,
    pub piece_bytes: usize,
    pub rule: SplitRule,
    pub val_fraction: f64,
}

impl Reader {
    pub(super) fn run(self, tx: SyncSender<Result<Msg>>) {
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
pub(super) fn for_each_batch(
    reader: Reader,
    mut each: impl FnMut(Vec<Msg>) -> Result<()>,
) -> Result<()> {
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
