//! The text of `gpt prepare`'s inputs as a stream of pieces: what `gpt tokenizer train`
//! learns from, read the way `gpt prepare` reads it (the same files, directories and
//! named datasets), each document cut into pieces of about [`TEXT_BYTES`] where the
//! split patterns start a new piece anyway ([`cut_point`]), so no merge is lost at a cut.
//! Small pieces, because the trainer's pre-tokenizing costs more than linear time in
//! the length of one text (a 1 MiB text takes minutes, the same text in 8 KiB pieces a
//! fraction of a second).

use super::cut::cut_point;
use super::inputs::input_files;
use super::meta::SplitRule;
use super::reader::{Msg, PIECE_BYTES, Reader};
use crate::{DataError, Result};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

/// About how long the texts [`InputText`] yields are, in bytes.
pub const TEXT_BYTES: usize = 8 << 10;

/// The pieces of every input in order; a reading thread fills it. It ends early at a
/// read error, which [`InputsRead::result`] then returns.
pub struct InputText {
    pieces: Receiver<Result<Msg>>,
    failed: Arc<Mutex<Option<DataError>>>,
    /// What is left of the reader's last piece, and where in it the next text starts.
    rest: (String, usize),
}

/// What is known once an [`InputText`] has been read: whether every input was.
pub struct InputsRead {
    failed: Arc<Mutex<Option<DataError>>>,
    /// The inputs' bytes in all.
    pub bytes: u64,
}

impl InputsRead {
    /// The first read error, if the stream ended at one.
    pub fn result(self) -> Result<()> {
        match self.failed.lock().expect("no panics while locked").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Starts reading `inputs` (each file once, as `gpt prepare` finds them).
pub fn input_text(inputs: &[PathBuf]) -> Result<(InputText, InputsRead)> {
    let files = input_files(inputs)?;
    let bytes = files.iter().map(|f| f.bytes).sum();
    let reader = Reader {
        files,
        piece_bytes: PIECE_BYTES,
        // Every document is text to learn from: the split does not matter here.
        rule: SplitRule::Tail,
        val_fraction: 0.0,
    };
    let (tx, pieces) = sync_channel(rayon::current_num_threads() * 4);
    std::thread::spawn(move || reader.run(tx));
    let failed = Arc::new(Mutex::new(None));
    Ok((
        InputText {
            pieces,
            failed: failed.clone(),
            rest: (String::new(), 0),
        },
        InputsRead { failed, bytes },
    ))
}

impl Iterator for InputText {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            let (text, at) = &mut self.rest;
            if *at < text.len() {
                let end = next_cut(text, *at);
                let piece = text[*at..end].to_string();
                *at = end;
                return Some(piece);
            }
            match self.pieces.recv() {
                Ok(Ok(Msg::Piece(piece))) => self.rest = (piece.text, 0),
                Ok(Ok(Msg::FileDone { .. })) => {}
                Ok(Err(e)) => {
                    *self.failed.lock().expect("no panics while locked") = Some(e);
                    return None;
                }
                Err(_) => return None, // the reader is done
            }
        }
    }
}

/// Where the text that starts at `at` ends: about [`TEXT_BYTES`] on, at a [`cut_point`],
/// else after a newline that a non-space follows (a piece boundary under both split
/// patterns too), else (a long line of text without spaces, such as Chinese) at a
/// character boundary, where at most one merge's count is lost.
fn next_cut(text: &str, at: usize) -> usize {
    let from = at + TEXT_BYTES;
    if from >= text.len() {
        return text.len();
    }
    let window = &text.as_bytes()[..(at + 8 * TEXT_BYTES).min(text.len())];
    if let Some(cut) = cut_point(window, from) {
        return cut;
    }
    if let Some(i) = window[from..]
        .windows(2)
        .position(|w| w[0] == b'\n' && !w[1].is_ascii_whitespace())
    {
        return from + i + 1;
    }
    let mut end = window.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts join back to the whole, each ends at a word, a line or (no space for
    /// long) a character boundary, and none is much longer than [`TEXT_BYTES`].
    #[test]
    fn texts_are_short_and_join_to_the_whole() {
        let words = "the quick brown fox ".repeat(2000);
        let lines = "一二三四五六七八九十\n".repeat(2000);
        let run_on = "一二三四五六七八九十".repeat(4000);
        for text in [words, lines, run_on, "short".to_string(), String::new()] {
            let mut at = 0;
            let mut joined = String::new();
            while at < text.len() {
                let end = next_cut(&text, at);
                assert!(end > at && end - at <= 8 * TEXT_BYTES, "{at}..{end}");
                joined.push_str(&text[at..end]);
                at = end;
            }
            assert_eq!(joined, text);
        }
    }
}
