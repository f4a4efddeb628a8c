//! The dashboard in the lecture's terms: iteration n of `max_iters` with the time left,
//! and the two numbers of `estimate_loss` as the train and the val loss.
//!
//! burn-train counts epochs (here one evaluation interval each, see
//! [`loader`](crate::loader)) and the items of each, so its own dashboard reads
//! `Epoch 3/3`, `Iteration 81`, `Items 972/1200` at iteration 281 of 300, and lists the
//! estimate on the train split as a validation metric. [`Iterations`] turns its progress
//! back into the run's iterations; [`Dashboard`] is burn-train's terminal dashboard
//! told so. Without a terminal, the run's log prints nanoGPT's line every
//! `log_interval` iterations ([`Iterations::step_line`]).

use crate::TrainConfig;
use crate::log::TrainPoint;
use crate::logged::{RL_VALUES, STEP_VALUES};
use crate::metrics::names;
use burn::data::dataloader::Progress;
use burn::train::metric::{MetricDefinition, MetricEntry, MetricId};
use burn::train::renderer::tui::TuiMetricsRendererWrapper;
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::{Interrupter, LearnerSummary};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The name under which the dashboard shows `train_loss` (as its train value) and
/// `val_loss` (as its val value).
pub const ESTIMATE_LOSS: &str = "estimate_loss";

/// nanoGPT's iteration count, from burn-train's progress reports.
#[derive(Debug, Clone)]
pub struct Iterations {
    max_iters: usize,
    eval_interval: usize,
    eval_iters: usize,
    /// Iterations done before this session (a resumed run's).
    start_iter: usize,
    started: Instant,
}

impl Iterations {
    /// A session of a run with `train`'s schedule that starts after `start_iter`
    /// iterations.
    pub fn new(train: &TrainConfig, start_iter: usize) -> Self {
        Self {
            max_iters: train.max_iters,
            eval_interval: train.eval_interval.max(1),
            eval_iters: train.eval_iters,
            start_iter,
            started: Instant::now(),
        }
    }

    /// The iteration (1-based, from the run's start) a training report is about: its
    /// epoch (1-based) is the evaluation interval, its iteration the one within it.
    fn of_train(&self, progress: &TrainingProgress) -> usize {
        let intervals = progress.global_progress.items_processed.saturating_sub(1);
        intervals * self.eval_interval + progress.iteration.unwrap_or(0)
    }

    /// The iterations done when a validation report's evaluation runs.
    fn of_valid(&self, progress: &TrainingProgress) -> usize {
        (progress.global_progress.items_processed * self.eval_interval).min(self.max_iters)
    }

    /// The time left at this session's pace so far; `None` before its first iteration.
    fn eta(&self, iter: usize) -> Option<Duration> {
        let done = iter.checked_sub(self.start_iter).filter(|&d| d > 0)?;
        let left = self.max_iters.saturating_sub(iter);
        Some(self.started.elapsed().mul_f64(left as f64 / done as f64))
    }

    /// The progress as iterations of `max_iters`: burn-train's progress bar and its ETA
    /// then count iterations (from `start_iter`, see [`Dashboard::terminal`]).
    fn as_progress(&self, iter: usize) -> TrainingProgress {
        TrainingProgress {
            progress: None,
            global_progress: Progress {
                items_processed: iter,
                items_total: self.max_iters,
            },
            iteration: Some(iter),
        }
    }

    /// The status box while training: the iteration, and when the next evaluation is.
    fn train_status(&self, iter: usize) -> Vec<ProgressType> {
        let next_eval = (iter / self.eval_interval + 1) * self.eval_interval;
        vec![
            self.iteration(iter),
            ProgressType::Value {
                tag: "Next evaluation at".into(),
                value: next_eval.min(self.max_iters),
            },
        ]
    }

    /// The status box during `estimate_loss`: its batches, train's then val's.
    fn valid_status(&self, progress: &TrainingProgress) -> Vec<ProgressType> {
        vec![
            self.iteration(self.of_valid(progress)),
            ProgressType::Detailed {
                tag: "estimate_loss batch".into(),
                progress: Progress {
                    items_processed: progress.iteration.unwrap_or(0),
                    items_total: 2 * self.eval_iters,
                },
            },
        ]
    }

    /// nanoGPT's line every `log_interval` iterations, with every step value (those of
    /// reinforcement learning where measured):
    /// `iter 81/300: loss 2.3012, grad_norm 0.8123 | 1234 tok/s | 2 min 10 s left`.
    pub fn step_line(&self, point: &TrainPoint, tokens_per_s: f64) -> String {
        let values: Vec<String> = STEP_VALUES
            .iter()
            .filter(|v| !(RL_VALUES.contains(v) && point.values[v.slot()].is_nan()))
            .map(|v| format!("{} {:.*}", v.name, v.precision, point.values[v.slot()]))
            .collect();
        let mut line = format!(
            "iter {}/{}: {} | {tokens_per_s:.0} tok/s",
            point.iter,
            self.max_iters,
            values.join(", ")
        );
        if let Some(eta) = self.eta(point.iter) {
            line.push_str(&format!(" | {} left", duration(eta)));
        }
        line
    }

    fn iteration(&self, iter: usize) -> ProgressType {
        ProgressType::Detailed {
            tag: "Iteration".into(),
            progress: Progress {
                items_processed: iter,
                items_total: self.max_iters,
            },
        }
    }
}

/// A burn-train renderer (its terminal dashboard) shown iterations instead of epochs,
/// and `estimate_loss`'s two numbers as one metric with a train and a val value.
pub struct Dashboard<R> {
    inner: R,
    iterations: Iterations,
    names: HashMap<MetricId, String>,
    estimate: MetricId,
}

impl Dashboard<TuiMetricsRendererWrapper> {
    /// burn-train's terminal dashboard; its ETA counts this session's iterations.
    pub fn terminal(interrupter: Interrupter, iterations: Iterations) -> Self {
        let tui = TuiMetricsRendererWrapper::new(interrupter, Some(iterations.start_iter));
        Self::new(tui, iterations)
    }
}

impl<R: MetricsRenderer> Dashboard<R> {
    pub fn new(inner: R, iterations: Iterations) -> Self {
        Self {
            inner,
            iterations,
            names: HashMap::new(),
            estimate: MetricId::new(Arc::new(ESTIMATE_LOSS.into())),
        }
    }

    /// `state` as a value of `estimate_loss`.
    fn as_estimate(&self, state: MetricState) -> MetricState {
        let entry = |e: MetricEntry| MetricEntry::new(self.estimate.clone(), e.serialized_entry);
        match state {
            MetricState::Generic(e) => MetricState::Generic(entry(e)),
            MetricState::Numeric(e, value) => MetricState::Numeric(entry(e), value),
        }
    }
}

/// The metric an entry belongs to.
fn id(state: &MetricState) -> &MetricId {
    match state {
        MetricState::Generic(e) | MetricState::Numeric(e, _) => &e.metric_id,
    }
}

impl<R: MetricsRenderer> MetricsRendererTraining for Dashboard<R> {
    fn update_train(&mut self, state: MetricState) {
        self.inner.update_train(state);
    }

    /// The estimate on the train split is shown as `estimate_loss`'s train value, the
    /// one on the val split as its val value.
    fn update_valid(&mut self, state: MetricState) {
        match self.names.get(id(&state)).map(String::as_str) {
            Some(names::TRAIN_LOSS) => {
                let state = self.as_estimate(state);
                self.inner.update_train(state);
            }
            Some(names::VAL_LOSS) => {
                let state = self.as_estimate(state);
                self.inner.update_valid(state);
            }
            _ => self.inner.update_valid(state),
        }
    }

    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let iter = self.iterations.of_train(&item);
        let status = self.iterations.train_status(iter);
        self.inner
            .render_train(self.iterations.as_progress(iter), status);
    }

    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let status = self.iterations.valid_status(&item);
        self.inner.render_valid(item, status);
    }

    fn on_train_end(
        &mut self,
        summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        self.inner.on_train_end(summary)
    }
}

impl<R: MetricsRenderer> MetricsRendererEvaluation for Dashboard<R> {
    fn update_test(&mut self, name: EvaluationName, state: MetricState) {
        self.inner.update_test(name, state);
    }

    fn render_test(&mut self, item: EvaluationProgress, status: Vec<ProgressType>) {
        self.inner.render_test(item, status);
    }
}

impl<R: MetricsRenderer> MetricsRenderer for Dashboard<R> {
    fn manual_close(&mut self) {
        self.inner.manual_close();
    }

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id.clone(), definition.name.clone());
        if definition.name == names::TRAIN_LOSS {
            self.inner.register_metric(MetricDefinition {
                metric_id: self.estimate.clone(),
                name: ESTIMATE_LOSS.into(),
                description: Some(
                    "the lecture's estimate_loss: mean loss of eval_iters batches of each split"
                        .into(),
                ),
                attributes: definition.attributes,
            });
        } else if definition.name != names::VAL_LOSS {
            self.inner.register_metric(definition);
        }
    }
}

/// The dashboard when stdout is not a terminal (CI, pipes, `nohup`): silent, since
/// burn-train's own prints a record per batch without metric values. The console lines,
/// every `log_interval` iterations ([`Iterations::step_line`]) and per evaluation, come
/// from [`RunLog`](crate::log::RunLog), which prints them in the order they happen.
#[derive(Debug, Default)]
pub struct PlainRenderer;

impl MetricsRendererTraining for PlainRenderer {
    fn update_train(&mut self, _: MetricState) {}
    fn update_valid(&mut self, _: MetricState) {}
    fn render_train(&mut self, _: TrainingProgress, _: Vec<ProgressType>) {}
    fn render_valid(&mut self, _: TrainingProgress, _: Vec<ProgressType>) {}
    fn on_train_end(
        &mut self,
        _: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for PlainRenderer {
    fn update_test(&mut self, _: EvaluationName, _: MetricState) {}
    fn render_test(&mut self, _: EvaluationProgress, _: Vec<ProgressType>) {}
}

impl MetricsRenderer for PlainRenderer {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, _: MetricDefinition) {}
}

/// `1 h 02 min`, `3 min 20 s`, `45 s`.
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s:02} s"),
        (h, m, _) => format!("{h} h {m:02} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunConfig;
    use crate::logged::{GRAD_NORM, LOSS};
    use burn::train::metric::{MetricAttributes, NumericEntry, SerializedEntry};

    /// A run of 300 iterations, an evaluation every 100.
    fn iterations(start_iter: usize) -> Iterations {
        let mut train = RunConfig::default().train;
        (train.max_iters, train.eval_interval) = (300, 100);
        train.eval_iters = 20;
        Iterations::new(&train, start_iter)
    }

    /// burn-train's report at iteration `iteration` of epoch `epoch` (1-based).
    fn report(epoch: usize, iteration: usize) -> TrainingProgress {
        TrainingProgress {
            progress: Some(Progress {
                items_processed: iteration * 12,
                items_total: 1200,
            }),
            global_progress: Progress {
                items_processed: epoch,
                items_total: 3,
            },
            iteration: Some(iteration),
        }
    }

    fn definition(name: &str) -> MetricDefinition {
        MetricDefinition {
            metric_id: MetricId::new(Arc::new(name.into())),
            name: name.into(),
            description: None,
            attributes: MetricAttributes::None,
        }
    }

    fn numeric(name: &str, value: f64) -> MetricState {
        let entry = SerializedEntry::new(format!("{value}"), format!("{value}"));
        MetricState::Numeric(
            MetricEntry::new(MetricId::new(Arc::new(name.into())), entry),
            NumericEntry::Value(value),
        )
    }

    /// What a renderer was told, as text.
    #[derive(Default)]
    struct Told(Vec<String>);

    fn status(indicators: &[ProgressType]) -> String {
        let words: Vec<String> = indicators
            .iter()
            .map(|p| match p {
                ProgressType::Detailed { tag, progress } => {
                    format!(
                        "{tag} {}/{}",
                        progress.items_processed, progress.items_total
                    )
                }
                ProgressType::Value { tag, value } => format!("{tag} {value}"),
            })
            .collect();
        words.join(", ")
    }

    fn metric(split: &str, state: &MetricState) -> String {
        let MetricState::Numeric(entry, value) = state else {
            panic!("numeric")
        };
        format!("{split} {:?} {}", entry.metric_id, value.current())
    }

    impl MetricsRendererTraining for Told {
        fn update_train(&mut self, state: MetricState) {
            self.0.push(metric("train", &state));
        }
        fn update_valid(&mut self, state: MetricState) {
            self.0.push(metric("val", &state));
        }
        fn render_train(&mut self, item: TrainingProgress, indicators: Vec<ProgressType>) {
            let p = item.global_progress;
            let bar = format!("bar {}/{}", p.items_processed, p.items_total);
            self.0.push(format!("{bar}; {}", status(&indicators)));
        }
        fn render_valid(&mut self, _: TrainingProgress, indicators: Vec<ProgressType>) {
            self.0.push(status(&indicators));
        }
    }

    impl MetricsRendererEvaluation for Told {
        fn update_test(&mut self, _: EvaluationName, _: MetricState) {}
        fn render_test(&mut self, _: EvaluationProgress, _: Vec<ProgressType>) {}
    }

    impl MetricsRenderer for Told {
        fn manual_close(&mut self) {}
        fn register_metric(&mut self, definition: MetricDefinition) {
            self.0.push(format!("metric {}", definition.name));
        }
    }

    /// burn-train's `Epoch 3/3`, `Iteration 81`, `Items 972/1200` is iteration 281 of
    /// 300; the progress bar counts iterations too.
    #[test]
    fn the_dashboard_counts_iterations_of_max_iters() {
        let mut dashboard = Dashboard::new(Told::default(), iterations(0));
        dashboard.render_train(report(3, 81), Vec::new());
        dashboard.render_train(report(1, 100), Vec::new());
        dashboard.render_valid(report(1, 30), Vec::new());
        assert_eq!(
            dashboard.inner.0,
            [
                "bar 281/300; Iteration 281/300, Next evaluation at 300",
                "bar 100/300; Iteration 100/300, Next evaluation at 200",
                "Iteration 100/300, estimate_loss batch 30/40",
            ]
        );
    }

    /// estimate_loss's two numbers are one metric, with a train and a val value.
    #[test]
    fn the_estimates_are_shown_as_train_and_val() {
        let mut dashboard = Dashboard::new(Told::default(), iterations(0));
        for name in [names::TRAIN_LOSS, names::VAL_LOSS, names::EXACT_MATCH] {
            dashboard.register_metric(definition(name));
        }
        dashboard.update_valid(numeric(names::TRAIN_LOSS, 2.5));
        dashboard.update_valid(numeric(names::VAL_LOSS, 2.75));
        dashboard.update_valid(numeric(names::EXACT_MATCH, 0.5));
        let id = |n: &str| format!("{:?}", MetricId::new(Arc::new(n.into())));
        assert_eq!(
            dashboard.inner.0,
            [
                "metric estimate_loss".to_string(),
                "metric exact_match".into(),
                format!("train {} 2.5", id(ESTIMATE_LOSS)),
                format!("val {} 2.75", id(ESTIMATE_LOSS)),
                format!("val {} 0.5", id(names::EXACT_MATCH)),
            ]
        );
    }

    /// Without a terminal: nanoGPT's line every log_interval, with the step values and
    /// the iteration of max_iters.
    #[test]
    fn the_plain_log_speaks_iterations() {
        let mut values = [f64::NAN; STEP_VALUES.len()];
        (values[LOSS.slot()], values[GRAD_NORM.slot()]) = (2.3, 0.5);
        let point = TrainPoint { iter: 110, values };
        let line = iterations(0).step_line(&point, 1234.4);
        assert!(
            line.starts_with("iter 110/300: loss 2.3000, grad_norm 0.5000 | 1234 tok/s | "),
            "{line}"
        );
        assert!(line.ends_with(" s left"), "{line}");
        // A resumed session's pace counts its own iterations only.
        assert!(iterations(110).eta(110).is_none());
        assert_eq!(duration(Duration::from_secs(45)), "45 s");
        assert_eq!(duration(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(duration(Duration::from_secs(3720)), "1 h 02 min");
    }
}
