//! The training objective: cross-entropy of the next token, averaged over every position.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Mean negative log-likelihood of `targets` (B, T) under `logits` (B, T, V), as
/// `F.cross_entropy(logits.view(B*T, V), targets.view(B*T))` in the lecture.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [b, t, v] = logits.dims();
    let log_probs = log_softmax(logits.reshape([b * t, v]), 1); // (B*T, V)
    let picked = log_probs.gather(1, targets.reshape([b * t, 1])); // (B*T, 1)
    picked.mean().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TestBackend as B;

    #[test]
    fn matches_hand_computation() {
        let device = Default::default();
        // Two positions, vocabulary 3: uniform logits give ln 3; a confident right answer ≈ 0.
        let logits = Tensor::<B, 3>::from_data([[[0.0, 0.0, 0.0], [0.0, 20.0, 0.0]]], &device);
        let targets = Tensor::<B, 2, Int>::from_data([[2, 1]], &device);
        let loss: f32 = cross_entropy(logits, targets).into_scalar();
        let expected = (3f32.ln() + (-(20f32.exp() / (20f32.exp() + 2.0)).ln())) / 2.0;
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    }
}
