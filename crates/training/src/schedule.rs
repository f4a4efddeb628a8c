//! The learning-rate schedule: nanoGPT's `get_lr` — linear warmup, cosine decay to
//! `min_lr`, then flat — or warmup–stable–decay, or the lecture's constant rate.
//!
//! Warmup–stable–decay ("trapezoidal"; Zhai et al. 2022, MiniCPM, modded-nanogpt and
//! nanochat) holds the peak rate after the warmup and decays in a straight line over the
//! last `warmdown_iters` only. The cosine spends most of a run below its peak; the
//! trapezoid trains at the peak for longer and gets the loss drop of annealing at the end
//! all the same.

use crate::RunConfig;
use burn::optim::lr_scheduler::LrScheduler;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The shape of the decay after the warmup (`lr_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Cosine from the peak to `min_lr` over warmup_iters..lr_decay_iters (nanoGPT's).
    #[default]
    Cosine,
    /// Peak until `warmdown_iters` before lr_decay_iters, then linear to `min_lr`.
    Wsd,
}

/// Counts optimizer steps, whatever the training strategy. burn-train steps a scheduler
/// once per iteration on one device, but `devices` times per optimizer step under its DDP
/// strategy (once per device's batch); `calls_per_step` undoes that, so iteration i has
/// nanoGPT's `get_lr(i)` either way. Its record is the iteration count, so a resumed run
/// continues the schedule exactly where it stopped, on any number of devices.
#[derive(Debug, Clone, PartialEq)]
pub struct NanoGptSchedule {
    learning_rate: f64,
    min_lr: f64,
    warmup_iters: usize,
    lr_decay_iters: usize,
    decay: bool,
    shape: LrSchedule,
    warmdown_iters: usize,
    /// `step` calls so far; the iteration is calls / calls_per_step.
    calls: usize,
    calls_per_step: usize,
}

impl NanoGptSchedule {
    pub fn new(config: &RunConfig) -> Self {
        let t = &config.train;
        Self {
            learning_rate: t.learning_rate,
            min_lr: t.min_lr,
            warmup_iters: t.warmup_iters,
            lr_decay_iters: config.lr_decay_iters(),
            decay: t.decay_lr,
            shape: t.lr_schedule,
            warmdown_iters: t.warmdown_iters,
            calls: 0,
            calls_per_step: 1,
        }
    }

    /// For burn-train's DDP over `devices` devices, which steps the scheduler that many
    /// times per optimizer step.
    pub fn with_calls_per_step(self, devices: usize) -> Self {
        Self {
            calls_per_step: devices.max(1),
            ..self
        }
    }

    /// Iterations (optimizer steps) stepped so far.
    pub fn iter(&self) -> usize {
        self.calls / self.calls_per_step
    }

    /// The learning rate of iteration `it` (0-based); with the cosine, nanoGPT's
    /// `get_lr(it)`.
    pub fn lr_at(&self, it: usize) -> f64 {
        if !self.decay {
            return self.learning_rate;
        }
        if it < self.warmup_iters {
            return self.learning_rate * (it + 1) as f64 / (self.warmup_iters + 1) as f64;
        }
        if it > self.lr_decay_iters {
            return self.min_lr;
        }
        if self.shape == LrSchedule::Wsd {
            let start = self.lr_decay_iters.saturating_sub(self.warmdown_iters);
            if it < start {
                return self.learning_rate;
            }
            let left = (self.lr_decay_iters - it) as f64 / self.warmdown_iters.max(1) as f64; // 1 → 0
            return self.min_lr + left * (self.learning_rate - self.min_lr);
        }
        let span = self.lr_decay_iters.saturating_sub(self.warmup_iters).max(1);
        let ratio = (it - self.warmup_iters) as f64 / span as f64;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos()); // 1 → 0
        self.min_lr + coeff * (self.learning_rate - self.min_lr)
    }
}

impl LrScheduler for NanoGptSchedule {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> f64 {
        let lr = self.lr_at(self.iter());
        self.calls += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.iter()
    }

    fn load_record<B: Backend>(mut self, iter: usize) -> Self {
        self.calls = iter * self.calls_per_step;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(decay: bool) -> NanoGptSchedule {
        let mut c = RunConfig::default();
        c.train.learning_rate = 1e-3;
        c.train.min_lr = 1e-4;
        c.train.warmup_iters = 100;
        c.train.max_iters = 2000;
        c.train.decay_lr = decay;
        NanoGptSchedule::new(&c)
    }

    #[test]
    fn warmup_cosine_floor() {
        let s = schedule(true);
        assert!((s.lr_at(0) - 1e-3 / 101.0).abs() < 1e-12);
        assert!((s.lr_at(99) - 1e-3 * 100.0 / 101.0).abs() < 1e-12);
        assert!((s.lr_at(100) - 1e-3).abs() < 1e-12); // cosine starts at the peak
        assert!((s.lr_at(1050) - 5.5e-4).abs() < 1e-9); // halfway: midpoint of peak and floor
        assert!((s.lr_at(2000) - 1e-4).abs() < 1e-12);
        assert_eq!(s.lr_at(5000), 1e-4);
        assert!((1..2000).all(|i| s.lr_at(i + 100) <= s.lr_at(i + 99) + 1e-15));
    }

    /// The trapezoid: the same warmup, the peak held until warmdown_iters before the
    /// end, then a straight line to min_lr, and min_lr after.
    #[test]
    fn warmup_stable_decay() {
        let mut c = RunConfig::default();
        c.train.learning_rate = 1e-3;
        c.train.min_lr = 1e-4;
        c.train.warmup_iters = 100;
        c.train.max_iters = 2000;
        c.train.decay_lr = true;
        c.train.lr_schedule = LrSchedule::Wsd;
        c.train.warmdown_iters = 400;
        c.validate().unwrap();
        let s = NanoGptSchedule::new(&c);
        let cosine = schedule(true);
        for it in [0, 50, 99] {
            assert_eq!(s.lr_at(it), cosine.lr_at(it), "the warmup is the cosine's");
        }
        assert!((100..1600).all(|it| s.lr_at(it) == 1e-3));
        assert!((s.lr_at(1600) - 1e-3).abs() < 1e-15);
        assert!((s.lr_at(1800) - 5.5e-4).abs() < 1e-12); // halfway down the line
        assert!((s.lr_at(2000) - 1e-4).abs() < 1e-12);
        assert_eq!(s.lr_at(3000), 1e-4);
        let down: Vec<f64> = (1600..=2000).map(|it| s.lr_at(it)).collect();
        let steps: Vec<f64> = down.windows(2).map(|w| w[0] - w[1]).collect();
        assert!(
            steps.iter().all(|d| (d - 9e-4 / 400.0).abs() < 1e-15),
            "a straight line"
        );
        // A warmdown that does not fit is one clear error.
        c.train.warmdown_iters = 1950;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("warmdown_iters"), "{err}");
        c.train.warmdown_iters = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn constant_when_not_decaying() {
        let s = schedule(false);
        assert_eq!(s.lr_at(0), 1e-3);
        assert_eq!(s.lr_at(1999), 1e-3);
    }

    #[test]
    fn record_resumes_the_schedule() {
        let mut a = schedule(true);
        for _ in 0..150 {
            a.step();
        }
        let b =
            schedule(true).load_record::<burn::backend::Flex>(a.to_record::<burn::backend::Flex>());
        assert_eq!(b.iter(), 150);
        assert_eq!(a.clone().step(), b.clone().step());
    }

    /// burn-train's DDP steps the scheduler once per device for every optimizer step:
    /// with `with_calls_per_step(devices)` the learning rate the optimizer sees at each
    /// step is the one-device schedule's, and the record counts optimizer steps, so a run
    /// resumes on any number of devices at the same point of the schedule.
    #[test]
    fn the_schedule_counts_optimizer_steps_on_any_number_of_devices() {
        let mut one = schedule(true);
        let one_lrs: Vec<f64> = (0..300).map(|_| one.step()).collect();
        for devices in [2, 3, 8] {
            let mut ddp = schedule(true).with_calls_per_step(devices);
            let lrs: Vec<f64> = (0..300)
                .map(|_| (0..devices).map(|_| ddp.step()).last().unwrap())
                .collect();
            assert_eq!(lrs, one_lrs, "{devices} devices");
            let record = ddp.to_record::<burn::backend::Flex>();
            assert_eq!(record, 300);
            let resumed = schedule(true).load_record::<burn::backend::Flex>(record);
            assert_eq!(resumed.clone().step(), one.clone().step());
            let on_two = schedule(true)
                .with_calls_per_step(2)
                .load_record::<burn::backend::Flex>(record);
            assert_eq!(on_two.iter(), 300);
        }
    }
}
