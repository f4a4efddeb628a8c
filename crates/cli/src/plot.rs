//! `gpt plot`: loss and learning-rate curves as a PNG, from the runs' metrics.csv (the
//! evaluations) and train_log.csv (the [step values](training::logged) every
//! `log_interval` iterations: the loss under the evaluations, the others on charts of
//! their own beside the learning rate). One run, or several on one chart to compare
//! presets and ablations.

use anyhow::{Context, Result, bail};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use training::RunDir;
use training::log::{EvalRow, TrainPoint};
use training::logged::{Plot, STEP_VALUES, StepValue};

#[derive(clap::Args)]
pub struct Args {
    /// The run directory; repeat to compare runs on one chart (default: the most recently
    /// trained run under runs/).
    #[arg(long = "run", value_name = "DIR")]
    runs: Vec<PathBuf>,
    /// Output file (default: <run>/loss.png for one run, loss_compare.png for several).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Logarithmic iteration axis (long runs: the first drop and the slow end both show).
    #[arg(long)]
    log_x: bool,
    /// Logarithmic loss axis.
    #[arg(long)]
    log_y: bool,
}

/// The picture's size in pixels.
pub const SIZE: (u32, u32) = (900, 640);

pub fn run(args: Args) -> Result<()> {
    let dirs = if args.runs.is_empty() {
        let run = RunDir::latest(Path::new("runs"))?;
        eprintln!(
            "using {} (the most recently trained run; --run DIR picks another)",
            run.path().display()
        );
        vec![run]
    } else {
        args.runs
            .iter()
            .map(RunDir::open)
            .collect::<Result<Vec<_>, _>>()?
    };
    let runs = dirs.iter().map(Curves::read).collect::<Result<Vec<_>>>()?;
    same_tokenizer(&dirs)?;
    let labels = legend_labels(&runs);
    let out = args.out.unwrap_or_else(|| match &dirs[..] {
        [one] => one.path().join("loss.png"),
        _ => PathBuf::from("loss_compare.png"),
    });
    crate::picture::register_font()?;
    draw(&runs, &labels, &out, args.log_x, args.log_y)
        .with_context(|| format!("drawing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// One run's curves, non-finite values left out.
struct Curves {
    name: String,
    /// Its config as `key → value`, for the legend's differences.
    config: BTreeMap<String, String>,
    log_interval: usize,
    rows: Vec<EvalRow>,
    train: Vec<TrainPoint>,
}

impl Curves {
    fn read(run: &RunDir) -> Result<Self> {
        let all = run.rows()?;
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
        let train = run.train_log()?;
        let config = run.config()?;
        let table = toml::Table::try_from(&config).context("the run's config")?;
        let flat = table
            .values()
            .filter_map(|section| section.as_table())
            .flat_map(|section| section.iter().map(|(k, v)| (k.clone(), v.to_string())))
            .collect();
        Ok(Self {
            name: crate::picture::run_name(run.path()),
            config: flat,
            log_interval: config.train.log_interval,
            rows,
            train,
        })
    }
}

/// Losses are comparable only over the same tokens: runs on one chart must share their
/// tokenizer (vocabulary).
fn same_tokenizer(runs: &[RunDir]) -> Result<()> {
    let mut first: Option<(&RunDir, String, usize)> = None;
    for run in runs {
        let tokenizer = run.tokenizer()?;
        let json = serde_json::to_string(&tokenizer).context("the run's tokenizer")?;
        let size = data::Tokenizer::vocab_size(&tokenizer);
        match &first {
            None => first = Some((run, json, size)),
            Some((a, a_json, a_size)) if *a_json != json => bail!(
                "{} and {} use different tokenizers ({a_size} and {size} tokens): their losses are not comparable on one chart",
                a.path().display(),
                run.path().display()
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Each run's legend entry: its name and the config keys whose values differ between
/// the runs (the first few, the model's shape first).
fn legend_labels(runs: &[Curves]) -> Vec<String> {
    const SHOWN: usize = 4;
    const FIRST: &[&str] = &[
        "model",
        "n_layer",
        "n_head",
        "n_embd",
        "block_size",
        "dataset",
        "max_iters",
        "learning_rate",
        "dropout",
        "batch_size",
    ];
    let mut keys: Vec<&String> = runs
        .iter()
        .flat_map(|r| r.config.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| {
            let first = runs[0].config.get(*k);
            runs.iter().any(|r| r.config.get(*k) != first)
        })
        .collect();
    keys.sort_by_key(|k| FIRST.iter().position(|f| f == k).unwrap_or(FIRST.len()));
    runs.iter()
        .map(|r| {
            let mut diffs: Vec<String> = keys
                .iter()
                .take(SHOWN)
                .map(|k| format!("{k}={}", r.config.get(*k).map_or("-", |v| v.as_str())))
                .collect();
            if keys.len() > SHOWN {
                diffs.push("…".into());
            }
            if diffs.is_empty() {
                r.name.clone()
            } else {
                format!("{} ({})", r.name, diffs.join(", "))
            }
        })
        .collect()
}

/// One curve of a panel.
struct Line {
    label: Option<String>,
    points: Vec<(u64, f64)>,
    style: ShapeStyle,
    dashed: bool,
    /// Circles at the points: `Some(true)` filled, `Some(false)` hollow.
    markers: Option<bool>,
}

/// The runs' colours on a multi-run chart (matplotlib's tab10).
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn draw(runs: &[Curves], labels: &[String], out: &Path, log_x: bool, log_y: bool) -> Result<()> {
    crate::picture::write_png(out, SIZE, |root| charts(root, runs, labels, log_x, log_y))
}

fn charts(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    runs: &[Curves],
    labels: &[String],
    log_x: bool,
    log_y: bool,
) -> Result<()> {
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(440);
    let single = runs.len() == 1;
    let (mut losses, mut lrs) = (Vec::new(), Vec::new());
    // The step values with a chart of their own, each with its runs' lines.
    let mut own: Vec<(&StepValue, Vec<Line>)> = STEP_VALUES
        .iter()
        .filter(|v| v.plot == Plot::OwnChart)
        .map(|v| (v, Vec::new()))
        .collect();
    for (i, (run, label)) in runs.iter().zip(labels).enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let (train_c, val_c, lr_c) = if single {
            (BLUE, RED, GREEN)
        } else {
            (colour, colour, colour)
        };
        let evals = |pick: fn(&EvalRow) -> f64| -> Vec<(u64, f64)> {
            run.rows.iter().map(|r| (r.iter as u64, pick(r))).collect()
        };
        let logged = |value: &StepValue| -> Vec<(u64, f64)> {
            run.train
                .iter()
                .filter_map(|p| Some((p.iter as u64, p.get(value)?)))
                .collect()
        };
        // The step values on the loss chart: thin, under the evaluation points.
        for value in STEP_VALUES.iter().filter(|v| v.plot == Plot::OnLossChart) {
            let points = logged(value);
            if !points.is_empty() {
                losses.push(Line {
                    label: single
                        .then(|| format!("{} (every {} iters)", value.about, run.log_interval)),
                    points,
                    style: train_c.mix(0.3).stroke_width(1),
                    dashed: false,
                    markers: None,
                });
            }
        }
        for (value, lines) in &mut own {
            lines.push(Line {
                label: None,
                points: logged(value),
                style: lr_c.stroke_width(2),
                dashed: false,
                markers: None,
            });
        }
        losses.push(Line {
            label: single.then(|| "train (evaluation)".into()),
            points: evals(|r| r.train_loss),
            style: train_c.stroke_width(2),
            dashed: !single,
            markers: Some(single),
        });
        losses.push(Line {
            label: Some(if single {
                "val (evaluation)".into()
            } else {
                label.clone()
            }),
            points: evals(|r| r.val_loss),
            style: val_c.stroke_width(2),
            dashed: false,
            markers: Some(true),
        });
        lrs.push(Line {
            label: None,
            points: evals(|r| r.lr)
                .into_iter()
                .filter(|p| p.1.is_finite())
                .collect(),
            style: lr_c.stroke_width(2),
            dashed: false,
            markers: None,
        });
    }
    let all = |lines: &[Line]| -> Vec<(u64, f64)> {
        lines
            .iter()
            .flat_map(|l| l.points.iter().copied())
            .collect()
    };
    let (loss_points, lr_points) = (all(&losses), all(&lrs));
    let max_iter = loss_points.iter().map(|p| p.0).max().unwrap_or(1).max(1);
    let min_iter = loss_points
        .iter()
        .map(|p| p.0)
        .filter(|&i| i > 0)
        .min()
        .unwrap_or(1);
    let (lo, hi) = loss_points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let pad = ((hi - lo) * 0.05).max(0.01);
    let max_lr = lr_points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-12);
    // A value none of the runs logged gets no chart.
    own.retain(|(_, lines)| lines.iter().any(|l| !l.points.is_empty()));
    let bottom = bottom.split_evenly((1, 1 + own.len()));
    let mut charts = vec![Chart {
        caption: "learning rate (at each evaluation)".into(),
        y: 0.0..max_lr * 1.1,
        y_desc: "lr",
        y_fmt: Box::new(|v: &f64| format!("{v:.1e}")),
        lines: lrs,
    }];
    for (value, lines) in own {
        let (lo, hi) = lines
            .iter()
            .flat_map(|l| l.points.iter())
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        let pad = ((hi - lo) * 0.05).max(1e-9);
        charts.push(Chart {
            caption: value.about.into(),
            y: (lo - pad)..(hi + pad),
            y_desc: value.name,
            y_fmt: Box::new(|v: &f64| format!("{v:.2}")),
            lines,
        });
    }

    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    let caption = if single {
        format!("loss — {}", names[0])
    } else if names.join(" vs ").chars().count() <= 50 {
        format!("loss — {} (solid: val, dashed: train)", names.join(" vs "))
    } else {
        format!("loss — {} runs (solid: val, dashed: train)", runs.len())
    };
    let loss_fmt = |v: &f64| format!("{v:.2}");
    // The same panels on each combination of linear and logarithmic axes.
    match (log_x, log_y) {
        (false, false) => {
            let x = 0..max_iter;
            panel(
                &top,
                &caption,
                x.clone(),
                (lo - pad)..(hi + pad),
                "loss",
                &loss_fmt,
                &losses,
            )?;
            bottom_row(&bottom, x, &charts)?;
        }
        (false, true) => {
            let x = 0..max_iter;
            let y = (lo * 0.95..hi * 1.05).log_scale();
            panel(
                &top,
                &caption,
                x.clone(),
                y,
                "loss (log)",
                &loss_fmt,
                &losses,
            )?;
            bottom_row(&bottom, x, &charts)?;
        }
        (true, false) => {
            let x = (min_iter..max_iter.max(min_iter + 1)).log_scale();
            panel(
                &top,
                &caption,
                x.clone(),
                (lo - pad)..(hi + pad),
                "loss",
                &loss_fmt,
                &losses,
            )?;
            bottom_row(&bottom, x, &charts)?;
        }
        (true, true) => {
            let x = (min_iter..max_iter.max(min_iter + 1)).log_scale();
            let y = (lo * 0.95..hi * 1.05).log_scale();
            panel(
                &top,
                &caption,
                x.clone(),
                y,
                "loss (log)",
                &loss_fmt,
                &losses,
            )?;
            bottom_row(&bottom, x, &charts)?;
        }
    }
    Ok(())
}

/// A chart of the bottom row, on a linear value axis.
struct Chart {
    caption: String,
    y: std::ops::Range<f64>,
    y_desc: &'static str,
    y_fmt: Box<dyn Fn(&f64) -> String>,
    lines: Vec<Line>,
}

/// The bottom row's charts, side by side, over the loss chart's iterations `x`.
fn bottom_row<X>(
    areas: &[DrawingArea<BitMapBackend<'_>, Shift>],
    x: X,
    charts: &[Chart],
) -> Result<()>
where
    X: AsRangedCoord<Value = u64> + Clone,
    X::CoordDescType: ValueFormatter<u64>,
{
    for (area, c) in areas.iter().zip(charts) {
        let y = c.y.clone();
        panel(area, &c.caption, x.clone(), y, c.y_desc, &c.y_fmt, &c.lines)?;
    }
    Ok(())
}

/// One chart: `lines` over iterations on `x`, values on `y`, with a legend for the
/// labelled ones. Iterations are integers, so are their ticks.
#[allow(clippy::too_many_arguments)]
fn panel<X, Y>(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    caption: &str,
    x: X,
    y: Y,
    y_desc: &str,
    y_fmt: &dyn Fn(&f64) -> String,
    lines: &[Line],
) -> Result<()>
where
    X: AsRangedCoord<Value = u64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<u64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        // Room for the last iteration label, centred on the right edge.
        .margin_right(36)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .x_label_formatter(&|v: &u64| v.to_string())
        .y_desc(y_desc)
        .y_label_formatter(y_fmt)
        .draw()?;
    let mut labelled = false;
    for line in lines {
        let series = if line.dashed {
            chart.draw_series(DashedLineSeries::new(line.points.clone(), 6, 4, line.style))?
        } else {
            chart.draw_series(LineSeries::new(line.points.clone(), line.style))?
        };
        if let Some(label) = &line.label {
            let style = line.style;
            series
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            labelled = true;
        }
        if let Some(filled) = line.markers {
            let style = if filled {
                line.style.filled()
            } else {
                line.style.stroke_width(1)
            };
            chart.draw_series(line.points.iter().map(|&p| Circle::new(p, 3, style)))?;
        }
    }
    if labelled {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()?;
    }
    Ok(())
}
