//! The lecture's six notes on attention, each stated as a test on a [`Head`].
//!
//! The heads use unit-scale weights ([`Head::unit_scale`]) so that their attention is far
//! from uniform and every "changes" or "does not change" below is a real contrast.

use super::{Head, scaled_scores};
use crate::test_util::TestBackend as B;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::softmax;

const C: usize = 16;
const HS: usize = 8;

fn head() -> Head<B> {
    Head::unit_scale(C, HS, &Default::default())
}

fn random(shape: [usize; 3]) -> Tensor<B, 3> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

fn max_diff(a: Tensor<B, 3>, b: Tensor<B, 3>) -> f32 {
    (a - b).abs().max().into_scalar()
}

fn assert_same(a: Tensor<B, 3>, b: Tensor<B, 3>) {
    a.into_data()
        .assert_approx_eq::<f32>(&b.into_data(), Default::default());
}

/// Note 1, attention is communication: tokens are nodes of a directed graph, and each
/// gathers a data-dependent weighted sum from the nodes that point to it. Each output is
/// a convex combination of value vectors: weights ≥ 0, summing to 1 over the allowed
/// positions, exactly 0 on the masked ones.
#[test]
fn note1_attention_is_communication() {
    let (head, t) = (head(), 6);
    let x = random([2, t, C]);
    let wei = head.weights(x.clone()); // (2, T, T)
    let w: Vec<f32> = wei.clone().into_data().to_vec().unwrap();
    for (i, &weight) in w.iter().enumerate() {
        let (row, col) = ((i / t) % t, i % t);
        if col > row {
            assert_eq!(weight, 0.0, "future position {col} seen from {row}");
        } else {
            assert!(weight > 0.0, "past position {col} ignored by {row}");
        }
    }
    let sums: Vec<f32> = wei.clone().sum_dim(2).into_data().to_vec().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    let values = head.value.forward(x.clone()); // (2, T, hs)
    assert_same(head.forward(x), wei.matmul(values));
}

/// Note 2, attention works on sets: it has no notion of space. Without position
/// embeddings, permuting the tokens of an (unmasked) encoder head permutes its outputs in
/// the same way and changes nothing else. That is why the GPT adds position embeddings.
#[test]
fn note2_attention_works_on_sets() {
    let head = head();
    let x = random([2, 6, C]);
    let perm = Tensor::<B, 1, Int>::from_data([3, 0, 5, 1, 4, 2], &Default::default());
    let permuted_out = head.forward_encoder(x.clone().select(1, perm.clone()));
    let out = head.forward_encoder(x);
    assert_same(permuted_out.clone(), out.clone().select(1, perm));
    // The outputs really moved: order is all the head cannot see.
    assert!(max_diff(permuted_out, out) > 1e-2);
}

/// Note 3, no communication across the batch: each sequence is its own graph. Changing
/// one sequence leaves the outputs of the others unchanged.
#[test]
fn note3_no_communication_across_the_batch() {
    let head = head();
    let x = random([3, 6, C]);
    let changed = x.clone().slice_assign(1..2, random([1, 6, C]));
    let (a, b) = (head.forward(x), head.forward(changed));
    for seq in [0..1, 2..3] {
        assert_same(a.clone().slice(seq.clone()), b.clone().slice(seq));
    }
    assert!(max_diff(a.slice(1..2), b.slice(1..2)) > 1e-2);
}

/// Note 4, encoder vs decoder: the same head with and without the causal mask. The
/// decoder's outputs up to t ignore the tokens after t (it will predict them); the
/// encoder's do not (every token hears the whole sequence).
#[test]
fn note4_encoder_vs_decoder() {
    let (head, t, len) = (head(), 2, 6);
    let x = random([2, len, C]);
    let changed = x
        .clone()
        .slice_assign([0..2, t + 1..len], random([2, len - t - 1, C]));
    let early = |y: Tensor<B, 3>| y.slice([0..2, 0..t + 1]);
    assert_same(
        early(head.forward(x.clone())),
        early(head.forward(changed.clone())),
    );
    let encoder_moved = max_diff(
        early(head.forward_encoder(x)),
        early(head.forward_encoder(changed)),
    );
    assert!(encoder_moved > 1e-2, "{encoder_moved}");
}

/// Note 5, self- vs cross-attention: in self-attention, queries, keys and values all come
/// from `x`; in cross-attention the keys and values come from another source, e.g. an
/// encoder's output of a different length. The output has one row per query, and it
/// listens to the source.
#[test]
fn note5_self_vs_cross_attention() {
    let head = head();
    let (x, source) = (random([2, 5, C]), random([2, 9, C]));
    let out = head.forward_cross(x.clone(), source);
    assert_eq!(out.dims(), [2, 5, HS]);
    let other_source = head.forward_cross(x.clone(), random([2, 9, C]));
    assert!(max_diff(out, other_source) > 1e-2);
    // Self-attention is cross-attention of a sequence with itself (unmasked: the encoder).
    assert_same(
        head.forward_cross(x.clone(), x.clone()),
        head.forward_encoder(x),
    );
}

/// Note 6, "scaled" attention: with unit-variance q and k, q·kᵀ has variance head_size,
/// and softmax of such large scores is nearly one-hot (each token would listen to one
/// other token only). Dividing by sqrt(head_size) brings the variance back to 1 and keeps
/// the weights diffuse at initialisation.
#[test]
fn note6_scaled_attention() {
    let head_size = 64;
    let q = random([256, 8, head_size]);
    let k = random([256, 8, head_size]);
    let unscaled = q.clone().matmul(k.clone().swap_dims(1, 2)); // (256, 8, 8)
    let scaled = scaled_scores(q, k);
    let var = |s: Tensor<B, 3>| -> f32 { s.reshape([-1]).var(0).into_scalar() };
    let (var_unscaled, var_scaled) = (var(unscaled.clone()), var(scaled.clone()));
    assert!(
        (var_unscaled / head_size as f32 - 1.0).abs() < 0.1,
        "var(q·k) = {var_unscaled}, expected ≈ {head_size}"
    );
    assert!(
        (var_scaled - 1.0).abs() < 0.1,
        "var(q·k/√hs) = {var_scaled}"
    );
    let peak = |s: Tensor<B, 3>| -> f32 { softmax(s, 2).max_dim(2).mean().into_scalar() };
    let (peak_unscaled, peak_scaled) = (peak(unscaled), peak(scaled));
    assert!(
        peak_unscaled > 0.8 && peak_scaled < 0.6,
        "mean max weight {peak_unscaled} unscaled vs {peak_scaled} scaled"
    );
}
