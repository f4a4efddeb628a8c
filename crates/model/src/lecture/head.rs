//! Version 4, the crux of the lecture: one head of self-attention. The average of the
//! past is no longer uniform; its weights come from the data.
//!
//! Every token emits a query ("what am I looking for?") and a key ("what do I contain?").
//! The dot product of t's query with s's key is how much t listens to s, and what t hears
//! is s's value. Key, query and value are one linear layer each, with no bias, as in the
//! lecture. The same head also runs as an encoder (no mask) and as cross-attention (keys
//! and values from another sequence): the lecture's notes 4 and 5.

use super::causal_softmax;
use crate::init::linear;
use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::softmax;

#[derive(Module, Debug)]
pub struct Head<B: Backend> {
    pub(super) key: Linear<B>,
    pub(super) query: Linear<B>,
    pub(super) value: Linear<B>,
    /// Randomly cuts some communication while training (the lecture's last chapter).
    dropout: Dropout,
}

impl<B: Backend> Head<B> {
    /// `n_embd → head_size` projections with GPT-2 initialisation, like the production model.
    pub fn new(n_embd: usize, head_size: usize, dropout: f64, device: &B::Device) -> Self {
        Self {
            key: linear(n_embd, head_size, false, device),
            query: linear(n_embd, head_size, false, device),
            value: linear(n_embd, head_size, false, device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// Random weights at unit scale: for unit-variance input, q, k and v have unit variance
    /// (PyTorch's default `nn.Linear` init, which the lecture uses, is of this order). The
    /// weights then visibly depend on the data; GPT-2's N(0, 0.02) starts out near uniform.
    pub fn unit_scale(n_embd: usize, head_size: usize, device: &B::Device) -> Self {
        let w = || {
            let std = (n_embd as f64).powf(-0.5);
            Tensor::random([n_embd, head_size], Distribution::Normal(0.0, std), device)
        };
        Self::from_weights(w(), w(), w(), 0.0)
    }

    /// A head with given (n_embd, head_size) projection matrices, laid out `[in, out]`
    /// like Burn's `Linear`, e.g. one head's columns of the batched layer.
    pub fn from_weights(
        key: Tensor<B, 2>,
        query: Tensor<B, 2>,
        value: Tensor<B, 2>,
        dropout: f64,
    ) -> Self {
        let layer = |weight| Linear {
            weight: Param::from_tensor(weight),
            bias: None,
        };
        Self {
            key: layer(key),
            query: layer(query),
            value: layer(value),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// Decoder self-attention, the lecture's `Head.forward`: `x` (B, T, C) → (B, T,
    /// head_size), where token t hears only tokens ≤ t.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let wei = self.weights(x.clone());
        self.aggregate(wei, x)
    }

    /// Encoder self-attention: the same head without the mask, so every token hears every
    /// other, past and future (e.g. to classify a whole sentence).
    pub fn forward_encoder(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let wei = softmax(self.affinities(x.clone(), x.clone()), 2); // (B, T, T)
        self.aggregate(wei, x)
    }

    /// Cross-attention: queries from `x` (B, T, C), keys and values from another sequence
    /// `source` (B, S, C), e.g. an encoder's output → (B, T, head_size).
    pub fn forward_cross(&self, x: Tensor<B, 3>, source: Tensor<B, 3>) -> Tensor<B, 3> {
        let wei = softmax(self.affinities(x, source.clone()), 2); // (B, T, S)
        self.aggregate(wei, source)
    }

    /// The decoder's attention weights, `x` (B, T, C) → (B, T, T): row t says how much
    /// token t listens to each token ≤ t.
    pub fn weights(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        causal_softmax(self.affinities(x.clone(), x))
    }

    /// How well each query of `x` (B, T, C) matches each key of `source` (B, S, C) → (B, T, S).
    fn affinities(&self, x: Tensor<B, 3>, source: Tensor<B, 3>) -> Tensor<B, 3> {
        let q = self.query.forward(x); // (B, T, hs)
        let k = self.key.forward(source); // (B, S, hs)
        scaled_scores(q, k)
    }

    /// The weighted sum of `source`'s values: `wei` (B, T, S) @ v (B, S, hs) → (B, T, hs).
    fn aggregate(&self, wei: Tensor<B, 3>, source: Tensor<B, 3>) -> Tensor<B, 3> {
        self.dropout.forward(wei).matmul(self.value.forward(source))
    }
}

/// `q` (B, T, hs) · `k` (B, S, hs)ᵀ / sqrt(hs) → (B, T, S).
///
/// Why 1/sqrt(head_size), not 1/sqrt(n_embd): q·k sums head_size products, so with
/// unit-variance q and k its variance is head_size. Unscaled, softmax would saturate
/// towards one-hot and each token would listen to a single other one from the start.
pub fn scaled_scores<B: Backend>(q: Tensor<B, 3>, k: Tensor<B, 3>) -> Tensor<B, 3> {
    let hs = q.dims()[2];
    q.matmul(k.swap_dims(1, 2)) / (hs as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TestBackend as B;

    fn random_x(shape: [usize; 3]) -> Tensor<B, 3> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    /// Changing the tokens after position t leaves v4's outputs up to t unchanged.
    #[test]
    fn v4_is_causal() {
        let head = Head::<B>::unit_scale(32, 16, &Default::default());
        let (t, len) = (4, 8);
        let x = random_x([2, len, 32]);
        let changed = x
            .clone()
            .slice_assign([0..2, t + 1..len], random_x([2, len - t - 1, 32]));
        let (a, b) = (head.forward(x), head.forward(changed));
        a.clone()
            .slice([0..2, 0..t + 1])
            .into_data()
            .assert_approx_eq::<f32>(
                &b.clone().slice([0..2, 0..t + 1]).into_data(),
                Default::default(),
            );
        // The changed positions themselves do move, so the comparison above can fail.
        let moved: f32 = (a - b).slice([0..2, t + 1..len]).abs().max().into_scalar();
        assert!(moved > 1e-3, "{moved}");
    }

    /// Unlike v3's fixed average, v4's weights change with the input.
    #[test]
    fn v4_weights_depend_on_the_data() {
        let head = Head::<B>::unit_scale(32, 16, &Default::default());
        let (a, b) = (random_x([1, 8, 32]), random_x([1, 8, 32]));
        let diff: f32 = (head.weights(a) - head.weights(b))
            .abs()
            .max()
            .into_scalar();
        assert!(diff > 0.05, "{diff}");
    }
}
