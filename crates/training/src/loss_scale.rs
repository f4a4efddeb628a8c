//! Dynamic loss scaling for float16 training (PyTorch's `GradScaler`, with its defaults).
//!
//! float16's smallest normal number is 6e-5: the gradients of a language model are often
//! smaller and would round to zero in the float16 backward pass. Multiplying the loss by a
//! large scale S before `backward` multiplies every gradient by S too, lifting them into
//! range; dividing by S afterwards (in f32, on the master gradients) gives the true ones.
//! Too large an S overflows to infinity instead, so the scale adapts: a step whose
//! gradients are not finite is skipped and S halves; after 2000 good steps in a row S
//! doubles, probing for the largest scale that does not overflow. bfloat16 has f32's
//! range and needs none of this.

use std::sync::Mutex;

/// The current scale and the run of good steps since it last changed.
#[derive(Debug)]
pub struct LossScaler {
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    scale: f64,
    good_steps: usize,
    skipped: usize,
}

impl LossScaler {
    /// PyTorch's `init_scale`.
    pub const INIT_SCALE: f64 = 65536.0;
    /// Good steps before the scale doubles (PyTorch's `growth_interval`).
    pub const GROWTH_INTERVAL: usize = 2000;

    pub fn new() -> Self {
        Self::starting_at(Self::INIT_SCALE)
    }

    /// A scaler whose first scale is `scale`.
    pub fn starting_at(scale: f64) -> Self {
        Self {
            state: Mutex::new(State {
                scale,
                good_steps: 0,
                skipped: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two numbers updated in one place: a panic elsewhere cannot leave
        // it half-written, so a poisoned lock still holds a valid state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The factor this step's loss is multiplied by before `backward`.
    pub fn scale(&self) -> f64 {
        self.state().scale
    }

    /// Records a step whose unscaled gradients were `finite` or not; returns whether the
    /// optimizer may apply them.
    pub fn update(&self, finite: bool) -> bool {
        let mut s = self.state();
        if finite {
            s.good_steps += 1;
            if s.good_steps == Self::GROWTH_INTERVAL {
                s.scale *= 2.0;
                s.good_steps = 0;
            }
        } else {
            // Never below 1: a gradient that overflows unscaled is a divergence, which the
            // loss check reports.
            s.scale = (s.scale / 2.0).max(1.0);
            s.good_steps = 0;
            s.skipped += 1;
        }
        finite
    }

    /// Steps skipped because their gradients overflowed.
    pub fn skipped(&self) -> usize {
        self.state().skipped
    }
}

impl Default for LossScaler {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_overflow_and_doubles_after_a_run_of_good_steps() {
        let s = LossScaler::new();
        assert!(!s.update(false));
        assert_eq!(s.scale(), LossScaler::INIT_SCALE / 2.0);
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            assert!(s.update(true));
        }
        assert_eq!(s.scale(), LossScaler::INIT_SCALE / 2.0);
        s.update(true);
        assert_eq!(s.scale(), LossScaler::INIT_SCALE);
        // An overflow restarts the count.
        for _ in 0..10 {
            s.update(true);
        }
        s.update(false);
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            s.update(true);
        }
        assert_eq!(s.scale(), LossScaler::INIT_SCALE / 2.0);
        assert_eq!(s.skipped(), 2);
        for _ in 0..100 {
            s.update(false);
        }
        assert_eq!(s.scale(), 1.0);
    }
}
