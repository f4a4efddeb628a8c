//! The values a training step logs, declared once.
//!
//! Each [`StepValue`] in [`STEP_VALUES`] is, from its declaration alone: a metric on the
//! dashboard (the mean since the last evaluation, and the latest batch's), a column of
//! `train_log.csv` (its value every `log_interval` iterations), a number in `gpt info`
//! and a curve in `gpt plot`. The step produces it with
//! [`StepOutput::measure`](crate::metrics::StepOutput::measure); nothing else names it.
//!
//! A new value is appended at the end of the list: `train_log.csv`'s columns follow the
//! list's order, so a file whose rows end before the new column reads too (the value
//! absent there).

/// One value a training step reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepValue {
    /// Its name: the dashboard's metric, the `train_log.csv` column, the key of
    /// `gpt info --json`. No `/` (burn-train makes a file of each metric's name).
    pub name: &'static str,
    /// What it is, in words, for `gpt info` and `gpt plot`.
    pub about: &'static str,
    /// Digits after the point on the dashboard and in `gpt info`.
    pub precision: usize,
    /// Where `gpt plot` draws it.
    pub plot: Plot,
}

/// Where `gpt plot` draws a step value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plot {
    /// As the thin line under the evaluation points of the loss chart.
    OnLossChart,
    /// On a chart of its own, beside the learning rate's.
    OwnChart,
}

/// The loss of the step's batch, as nanoGPT prints it every `log_interval` iterations.
pub const LOSS: StepValue = StepValue {
    name: "loss",
    about: "train batch loss",
    precision: 4,
    plot: Plot::OnLossChart,
};

/// The global L2 norm of all gradients before clipping (under data parallel, of the
/// ranks' average: what the clipping sees), as nanoGPT and nanochat log it: a spike
/// shows an unstable step before the loss does, and it says how often `grad_clip` bites.
pub const GRAD_NORM: StepValue = StepValue {
    name: "grad_norm",
    about: "gradient norm before clipping",
    precision: 4,
    plot: Plot::OwnChart,
};

/// Reinforcement learning's mean reward over the step's sampled answers (see `rl`): the
/// number it exists to raise.
pub const REWARD: StepValue = StepValue {
    name: "reward",
    about: "mean reward of the sampled answers",
    precision: 4,
    plot: Plot::OwnChart,
};

/// Reinforcement learning's pass@k: the share of the step's problems with at least one
/// of their k sampled answers right. Above the mean reward, it is what sampling more
/// would find, and so how much room the step has to learn from.
pub const PASS_AT_K: StepValue = StepValue {
    name: "pass_at_k",
    about: "share of problems with a right answer among their samples",
    precision: 4,
    plot: Plot::OwnChart,
};

/// Every step value, in `train_log.csv`'s column order; append only.
pub const STEP_VALUES: &[StepValue] = &[LOSS, GRAD_NORM, REWARD, PASS_AT_K];

/// The step values only reinforcement learning measures: a supervised run leaves them
/// out of its dashboard and log lines.
pub const RL_VALUES: &[StepValue] = &[REWARD, PASS_AT_K];

/// One number per step value, in the order of [`STEP_VALUES`].
pub type PerValue<T> = [T; STEP_VALUES.len()];

impl StepValue {
    /// Its place in [`STEP_VALUES`].
    pub fn slot(&self) -> usize {
        STEP_VALUES
            .iter()
            .position(|v| v.name == self.name)
            .expect("every StepValue is declared in STEP_VALUES")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names are unique (they are columns and metric file names) and file-safe.
    #[test]
    fn names_are_unique_columns() {
        for (i, v) in STEP_VALUES.iter().enumerate() {
            assert_eq!(v.slot(), i, "{} declared twice", v.name);
            assert!(
                !v.name.is_empty() && !v.name.contains(['/', ',']),
                "{}",
                v.name
            );
        }
        assert_eq!(
            STEP_VALUES[0], LOSS,
            "the loss is train_log.csv's first value"
        );
    }
}
