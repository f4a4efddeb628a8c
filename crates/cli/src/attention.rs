//! `gpt attention`: a trained model's attention weights on a prompt, drawn as heat maps,
//! one per head, a row of heads per layer; the lecture's `wei` for a real model.
//!
//! The weights come from [`Model::attention_maps`]: a forward pass over the whole prompt
//! (no KV cache) that runs the attention as explicit tensor ops, so the softmax weights
//! exist as tensors. On the CPU the model's own forward pass runs the fused kernel, which
//! never stores them; both compute the same function (the model crate's tests
//! `forward_with_attention_keeps_the_logits` and `fused_kernel_matches_explicit_path_*`),
//! so these are the weights the model uses. `draw_heatmaps` is shared with `gpt lecture`.

use crate::backend::{self, Inner};
use crate::picture::{register_font, run_name};
use crate::prompt::RunArg;
use anyhow::{Context, Result, bail};
use burn::prelude::*;
use data::Tokenizer;
use model::{Model, attention_path};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArg,
    /// The text whose attention is drawn: at most block_size tokens.
    #[arg(long)]
    prompt: String,
    /// Draw only this layer (0 is the first; default: every layer).
    #[arg(long)]
    layer: Option<usize>,
    /// Draw only this head of each layer drawn (0 is the first; default: every head).
    #[arg(long)]
    head: Option<usize>,
    /// Output file (default: <run>/attention.png).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Which weights: the final model or the checkpoint with the best val loss.
    #[arg(long, value_parser = ["final", "best"], default_value = "final")]
    weights: String,
    /// Also print the weights drawn as one JSON object on stdout (tokens, and for each
    /// panel its layer, head and T × T weights).
    #[arg(long)]
    json: bool,
}

/// One heat map: a T × T matrix of attention weights, row i the query at position i.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub layer: usize,
    pub head: usize,
    /// Row-major T × T weights; entry [i][j] is how much position i listens to position j.
    pub weights: Vec<Vec<f32>>,
}

pub fn run(args: Args, device: Option<usize>) -> Result<()> {
    if args.prompt.is_empty() {
        bail!("the prompt is empty: give the text whose attention to draw");
    }
    let run = args.run.open()?;
    let config = run.config()?;
    if config.model.model == model::ModelKind::Bigram {
        bail!(
            "{} is a bigram run: {}",
            run.path().display(),
            model::ModelError::NoAttention
        );
    }
    let tokenizer = run.tokenizer()?;
    let ids = tokenizer
        .encode(&args.prompt)
        .context("the prompt cannot be encoded with the run's vocabulary")?;
    let block_size = config.model.block_size;
    if ids.len() > block_size {
        bail!(
            "the prompt is {} tokens but the model's context (block_size) is {block_size}: attention is drawn over one context, so shorten it",
            ids.len()
        );
    }
    let (n_layer, n_head) = (config.model.n_layer, config.model.n_head);
    check_index("layer", args.layer, n_layer)?;
    check_index("head", args.head, n_head)?;
    let device = backend::device(device)?;
    let model = match args.weights.as_str() {
        "best" => run.load_model_file::<Inner>(&run.best_path(), &device)?,
        _ => run.load_model::<Inner>(&device)?,
    };
    let panels = attention_panels(&model, &ids, args.layer, args.head, &device)?;
    let labels: Vec<String> = ids
        .iter()
        .map(|&id| {
            // A BPE piece may hold part of a character: its bytes, lossily.
            let bytes = tokenizer.token_bytes(id).unwrap_or_default();
            token_label(&String::from_utf8_lossy(&bytes))
        })
        .collect();
    let name = run_name(run.path());
    let out = args.out.unwrap_or_else(|| run.path().join("attention.png"));
    let cols = args.head.map_or(n_head, |_| 1);
    register_font()?;
    let title = format!(
        "attention — {name}: {:?} ({} tokens)",
        args.prompt,
        ids.len()
    );
    let (w, h) = draw_heatmaps(&out, &title, &labels, &panels, cols)
        .with_context(|| format!("drawing {}", out.display()))?;
    if args.json {
        let maps: Vec<serde_json::Value> = panels
            .iter()
            .map(|p| serde_json::json!({"layer": p.layer, "head": p.head, "weights": p.weights}))
            .collect();
        let json = serde_json::json!({
            "tokens": labels,
            "ids": ids,
            "attention_path": attention_path::<Inner>().as_str(),
            "maps": maps,
            "png": out.display().to_string(),
            "width": w,
            "height": h,
        });
        println!("{json}");
    } else {
        println!(
            "wrote {} ({w}×{h} px: {} layer(s) × {cols} head(s) over {} tokens)",
            out.display(),
            panels.len() / cols,
            ids.len()
        );
    }
    Ok(())
}

/// `--layer` / `--head` must name one that exists.
fn check_index(what: &str, index: Option<usize>, count: usize) -> Result<()> {
    match index {
        Some(i) if i >= count => bail!(
            "{what} {i} does not exist: the model has {count} {what}s, numbered 0 to {}",
            count - 1
        ),
        _ => Ok(()),
    }
}

/// The weights `model` gives the tokens `ids` (one sequence), as panels: the chosen
/// layer (or all), and in each the chosen head (or all), layer by layer. The numbers are
/// exactly [`Model::attention_maps`]'s.
pub fn attention_panels<B: Backend>(
    model: &Model<B>,
    ids: &[u32],
    layer: Option<usize>,
    head: Option<usize>,
    device: &B::Device,
) -> Result<Vec<Panel>> {
    let t = ids.len();
    let idx = Tensor::<B, 1, Int>::from_data(
        TensorData::new(ids.iter().map(|&i| i64::from(i)).collect(), [t]),
        device,
    )
    .reshape([1, t]);
    let maps = model.attention_maps(idx)?;
    check_index("layer", layer, maps.len())?;
    let mut panels = Vec::new();
    for (l, map) in maps.into_iter().enumerate() {
        if layer.is_some_and(|chosen| chosen != l) {
            continue;
        }
        let [_, n_head, _, _] = map.dims();
        check_index("head", head, n_head)?;
        let flat: Vec<f32> = map
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| anyhow::anyhow!("reading the attention weights: {e:?}"))?;
        for h in 0..n_head {
            if head.is_some_and(|chosen| chosen != h) {
                continue;
            }
            let weights = flat[h * t * t..(h + 1) * t * t]
                .chunks(t)
                .map(<[f32]>::to_vec)
                .collect();
            panels.push(Panel {
                title: format!("layer {l} · head {h}"),
                layer: l,
                head: h,
                weights,
            });
        }
    }
    Ok(panels)
}

/// A token (a character, or a BPE piece) as an axis label: whitespace made visible.
pub fn token_label(piece: &str) -> String {
    piece
        .replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace(' ', "·")
}

/// Side of one heat map in pixels, whatever the number of tokens.
pub const PANEL: u32 = 320;
/// Room left of a panel (query labels), above it (its title) and below it (key labels).
const LEFT: u32 = 40;
const TOP: u32 = 26;
const BOTTOM: u32 = 30;
/// Space between panels, around the picture, and the title and colour bar areas.
const GAP: u32 = 14;
const TITLE: u32 = 40;
const BAR: u32 = 110;

/// The picture's size for `panels` heat maps in rows of `cols`.
pub fn picture_size(panels: usize, cols: usize) -> (u32, u32) {
    let cols = cols.clamp(1, panels.max(1)) as u32;
    let rows = panels.max(1).div_ceil(cols as usize) as u32;
    (
        GAP + cols * (LEFT + PANEL + GAP) + BAR,
        TITLE + rows * (TOP + PANEL + BOTTOM) + GAP,
    )
}

/// Masked (future) positions: weight exactly 0, drawn apart from the colour scale.
const MASKED: RGBColor = RGBColor(225, 225, 225);

/// Viridis, sampled: weight 0 dark purple → 1 yellow.
fn colour(w: f32) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    let x = w.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    let mix = |a: u8, b: u8| (f32::from(a) + (f32::from(b) - f32::from(a)) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Draws `panels` (all over the same `labels`) as heat maps, `cols` to a row, with a
/// title and a colour scale, into the PNG `out`; returns its size in pixels. The font
/// must be registered ([`register_font`]).
pub fn draw_heatmaps(
    out: &Path,
    title: &str,
    labels: &[String],
    panels: &[Panel],
    cols: usize,
) -> Result<(u32, u32)> {
    let size = picture_size(panels.len(), cols);
    crate::picture::write_png(out, size, |root| {
        heatmaps(root, size, title, labels, panels, cols)
    })?;
    Ok(size)
}

fn heatmaps(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    size: (u32, u32),
    title: &str,
    labels: &[String],
    panels: &[Panel],
    cols: usize,
) -> Result<()> {
    let cols = cols.clamp(1, panels.len().max(1));
    root.fill(&WHITE)?;
    let text = |size: f64| ("sans-serif", size).into_font().color(&BLACK);
    root.draw(&Text::new(title.to_string(), (GAP as i32, 12), text(18.0)))?;
    let t = labels.len().max(1);
    let cell = PANEL as f64 / t as f64;
    // Every label when they fit, else every k-th.
    let step = (12.0 / cell).ceil().max(1.0) as usize;
    let font = (cell * 0.8).clamp(9.0, 14.0);
    let edge = |k: usize| (k as f64 * cell).round() as i32;
    for (n, panel) in panels.iter().enumerate() {
        let (r, c) = ((n / cols) as u32, (n % cols) as u32);
        let x0 = (GAP + c * (LEFT + PANEL + GAP) + LEFT) as i32;
        let y0 = (TITLE + r * (TOP + PANEL + BOTTOM) + TOP) as i32;
        root.draw(&Text::new(
            panel.title.clone(),
            (x0, y0 - TOP as i32 + 4),
            text(14.0),
        ))?;
        for (i, row) in panel.weights.iter().enumerate() {
            for (j, &w) in row.iter().enumerate() {
                let fill = if j > i && w == 0.0 { MASKED } else { colour(w) };
                root.draw(&Rectangle::new(
                    [
                        (x0 + edge(j), y0 + edge(i)),
                        (x0 + edge(j + 1), y0 + edge(i + 1)),
                    ],
                    fill.filled(),
                ))?;
            }
        }
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + PANEL as i32, y0 + PANEL as i32)],
            BLACK.mix(0.6).stroke_width(1),
        ))?;
        for (k, label) in labels.iter().enumerate().filter(|(k, _)| k % step == 0) {
            let mid = edge(k) + (cell / 2.0) as i32;
            // Queries down the left, keys along the bottom.
            root.draw(&Text::new(
                label.clone(),
                (x0 - 4, y0 + mid),
                text(font).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            root.draw(&Text::new(
                label.clone(),
                (x0 + mid, y0 + PANEL as i32 + 3),
                text(font).pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
    }
    // The colour scale, top to bottom 1 → 0, and the masked swatch.
    let bx = (size.0 - BAR + 20) as i32;
    // Shorter than a panel, so the masked swatch below it fits in one row's height.
    let (by, bh) = (TITLE as i32 + TOP as i32, PANEL as i32 - 70);
    root.draw(&Text::new("weight", (bx, by - 18), text(13.0)))?;
    for y in 0..bh {
        let w = 1.0 - y as f32 / (bh - 1) as f32;
        root.draw(&Rectangle::new(
            [(bx, by + y), (bx + 18, by + y + 1)],
            colour(w).filled(),
        ))?;
    }
    root.draw(&Rectangle::new(
        [(bx, by), (bx + 18, by + bh)],
        BLACK.mix(0.6).stroke_width(1),
    ))?;
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = by + ((1.0 - tick) * (bh - 1) as f64).round() as i32;
        root.draw(&PathElement::new([(bx + 18, y), (bx + 23, y)], BLACK))?;
        root.draw(&Text::new(
            format!("{tick}"),
            (bx + 26, y),
            text(12.0).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    let sy = by + bh + 10;
    root.draw(&Rectangle::new(
        [(bx, sy), (bx + 18, sy + 14)],
        MASKED.filled(),
    ))?;
    root.draw(&Text::new("masked: 0", (bx - 10, sy + 18), text(12.0)))?;
    root.draw(&Text::new("(future)", (bx - 10, sy + 32), text(12.0)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use model::GptConfig;

    fn small_gpt() -> Model<Flex> {
        let config = GptConfig {
            vocab_size: 65,
            block_size: 16,
            n_layer: 2,
            n_head: 3,
            n_embd: 24,
            dropout: 0.0,
            ..GptConfig::default()
        };
        Model::new(&config, &Default::default()).unwrap()
    }

    /// The panels hold exactly the model's attention weights, head by head, layer by
    /// layer, and `--layer` / `--head` pick from them.
    #[test]
    fn panels_are_the_models_attention_weights() {
        let device = Default::default();
        let model = small_gpt();
        let ids = [5u32, 17, 3, 64, 0, 9, 9];
        let t = ids.len();
        let idx = Tensor::<Flex, 2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect(), [1, t]),
            &device,
        );
        let maps = model.attention_maps(idx).unwrap();
        let all = attention_panels(&model, &ids, None, None, &device).unwrap();
        assert_eq!(all.len(), 2 * 3);
        for p in &all {
            let expected: Vec<f32> = maps[p.layer]
                .clone()
                .slice([0..1, p.head..p.head + 1])
                .into_data()
                .to_vec()
                .unwrap();
            let got: Vec<f32> = p.weights.concat();
            assert_eq!(got, expected, "layer {} head {}", p.layer, p.head);
            assert_eq!(p.weights.len(), t);
        }
        let one = attention_panels(&model, &ids, Some(1), Some(2), &device).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0], all[3 + 2]);
        let layer = attention_panels(&model, &ids, Some(0), None, &device).unwrap();
        assert_eq!(layer, all[..3]);
        let err = attention_panels(&model, &ids, Some(2), None, &device).unwrap_err();
        assert!(err.to_string().contains("layer 2 does not exist"), "{err}");
    }

    #[test]
    fn sizes_and_colours() {
        assert_eq!(
            picture_size(1, 1),
            (
                GAP + LEFT + PANEL + GAP + BAR,
                TITLE + TOP + PANEL + BOTTOM + GAP
            )
        );
        let (w1, h1) = picture_size(4, 4);
        let (w2, h2) = picture_size(8, 4);
        assert_eq!(w1, w2);
        assert_eq!(h2 - h1, TOP + PANEL + BOTTOM);
        assert_eq!(colour(0.0), RGBColor(68, 1, 84));
        assert_eq!(colour(1.0), RGBColor(253, 231, 37));
        assert_eq!(token_label("a \n"), "a·\\n");
    }
}
