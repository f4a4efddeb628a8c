//! The learning-rate schedule: nanoGPT's `get_lr` — linear warmup, cosine decay to
//! `min_lr`, then flat — or the lecture's constant rate.

use crate::RunConfig;
use burn::optim::lr_scheduler::LrScheduler;
use burn::prelude::*;

/// Steps once per training iteration. Its record is the iteration count, so a resumed run
/// continues the schedule exactly where it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct NanoGptSchedule {
    learning_rate: f64,
    min_lr: f64,
    warmup_iters: usize,
    lr_decay_iters: usize,
    decay: bool,
    iter: usize,
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
            iter: 0,
        }
    }

    /// Iterations stepped so far.
    pub fn iter(&self) -> usize {
        self.iter
    }

    /// The learning rate of iteration `it` (0-based), as nanoGPT's `get_lr(it)`.
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
        let span = self.lr_decay_iters.saturating_sub(self.warmup_iters).max(1);
        let ratio = (it - self.warmup_iters) as f64 / span as f64;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos()); // 1 → 0
        self.min_lr + coeff * (self.learning_rate - self.min_lr)
    }
}

impl LrScheduler for NanoGptSchedule {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> f64 {
        let lr = self.lr_at(self.iter);
        self.iter += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.iter
    }

    fn load_record<B: Backend>(mut self, iter: usize) -> Self {
        self.iter = iter;
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
}
