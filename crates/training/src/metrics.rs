//! What each step reports, and the metrics burn-train computes from it.
//!
//! A step's output is its loss and the other [declared step values](crate::logged) (kept
//! on the device until burn-train's metric thread reads them), the number of tokens, and
//! which split the batch came from; on an arithmetic run's held-out batches, also the
//! share of problems answered exactly. Evaluation batches come from both splits (the
//! lecture's `estimate_loss`), so the loss metrics are per split.

use crate::logged::{LOSS, PerValue, StepValue};
use burn::prelude::*;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, ItemLazy, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric,
    NumericAttributes, NumericEntry, SerializedEntry,
};
use data::Split;
use std::sync::Arc;
use std::time::Instant;

/// Metric names, shared by the metrics here and the run's log (`log`).
pub mod names {
    /// The evaluation losses (`{split}_loss`).
    pub const TRAIN_LOSS: &str = "train_loss";
    pub const VAL_LOSS: &str = "val_loss";
    pub const EXACT_MATCH: &str = "exact_match";
    pub const TOKENS_PER_S: &str = "tokens_per_s";
    pub const PERPLEXITY: &str = "perplexity";
    /// burn-train's `LearningRateMetric` names itself so.
    pub const LEARNING_RATE: &str = "Learning Rate";
}

/// One step's result, still on the device.
pub struct StepOutput<B: Backend> {
    pub loss: Tensor<B, 1>,
    pub tokens: usize,
    pub split: Split,
    /// Share of the batch's problems answered exactly (see `exact`), where measured.
    pub exact_match: Option<Tensor<B, 1>>,
    /// Whether the metrics read `loss` back to the host at this step (see
    /// [`HostReads`](crate::step::HostReads)); evaluation steps always do.
    pub read: bool,
    /// The step values besides the loss that this step measured (see [`Self::measure`]).
    pub measured: PerValue<Option<Tensor<B, 1>>>,
}

impl<B: Backend> StepOutput<B> {
    /// Reports `value` (one number, on the device) for this step; it is read back to the
    /// host with the loss.
    pub fn measure(&mut self, value: &StepValue, number: Tensor<B, 1>) {
        self.measured[value.slot()] = Some(number);
    }
}

/// One step's result, read back to the host for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// `None` on the training steps whose loss stayed on the device.
    pub loss: Option<f64>,
    pub tokens: usize,
    pub split: Split,
    pub exact_match: Option<f64>,
    /// Every step value (the loss included), where read and measured.
    pub measured: PerValue<Option<f64>>,
}

impl StepStats {
    /// This step's `value`, where read and measured.
    pub fn value(&self, value: &StepValue) -> Option<f64> {
        self.measured[value.slot()]
    }
}

impl<B: Backend> ItemLazy for StepOutput<B> {
    type ItemSync = StepStats;

    fn sync(self) -> StepStats {
        let read = self.read;
        let loss = read.then(|| self.loss.into_scalar().elem());
        let mut measured = self
            .measured
            .map(|m| m.filter(|_| read).map(|m| m.into_scalar().elem()));
        measured[LOSS.slot()] = loss;
        StepStats {
            loss,
            tokens: self.tokens,
            split: self.split,
            exact_match: self.exact_match.map(|e| e.into_scalar().elem()),
            measured,
        }
    }
}

impl Adaptor<StepStats> for StepStats {
    fn adapt(&self) -> StepStats {
        *self
    }
}

/// How a metric reads its value off a step's stats.
type Read = Arc<dyn Fn(&StepStats) -> Option<f64> + Send + Sync>;

/// Mean of one per-batch value over the batches of one split (or of every batch when
/// `split` is `None`). Batches of the other split, or without the value, leave it
/// unchanged, so during evaluation `train_loss` and `val_loss` each average only their own
/// `eval_iters` batches.
#[derive(Clone)]
pub struct SplitMean {
    name: MetricName,
    split: Option<Split>,
    value: Read,
    higher_is_better: bool,
    precision: usize,
    state: NumericMetricState,
    last: Option<SerializedEntry>,
}

impl SplitMean {
    /// A declared step value, over the training steps.
    pub fn step(value: &'static StepValue) -> Self {
        Self {
            precision: value.precision,
            ..Self::new(value.name, None, move |s| s.value(value), false)
        }
    }

    /// The evaluation loss on one split (`train_loss` / `val_loss`).
    pub fn loss_of(split: Split) -> Self {
        let name = match split {
            Split::Train => names::TRAIN_LOSS,
            Split::Val => names::VAL_LOSS,
        };
        Self::new(name, Some(split), |s| s.loss, false)
    }

    /// The share of held-out problems answered exactly (`exact_match`).
    pub fn exact_match() -> Self {
        Self::new(
            names::EXACT_MATCH,
            Some(Split::Val),
            |s| s.exact_match,
            true,
        )
    }

    fn new(
        name: &str,
        split: Option<Split>,
        value: impl Fn(&StepStats) -> Option<f64> + Send + Sync + 'static,
        higher_is_better: bool,
    ) -> Self {
        Self {
            name: Arc::new(name.to_string()),
            split,
            value: Arc::new(value),
            higher_is_better,
            precision: 4,
            state: NumericMetricState::new(),
            last: None,
        }
    }
}

impl Metric for SplitMean {
    type Input = StepStats;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(&mut self, item: &StepStats, _: &MetricMetadata) -> SerializedEntry {
        let value = (self.value)(item).filter(|_| self.split.is_none_or(|s| s == item.split));
        if let Some(value) = value {
            let format = FormatOptions::new(self.name()).precision(self.precision);
            let entry = self.state.update(value, 1, format);
            let (p, mean) = (self.precision, self.state.running_value().current());
            // The dashboard's words: burn-train's would say "epoch" for an interval.
            let shown = match self.split {
                None => format!("{value:.p$} (mean since the last evaluation {mean:.p$})"),
                Some(_) => format!("{mean:.p$} (mean of the batches so far)"),
            };
            self.last = Some(SerializedEntry::new(shown, entry.serialized));
        }
        self.last
            .clone()
            .unwrap_or_else(|| SerializedEntry::new("-".into(), "NaN".into()))
    }

    fn clear(&mut self) {
        self.state.reset();
        self.last = None;
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: self.higher_is_better,
        }
        .into()
    }
}

impl Numeric for SplitMean {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

/// Training throughput: tokens per second of wall time between consecutive steps.
#[derive(Clone)]
pub struct TokensPerSecond {
    name: MetricName,
    state: NumericMetricState,
    last: Option<Instant>,
}

impl Default for TokensPerSecond {
    fn default() -> Self {
        Self {
            name: Arc::new(names::TOKENS_PER_S.into()),
            state: NumericMetricState::new(),
            last: None,
        }
    }
}

impl Metric for TokensPerSecond {
    type Input = StepStats;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(&mut self, item: &StepStats, _: &MetricMetadata) -> SerializedEntry {
        let now = Instant::now();
        let format = FormatOptions::new(self.name()).unit("tok/s").precision(0);
        let rate = match self.last.replace(now) {
            Some(prev) => item.tokens as f64 / now.duration_since(prev).as_secs_f64().max(1e-9),
            None => 0.0, // no interval yet
        };
        self.state.update(rate, 1, format)
    }

    fn clear(&mut self) {
        self.state.reset();
        self.last = None;
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: Some("tok/s".into()),
            higher_is_better: true,
        }
        .into()
    }
}

impl Numeric for TokensPerSecond {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

/// Perplexity as Burn's `PerplexityMetric` defines it: exp of the mean loss per token
/// (not the mean of each batch's exp(loss), which over-weights bad batches). The value is
/// the current batch's, the running value the epoch's so far.
#[derive(Clone)]
pub struct Perplexity {
    name: MetricName,
    /// Σ loss × tokens and Σ tokens over the epoch so far.
    sum_nll: f64,
    tokens: usize,
    current: f64,
}

impl Default for Perplexity {
    fn default() -> Self {
        Self {
            name: Arc::new(names::PERPLEXITY.into()),
            sum_nll: 0.0,
            tokens: 0,
            current: f64::NAN,
        }
    }
}

impl Perplexity {
    /// Steps whose loss stayed on the device are left out.
    fn add(&mut self, item: &StepStats) {
        if let Some(loss) = item.loss {
            self.sum_nll += loss * item.tokens as f64;
            self.tokens += item.tokens;
            self.current = loss.exp();
        }
    }

    fn epoch_value(&self) -> f64 {
        (self.sum_nll / self.tokens.max(1) as f64).exp()
    }
}

impl Metric for Perplexity {
    type Input = StepStats;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(&mut self, item: &StepStats, _: &MetricMetadata) -> SerializedEntry {
        self.add(item);
        let epoch = self.epoch_value();
        let serialized = NumericEntry::Aggregated {
            aggregated_value: epoch,
            count: self.tokens,
        }
        .serialize();
        SerializedEntry::new(
            format!("epoch {epoch:.2} - batch {:.2}", self.current),
            serialized,
        )
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: false,
        }
        .into()
    }
}

impl Numeric for Perplexity {
    fn value(&self) -> NumericEntry {
        NumericEntry::Value(self.current)
    }

    fn running_value(&self) -> NumericEntry {
        NumericEntry::Aggregated {
            aggregated_value: self.epoch_value(),
            count: self.tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perplexity_is_exp_of_the_mean_loss() {
        let mut p = Perplexity::default();
        for loss in [1.0, 3.0] {
            p.add(&StepStats {
                loss: Some(loss),
                tokens: 10,
                split: Split::Train,
                exact_match: None,
                measured: Default::default(),
            });
        }
        let NumericEntry::Aggregated {
            aggregated_value, ..
        } = p.running_value()
        else {
            panic!("an epoch value")
        };
        // exp(mean) = e², not the mean of e¹ and e³.
        assert!((aggregated_value - 2f64.exp()).abs() < 1e-9);
        assert!(matches!(p.value(), NumericEntry::Value(v) if (v - 3f64.exp()).abs() < 1e-9));
    }
}
