//! The run's own record of its evaluations: one row per eval point in `metrics.csv`
//! (what `gpt info` and `gpt plot` read), and when stdout is not a terminal a plain
//! console line per eval and per `log_interval` iterations, in the order they happened. Between evaluations, the [step values](crate::logged) every
//! `log_interval` iterations go to `train_log.csv` (nanoGPT's `log_interval`; `gpt plot`
//! draws them). A row that cannot be written stops the run with that error.

use crate::TrainError;
use crate::logged::{LOSS, PerValue, STEP_VALUES, StepValue};
use crate::metrics::names;
use crate::renderer::Iterations;
use burn::train::Interrupter;
use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The columns of `metrics.csv`.
pub const HEADER: &str =
    "epoch,iter,train_loss,val_loss,batch_loss,lr,tokens_per_s,elapsed_s,exact_match";

/// The training-loss log next to `metrics.csv`: one row per `log_interval` iterations.
pub const TRAIN_LOG: &str = "train_log.csv";

/// The columns of `train_log.csv`: the iteration count after the step, then that step's
/// values in the order of [`STEP_VALUES`] (NaN where not finite, or not measured).
pub fn train_log_header() -> String {
    std::iter::once("iter")
        .chain(STEP_VALUES.iter().map(|v| v.name))
        .collect::<Vec<_>>()
        .join(",")
}

/// One row of `train_log.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainPoint {
    /// Training iterations done, this one included.
    pub iter: usize,
    /// This iteration's step values; NaN where absent (a file whose rows end before the
    /// value's column).
    pub values: PerValue<f64>,
}

impl TrainPoint {
    /// This iteration's `value`, where finite.
    pub fn get(&self, value: &StepValue) -> Option<f64> {
        Some(self.values[value.slot()]).filter(|v| v.is_finite())
    }

    fn to_csv(self) -> String {
        let mut line = self.iter.to_string();
        for v in self.values {
            line.push_str(&format!(",{v:.6}"));
        }
        line
    }

    /// The iteration and at least the first value (the loss); later values a row lacks
    /// are absent.
    fn from_csv(line: &str) -> Option<Self> {
        let mut fields = line.split(',').map(str::trim);
        let iter = fields.next()?.parse().ok()?;
        let mut values = [f64::NAN; STEP_VALUES.len()];
        let mut read = 0;
        for field in fields {
            *values.get_mut(read)? = field.parse().ok()?;
            read += 1;
        }
        (read > 0).then_some(Self { iter, values })
    }
}

/// Reads `train_log.csv` (see [`read_log`]).
pub fn read_train_log(path: &Path) -> Result<Vec<TrainPoint>, TrainError> {
    read_log(path, TrainPoint::from_csv)
}

/// The rows of a run's CSV log, after its header: the one reader of `metrics.csv` and
/// `train_log.csv`, for `info`, `plot`, `eval` and resume alike. A missing file has no
/// rows. A last line without its newline is a row a kill cut short (appends write whole
/// lines, then sync) and is left out. Any other line that cannot be read is an error
/// naming the file and the line: the file is the user's record, and is never read (or
/// rewritten) as shorter than it is.
fn read_log<T>(path: &Path, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, TrainError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(crate::run::io(path, e)),
    };
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // The piece after the last newline: empty, or a line cut short.
    lines.pop();
    let bad = |number: usize, why: String| {
        TrainError::Run(format!(
            "{} line {number} {why}; fix or delete that line (the file is the run's record, so gpt does not rewrite it)",
            path.display()
        ))
    };
    let mut rows = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate().skip(1) {
        let text = std::str::from_utf8(line)
            .map_err(|e| {
                bad(
                    i + 1,
                    format!("is not UTF-8 text (byte {})", e.valid_up_to()),
                )
            })?
            .trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let row = parse(text).ok_or_else(|| bad(i + 1, format!("cannot be read: {text:?}")))?;
        rows.push(row);
    }
    Ok(rows)
}

/// One evaluation: the lecture's `estimate_loss` on both splits, plus training stats since
/// the previous evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    /// Evaluations done so far (burn-train's epoch).
    pub epoch: usize,
    /// Training iterations done so far.
    pub iter: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Mean loss of the training batches since the previous evaluation.
    pub batch_loss: f64,
    /// Learning rate of the last iteration.
    pub lr: f64,
    pub tokens_per_s: f64,
    /// Wall time of training so far, across resumes.
    pub elapsed_s: f64,
    /// Share of held-out problems answered exactly (arithmetic runs; NaN otherwise, and in
    /// files without the column).
    pub exact_match: f64,
}

impl EvalRow {
    fn to_csv(&self) -> String {
        format!(
            "{},{},{:.6},{:.6},{:.6},{:.6e},{:.1},{:.1},{:.6}",
            self.epoch,
            self.iter,
            self.train_loss,
            self.val_loss,
            self.batch_loss,
            self.lr,
            self.tokens_per_s,
            self.elapsed_s,
            self.exact_match
        )
    }

    fn from_csv(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split(',').collect();
        let num = |i: usize| f.get(i)?.parse::<f64>().ok();
        Some(Self {
            epoch: f.first()?.parse().ok()?,
            iter: f.get(1)?.parse().ok()?,
            train_loss: num(2)?,
            val_loss: num(3)?,
            batch_loss: num(4)?,
            lr: num(5)?,
            tokens_per_s: num(6)?,
            elapsed_s: num(7)?,
            exact_match: num(8).unwrap_or(f64::NAN),
        })
    }

    /// The console line for this evaluation.
    pub fn line(&self) -> String {
        let exact = if self.exact_match.is_nan() {
            String::new()
        } else {
            format!(", exact match {:.1} %", 100.0 * self.exact_match)
        };
        format!(
            "iter {:>6}: train loss {:.4}, val loss {:.4}{exact} | lr {:.2e} | {:.0} tok/s | {:.1} s",
            self.iter, self.train_loss, self.val_loss, self.lr, self.tokens_per_s, self.elapsed_s
        )
    }
}

/// Reads `metrics.csv` (see [`read_log`]).
pub fn read_rows(path: &Path) -> Result<Vec<EvalRow>, TrainError> {
    read_log(path, EvalRow::from_csv)
}

/// Rewrites `metrics.csv` with `rows` (used to drop rows past a resumed checkpoint).
pub fn write_rows(path: &Path, rows: &[EvalRow]) -> std::io::Result<()> {
    let mut text = format!("{HEADER}\n");
    for r in rows {
        text.push_str(&r.to_csv());
        text.push('\n');
    }
    data::files::write_atomically(path, text.as_bytes())
}

/// The rows written so far, shared between the logger and the checkpoint policy.
#[derive(Debug, Clone, Default)]
pub struct History(Arc<Mutex<Vec<EvalRow>>>);

impl History {
    pub fn new(rows: Vec<EvalRow>) -> Self {
        Self(Arc::new(Mutex::new(rows)))
    }

    pub fn rows(&self) -> Vec<EvalRow> {
        self.0.lock().expect("history lock").clone()
    }

    fn push(&self, row: EvalRow) {
        self.0.lock().expect("history lock").push(row);
    }

    /// The epoch with the lowest val loss.
    pub fn best_epoch(&self) -> Option<usize> {
        self.rows()
            .iter()
            .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
            .map(|r| r.epoch)
    }
}

/// A burn-train metric logger that turns each epoch's metrics into an [`EvalRow`].
pub struct RunLog {
    path: PathBuf,
    history: History,
    names: HashMap<MetricId, String>,
    /// Latest running (epoch-mean) value of each metric, by split.
    running: HashMap<(bool, String), f64>,
    epoch: usize,
    iter: usize,
    /// The iteration this session started at (0, or the resumed evaluation's).
    start_iter: usize,
    elapsed_before: f64,
    start: Instant,
    /// Prints the console lines (logs and pipes, where the TUI is off).
    echo: Option<Iterations>,
    /// Stops the run when a row cannot be written.
    interrupter: Interrupter,
    /// Where and how often the training loss is logged; `None`: not logged.
    train_log: Option<TrainLog>,
    /// The step values of the latest training batch.
    step_values: PerValue<f64>,
}

/// `train_log.csv` and its interval.
struct TrainLog {
    path: PathBuf,
    interval: usize,
    /// Rows past the resumed evaluation (left by a session that was killed after them)
    /// are dropped before the first new row.
    trimmed: bool,
}

impl RunLog {
    /// `history` holds the rows of earlier sessions of this run; `echo` prints a line per
    /// evaluation and per `log_interval` iterations (for logs and pipes, where the TUI is
    /// off).
    pub fn new(
        path: PathBuf,
        history: History,
        echo: Option<Iterations>,
        interrupter: Interrupter,
    ) -> Self {
        let last = history.rows().last().cloned();
        Self {
            path,
            history,
            names: HashMap::new(),
            running: HashMap::new(),
            epoch: last.as_ref().map_or(0, |r| r.epoch),
            iter: last.as_ref().map_or(0, |r| r.iter),
            start_iter: last.as_ref().map_or(0, |r| r.iter),
            elapsed_before: last.map_or(0.0, |r| r.elapsed_s),
            start: Instant::now(),
            echo,
            interrupter,
            train_log: None,
            step_values: [f64::NAN; STEP_VALUES.len()],
        }
    }

    /// Also log the training loss every `interval` iterations to `train_log.csv`, beside
    /// `metrics.csv`.
    pub fn with_log_interval(mut self, interval: usize) -> Self {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.train_log = Some(TrainLog {
            path: dir.join(TRAIN_LOG),
            interval: interval.max(1),
            trimmed: false,
        });
        self
    }

    /// Appends a row to `train_log.csv` (same discipline as `metrics.csv`: append, then
    /// sync), first dropping rows past this session's start.
    fn append_train(log: &mut TrainLog, start: usize, point: TrainPoint) -> std::io::Result<()> {
        if !log.trimmed {
            let old = read_train_log(&log.path).map_err(std::io::Error::other)?;
            if old.iter().any(|p| p.iter > start) {
                let mut text = format!("{}\n", train_log_header());
                for p in old.iter().filter(|p| p.iter <= start) {
                    text.push_str(&p.to_csv());
                    text.push('\n');
                }
                data::files::write_atomically(&log.path, text.as_bytes())?;
            }
            log.trimmed = true;
        }
        append_line(&log.path, &train_log_header(), &point.to_csv())
    }

    fn value(&self, valid: bool, name: &str) -> f64 {
        self.running
            .get(&(valid, name.to_string()))
            .copied()
            .unwrap_or(f64::NAN)
    }

    fn append(&self, row: &EvalRow) -> std::io::Result<()> {
        append_line(&self.path, HEADER, &row.to_csv())
    }
}

/// Appends `line` to the CSV log `path` (with `header` first when the file is new) in one
/// write of whole lines, then syncs: a kill leaves the row whole or absent.
fn append_line(path: &Path, header: &str, line: &str) -> std::io::Result<()> {
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let text = if new {
        format!("{header}\n{line}\n")
    } else {
        format!("{line}\n")
    };
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// A metric entry's number.
fn scalar(entry: &NumericEntry) -> f64 {
    match entry {
        NumericEntry::Value(v) => *v,
        NumericEntry::Aggregated {
            aggregated_value, ..
        } => *aggregated_value,
    }
}

impl MetricLogger for RunLog {
    fn log(&mut self, update: MetricsUpdate, _epoch: usize, split: &Split) {
        let valid = matches!(split, Split::Valid);
        if !valid {
            self.iter += 1; // one update per training batch
        }
        for u in update.entries_numeric {
            if let Some(name) = self.names.get(&u.entry.metric_id) {
                // The learning rate is a setting, not a measurement: report its latest value.
                let v = if name == names::LEARNING_RATE {
                    scalar(&u.numeric_entry)
                } else {
                    scalar(&u.running_entry)
                };
                if !valid && let Some(step) = STEP_VALUES.iter().find(|v| v.name == name) {
                    self.step_values[step.slot()] = scalar(&u.numeric_entry);
                }
                self.running.insert((valid, name.clone()), v);
            }
        }
        if valid {
            return;
        }
        let (iter, start) = (self.iter, self.start_iter);
        if let Some(log) = self.train_log.as_mut().filter(|l| iter % l.interval == 0) {
            let point = TrainPoint {
                iter,
                values: self
                    .step_values
                    .map(|v| if v.is_finite() { v } else { f64::NAN }),
            };
            if let Err(e) = Self::append_train(log, start, point) {
                let msg = format!("cannot append to {}: {e}", log.path.display());
                self.interrupter.stop(Some(&msg));
                self.train_log = None; // one error, not one per batch
            }
            if let Some(iterations) = &self.echo {
                let rate = self.value(false, names::TOKENS_PER_S);
                println!("{}", iterations.step_line(&point, rate));
            }
        }
    }

    fn read_numeric(
        &mut self,
        _name: &str,
        _epoch: usize,
        _split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        Err("RunLog keeps per-epoch rows in metrics.csv, not per-batch entries".into())
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        if !matches!(summary.split, Split::Valid) {
            return;
        }
        self.epoch += 1;
        let row = EvalRow {
            epoch: self.epoch,
            iter: self.iter,
            train_loss: self.value(true, names::TRAIN_LOSS),
            val_loss: self.value(true, names::VAL_LOSS),
            batch_loss: self.value(false, LOSS.name),
            lr: self.value(false, names::LEARNING_RATE),
            tokens_per_s: self.value(false, names::TOKENS_PER_S),
            elapsed_s: self.elapsed_before + self.start.elapsed().as_secs_f64(),
            exact_match: self.value(true, names::EXACT_MATCH),
        };
        if let Err(e) = self.append(&row) {
            let msg = format!("cannot append to {}: {e}", self.path.display());
            self.interrupter.stop(Some(&msg));
        }
        if self.echo.is_some() {
            println!("{}", row.line());
        }
        self.history.push(row);
        self.running.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A logged evaluation with `val_loss`, for tests.
    pub(crate) fn row(epoch: usize, val_loss: f64) -> EvalRow {
        EvalRow {
            epoch,
            iter: epoch * 10,
            train_loss: 1.0,
            val_loss,
            batch_loss: 1.0,
            lr: 1e-3,
            tokens_per_s: 100.0,
            elapsed_s: 1.0,
            exact_match: 0.5,
        }
    }

    #[test]
    fn csv_round_trip() {
        let dir = std::env::temp_dir().join(format!("burngpt-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        let rows = vec![row(1, 2.5), row(2, 2.25)];
        write_rows(&path, &rows).unwrap();
        let back = read_rows(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].iter, 20);
        assert!((back[1].val_loss - 2.25).abs() < 1e-9);
        assert_eq!(back[1].exact_match, 0.5);
        // A file without the exact_match column reads too.
        let old = "epoch,iter\n1,10,2.0,2.5,2.0,1e-3,100.0,1.0\n";
        std::fs::write(&path, old).unwrap();
        assert!(read_rows(&path).unwrap()[0].exact_match.is_nan());
    }

    /// A line that cannot be read is an error naming the file and line; a last line
    /// without its newline (cut short by a kill) is left out; a missing file has no rows.
    #[test]
    fn damaged_rows_are_errors_and_cut_rows_are_left_out() {
        let dir = std::env::temp_dir().join(format!("burngpt-log-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        write_rows(&path, &[row(1, 2.5), row(2, 2.25)]).unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut cut = good.clone();
        cut.extend_from_slice(b"3,30,2.0,2.1");
        std::fs::write(&path, &cut).unwrap();
        assert_eq!(read_rows(&path).unwrap().len(), 2);
        for (damage, says) in [(&b"\xff"[..], "not UTF-8"), (&b"x,"[..], "cannot be read")] {
            let at = good.iter().position(|&b| b == b'\n').unwrap() + 1;
            let mut bad = good[..at].to_vec();
            bad.extend_from_slice(damage);
            bad.extend_from_slice(&good[at..]);
            std::fs::write(&path, &bad).unwrap();
            let err = read_rows(&path).unwrap_err().to_string();
            assert!(
                err.contains("metrics.csv line 2") && err.contains(says),
                "{err}"
            );
        }
        assert!(read_rows(&dir.join("missing.csv")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Rows are appended; a resumed session first drops the rows past its start (left by
    /// a killed session), and a non-finite loss is written as NaN.
    #[test]
    fn train_log_appends_and_trims_on_resume() {
        let dir = std::env::temp_dir().join(format!("burngpt-trainlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(TRAIN_LOG);
        let _ = std::fs::remove_file(&path);
        let mut log = TrainLog {
            path: path.clone(),
            interval: 10,
            trimmed: false,
        };
        for (iter, loss) in [(10, 4.0), (20, 3.5), (30, f64::NAN)] {
            RunLog::append_train(&mut log, 0, point(iter, loss)).unwrap();
        }
        let back = read_train_log(&path).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[1].get(&LOSS), Some(3.5));
        assert_eq!(back[1].iter, 20);
        assert_eq!(back[2].get(&LOSS), None);
        // Resumed from the evaluation at iteration 20: row 30 is dropped.
        let mut resumed = TrainLog {
            trimmed: false,
            ..log
        };
        RunLog::append_train(&mut resumed, 20, point(30, 3.0)).unwrap();
        let back = read_train_log(&path).unwrap();
        let iters: Vec<usize> = back.iter().map(|p| p.iter).collect();
        assert_eq!(iters, [10, 20, 30]);
        assert_eq!(back[2].get(&LOSS), Some(3.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A row with `loss` and no other value.
    fn point(iter: usize, loss: f64) -> TrainPoint {
        let mut values = [f64::NAN; STEP_VALUES.len()];
        values[LOSS.slot()] = loss;
        TrainPoint { iter, values }
    }

    /// A `train_log.csv` with fewer columns than values are declared reads, the missing
    /// values absent; a row needs its loss, and no more columns than are declared.
    #[test]
    fn train_log_rows_without_later_columns_read_as_absent() {
        let header = train_log_header();
        assert!(header.starts_with("iter,loss"), "{header}");
        let old = TrainPoint::from_csv("10,2.5").unwrap();
        assert_eq!((old.iter, old.get(&LOSS)), (10, Some(2.5)));
        assert!(STEP_VALUES[1..].iter().all(|v| old.get(v).is_none()));
        let full = point(20, 2.0).to_csv();
        assert_eq!(TrainPoint::from_csv(&full).unwrap().get(&LOSS), Some(2.0));
        for bad in ["10", "10,x", "x,1.0", &format!("{full},1.0")] {
            assert!(TrainPoint::from_csv(bad).is_none(), "{bad}");
        }
    }
}
