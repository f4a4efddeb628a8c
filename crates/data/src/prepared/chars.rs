//! The character vocabulary's pass: every distinct character of the inputs, found in
//! parallel, before the tokenizing pass can encode with them.

use super::reader::{Msg, Piece, Reader, for_each_batch};
use super::write::Progress;
use crate::{CharTokenizer, Result};
use rayon::prelude::*;
use std::collections::BTreeSet;

/// The sorted characters of all inputs (the character vocabulary's first pass).
pub(super) fn scan_chars(
    reader: Reader,
    progress: &dyn Progress,
) -> Result<(CharTokenizer, Vec<String>)> {
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
