//! Where a text may be cut so that its pieces, encoded in parallel, give the ids of
//! encoding the whole.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_points_sit_between_words() {
        assert_eq!(cut_point(b"ab cd ef", 0), Some(2));
        assert_eq!(cut_point(b"ab cd ef", 3), Some(5));
        assert_eq!(cut_point(b"ab  cd", 0), None); // two spaces: `\s+(?!\S)` spans them
        assert_eq!(cut_point(b"ab\n cd", 0), None);
        assert_eq!(cut_point(b"abcdef", 0), None);
        assert_eq!(cut_point(b"a ", 0), None);
    }
}
