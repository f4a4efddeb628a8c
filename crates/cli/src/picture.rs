//! PNG pictures (`gpt plot`, `gpt attention`): drawn into memory by plotters, encoded,
//! then written atomically, so a failed write (a missing folder, a full disk) is one
//! error line and leaves no half-written picture. What every picture shares is here: the
//! font of its labels and the names of its runs.

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Draws a picture of `size` pixels with `draw` and writes it to `path` as a PNG.
pub fn write_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    let (w, h) = size;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        draw(&root)?;
        root.present()?;
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(&rgb))
        .context("encoding the PNG")?;
    data::files::write_atomically(path, &bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Registers the labels' font with plotters, once per picture-drawing command.
pub fn register_font() -> Result<()> {
    let path = crate::fonts::find()
        .context("no TrueType font found for the labels: set BURNGPT_FONT to a .ttf file")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(&path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a usable TrueType font", path.display()))
}

/// A run's name on a picture: its folder's name.
pub fn run_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
