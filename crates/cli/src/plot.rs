//! `gpt plot`: the run's loss and learning-rate curves as a PNG, from its metrics.csv.

use crate::prompt::RunArg;
use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use std::path::PathBuf;
use training::log::EvalRow;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArg,
    /// Output file (default: <run>/loss.png).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Fonts tried in order, after `$BURNGPT_FONT`.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

pub fn run(args: Args) -> Result<()> {
    let run = args.run.open()?;
    let all = run.rows();
    if all.is_empty() {
        bail!(
            "{} has no evaluations to plot yet",
            run.metrics_path().display()
        );
    }
    // A diverged run logs NaN or infinite losses: they have no place on the chart.
    let rows: Vec<EvalRow> = all
        .iter()
        .filter(|r| r.train_loss.is_finite() && r.val_loss.is_finite())
        .cloned()
        .collect();
    if rows.is_empty() {
        bail!(
            "every evaluation in {} has a NaN or infinite loss: nothing to plot",
            run.metrics_path().display()
        );
    }
    if rows.len() < all.len() {
        eprintln!(
            "note: {} of {} evaluations have a NaN or infinite loss and are not drawn",
            all.len() - rows.len(),
            all.len()
        );
    }
    register_font()?;
    let out = args.out.unwrap_or_else(|| run.path().join("loss.png"));
    let name = run.path().file_name().map_or_else(
        || run.path().display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    draw(&rows, &out, &name).with_context(|| format!("drawing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

fn register_font() -> Result<()> {
    let env = std::env::var("BURNGPT_FONT").ok();
    let path = env
        .iter()
        .map(String::as_str)
        .chain(FONTS.iter().copied())
        .find(|p| std::path::Path::new(p).exists())
        .context("no TrueType font found for the labels: set BURNGPT_FONT to a .ttf file")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{path} is not a usable TrueType font"))
}

fn draw(rows: &[EvalRow], out: &std::path::Path, title: &str) -> Result<()> {
    let root = BitMapBackend::new(out, (900, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(440);
    let max_iter = rows.iter().map(|r| r.iter).max().unwrap_or(1).max(1) as f64;
    let losses = rows
        .iter()
        .flat_map(|r| [r.train_loss, r.val_loss])
        .filter(|v| v.is_finite());
    let (lo, hi) = losses.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.05).max(0.01);

    let mut chart = ChartBuilder::on(&top)
        .caption(format!("loss — {title}"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_iter, (lo - pad)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("loss")
        .draw()?;
    for (name, color, pick) in [
        (
            "train",
            BLUE,
            (|r: &EvalRow| r.train_loss) as fn(&EvalRow) -> f64,
        ),
        ("val", RED, |r: &EvalRow| r.val_loss),
    ] {
        let points: Vec<(f64, f64)> = rows.iter().map(|r| (r.iter as f64, pick(r))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let max_lr = rows
        .iter()
        .map(|r| r.lr)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-12);
    let mut lr = ChartBuilder::on(&bottom)
        .caption("learning rate (at each evaluation)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_iter, 0.0..max_lr * 1.1)?;
    lr.configure_mesh()
        .x_desc("iteration")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.1e}"))
        .draw()?;
    lr.draw_series(LineSeries::new(
        rows.iter().map(|r| (r.iter as f64, r.lr)),
        GREEN.stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}
