//! The training objective: cross-entropy of the next token, averaged over every position
//! (text), or over the scored positions only (a problem's answer, not its prompt); and
//! reinforcement learning's policy-gradient loss on answers the model sampled itself.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Mean negative log-likelihood of `targets` (B, T) under `logits` (B, T, V), as
/// `F.cross_entropy(logits.view(B*T, V), targets.view(B*T))` in the lecture.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    token_losses(logits, targets).mean()
}

/// Mean negative log-likelihood over the positions where `scored` (B, T) is true, as
/// PyTorch's `ignore_index` does for the others (minGPT's adder trains on the answer only
/// this way). `None` scores every position: [`cross_entropy`].
pub fn masked_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    scored: Option<Tensor<B, 2, Bool>>,
) -> Tensor<B, 1> {
    let Some(scored) = scored else {
        return cross_entropy(logits, targets);
    };
    let [b, t] = scored.dims();
    let weights = scored.float().reshape([b * t]);
    // At least 1, so a batch with nothing scored has loss 0 rather than 0/0.
    let count = weights.clone().sum().clamp_min(1.0);
    (token_losses(logits, targets) * weights).sum() / count
}

/// REINFORCE's loss on sampled answers: minus the mean over the scored positions of
/// `advantage × log p(sampled token)`, each row (one sample) weighted by its advantage (B)
/// (its reward minus the mean reward of its problem's samples; see `training::rl`).
///
/// Its gradient raises the log-probability of every token of an answer that did better
/// than its group and lowers it for one that did worse, in proportion to the difference:
/// for logits z of one position, `∂/∂z = -A (onehot(token) - softmax(z)) / n`. Averaged
/// over the scored tokens of the whole batch (`count`, at least 1), as nanochat's RL
/// step does, so a micro-batch passes the total.
pub fn policy_gradient_loss<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    scored: Tensor<B, 2, Bool>,
    advantages: Tensor<B, 1>,
    count: usize,
) -> Tensor<B, 1> {
    let [b, t] = scored.dims();
    let weights = scored.float() * advantages.reshape([b, 1]); // (B, T)
    (token_losses(logits, targets) * weights.reshape([b * t])).sum() / count.max(1) as f64
}

/// The negative log-likelihood of each target, flattened to (B*T).
fn token_losses<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [b, t, v] = logits.dims();
    let log_probs = log_softmax(logits.reshape([b * t, v]), 1); // (B*T, V)
    let picked = log_probs.gather(1, targets.reshape([b * t, 1])); // (B*T, 1)
    picked.reshape([b * t]).neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TestBackend as B;

    /// ln(1 + 2·e^-20): the loss of a confident right answer among 3 tokens.
    fn confident() -> f32 {
        -(20f32.exp() / (20f32.exp() + 2.0)).ln()
    }

    #[test]
    fn matches_hand_computation() {
        let device = Default::default();
        // Two positions, vocabulary 3: uniform logits give ln 3; a confident right answer ≈ 0.
        let logits = Tensor::<B, 3>::from_data([[[0.0, 0.0, 0.0], [0.0, 20.0, 0.0]]], &device);
        let targets = Tensor::<B, 2, Int>::from_data([[2, 1]], &device);
        let loss: f32 = cross_entropy(logits, targets).into_scalar();
        let expected = (3f32.ln() + confident()) / 2.0;
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    }

    #[test]
    fn masked_loss_averages_the_scored_positions_only() {
        let device = Default::default();
        // Three positions: uniform (ln 3), confident and right (≈ 0), confident and wrong
        // (≈ 20). Masking the wrong one leaves the mean of the first two.
        let logits = Tensor::<B, 3>::from_data(
            [[[0.0, 0.0, 0.0], [0.0, 20.0, 0.0], [0.0, 20.0, 0.0]]],
            &device,
        );
        let targets = Tensor::<B, 2, Int>::from_data([[2, 1, 0]], &device);
        let loss = |mask: Option<[[bool; 3]; 1]>| -> f32 {
            let mask = mask.map(|m| Tensor::<B, 2, Bool>::from_bool(m.into(), &device));
            masked_cross_entropy(logits.clone(), targets.clone(), mask).into_scalar()
        };
        let expected = (3f32.ln() + confident()) / 2.0;
        let got = loss(Some([[true, true, false]]));
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        // One scored position: its own loss.
        let got = loss(Some([[true, false, false]]));
        assert!((got - 3f32.ln()).abs() < 1e-5, "{got}");
        // No mask: every position, as cross_entropy.
        let wrong = 20.0 + confident();
        let expected = (3f32.ln() + confident() + wrong) / 3.0;
        let got = loss(None);
        assert!((got - expected).abs() < 1e-4, "{got} vs {expected}");
        assert_eq!(loss(Some([[false; 3]])), 0.0);
    }

    /// The gradient of the policy-gradient loss with respect to the logits is
    /// `-A (onehot(token) - softmax(z)) / n` at each scored position, 0 elsewhere.
    #[test]
    fn policy_gradient_matches_hand_computed_gradient() {
        use crate::test_util::TestAutodiff as A;
        let device = Default::default();
        let z = [
            [[0.5f32, -1.0, 2.0], [0.0, 0.3, -0.2]],
            [[1.0, 1.0, 0.0], [-0.7, 0.1, 0.4]],
        ];
        let logits = Tensor::<A, 3>::from_data(z, &device).require_grad();
        let targets = Tensor::<A, 2, Int>::from_data([[2, 0], [1, 1]], &device);
        let scored = Tensor::<A, 2, Bool>::from_bool([[false, true], [true, true]].into(), &device);
        let advantages = Tensor::<A, 1>::from_data([0.5f32, -0.25], &device);
        let loss = policy_gradient_loss(logits.clone(), targets, scored, advantages, 3);
        let grads = loss.backward();
        let got: Vec<f32> = logits.grad(&grads).unwrap().into_data().to_vec().unwrap();
        let (tokens, mask, adv) = ([[2, 0], [1, 1]], [[0.0, 1.0], [1.0, 1.0]], [0.5, -0.25]);
        let mut expected = Vec::new();
        for b in 0..2 {
            for t in 0..2 {
                let exp: Vec<f32> = z[b][t].iter().map(|x| x.exp()).collect();
                let sum: f32 = exp.iter().sum();
                for (v, e) in exp.iter().enumerate() {
                    let onehot = if v == tokens[b][t] { 1.0 } else { 0.0 };
                    expected.push(-adv[b] * mask[b][t] * (onehot - e / sum) / 3.0);
                }
            }
        }
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-6, "{got:?} vs {expected:?}");
        }
        // The loss itself: -Σ A·log p over the scored positions, over 3.
        let log_p = |b: usize, t: usize| {
            let sum: f32 = z[b][t].iter().map(|x| x.exp()).sum();
            z[b][t][tokens[b][t]] - sum.ln()
        };
        let want = -(0.5 * log_p(0, 1) - 0.25 * (log_p(1, 0) + log_p(1, 1))) / 3.0;
        let loss: f32 = loss.into_scalar().elem();
        assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
    }
}
