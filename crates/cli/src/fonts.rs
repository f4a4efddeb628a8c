//! Where `gpt plot` (and `gpt attention`, `gpt lecture`) find the TrueType font of their
//! labels. xtask compiles this file too (`#[path]`), to tell before its checks whether the
//! font is there, from the same list.

use std::path::PathBuf;

/// Fonts tried in order, after `$BURNGPT_FONT`.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The first of `$BURNGPT_FONT` and the usual places that holds a file.
pub fn find() -> Option<PathBuf> {
    std::env::var_os("BURNGPT_FONT")
        .map(PathBuf::from)
        .into_iter()
        .chain(FONTS.iter().map(PathBuf::from))
        .find(|p| p.exists())
}
