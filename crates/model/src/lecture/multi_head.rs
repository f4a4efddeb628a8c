//! Multi-head attention as the lecture first writes it: several heads side by side, each
//! run on its own, their outputs concatenated and mixed by a projection. Several smaller
//! channels of communication, each free to look for something different.
//!
//! The production [`CausalSelfAttention`] computes exactly this with all heads batched in
//! one matmul (the lecture's exercise 1); [`MultiHeadAttention::from_batched`] cuts its
//! weights into heads, and the test holds the two equal.

use super::Head;
use crate::GptConfig;
use crate::attention::CausalSelfAttention;
use crate::init::linear;
use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct MultiHeadAttention<B: Backend> {
    heads: Vec<Head<B>>,
    /// Mixes the concatenated heads back into the residual stream: n_head·head_size → n_embd.
    proj: Linear<B>,
    dropout: Dropout,
}

impl<B: Backend> MultiHeadAttention<B> {
    /// `n_head` heads of `head_size = n_embd / n_head`, so the concatenation is n_embd wide.
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        let (c, hs) = (config.n_embd, config.head_size());
        Self {
            heads: (0..config.n_head)
                .map(|_| Head::new(c, hs, config.dropout, device))
                .collect(),
            proj: linear(c, c, config.bias, device),
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    /// The same layer as `attn`, one head at a time: head h gets columns h·hs..(h+1)·hs of
    /// each of the batched layer's query, key and value blocks, and the projection is shared.
    pub fn from_batched(attn: &CausalSelfAttention<B>) -> Self {
        let w = attn.c_attn.weight.val(); // (C, 3C): [Wq | Wk | Wv]
        let [c, _] = w.dims();
        let hs = c / attn.n_head;
        let cols = |block: usize, h: usize| {
            let start = block * c + h * hs;
            w.clone().slice([0..c, start..start + hs]) // (C, hs)
        };
        Self {
            heads: (0..attn.n_head)
                .map(|h| {
                    Head::from_weights(cols(1, h), cols(0, h), cols(2, h), attn.attn_dropout.prob)
                })
                .collect(),
            proj: copy(&attn.c_proj),
            dropout: attn.resid_dropout.clone(),
        }
    }

    /// `x` (B, T, C) → (B, T, C).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let heads = self.heads.iter().map(|h| h.forward(x.clone())).collect(); // n_head × (B, T, hs)
        let out = Tensor::cat(heads, 2); // (B, T, n_head·hs)
        self.dropout.forward(self.proj.forward(out))
    }
}

/// A linear layer holding the values of `layer`'s parameters. Not `layer.clone()`: Burn
/// draws parameters lazily, on first use, and a clone of a layer not yet used would draw
/// its own, different values.
fn copy<B: Backend>(layer: &Linear<B>) -> Linear<B> {
    Linear {
        weight: Param::from_tensor(layer.weight.val()),
        bias: layer.bias.as_ref().map(|b| Param::from_tensor(b.val())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestBackend as B, small_config};
    use burn::tensor::Distribution;

    #[test]
    fn heads_one_at_a_time_equal_the_batched_production_layer() {
        let device = Default::default();
        let mut attn = CausalSelfAttention::<B>::new(&small_config(), &device);
        // Unit-scale q, k, v: the attention pattern is far from uniform, so taking a head's
        // query columns for its keys (or another head's) would change the output.
        let w = Tensor::random(
            [32, 96],
            Distribution::Normal(0.0, 32f64.powf(-0.5)),
            &device,
        );
        attn.c_attn.weight = Param::from_tensor(w);
        let lecture = MultiHeadAttention::from_batched(&attn);
        let x = Tensor::<B, 3>::random([2, 7, 32], Distribution::Normal(0.0, 1.0), &device);
        lecture
            .forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&attn.forward(x).into_data(), Default::default());
    }

    /// Same layer, different layout: per-head (C, hs) matrices hold as many weights as the
    /// batched (C, 3C) one.
    #[test]
    fn same_parameter_count_as_the_batched_layer() {
        let device = Default::default();
        assert_eq!(
            MultiHeadAttention::<B>::new(&small_config(), &device).num_params(),
            CausalSelfAttention::<B>::new(&small_config(), &device).num_params()
        );
    }
}
