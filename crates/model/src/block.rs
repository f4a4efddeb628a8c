//! A transformer block: communication (attention) followed by computation (MLP).
//!
//! Both halves are residual branches, `x + f(ln(x))`: the gradient flows unchanged along
//! the residual stream from the loss to the input, so deep stacks train from the start.
//! LayerNorm comes *before* each branch (pre-norm, the lecture's and GPT-2's deviation
//! from the original paper), keeping every branch's input at unit scale.

use crate::GptConfig;
use crate::attention::CausalSelfAttention;
use crate::kv_cache::LayerKv;
use crate::mlp::Mlp;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub(crate) ln_1: LayerNorm<B>,
    pub(crate) attn: CausalSelfAttention<B>,
    pub(crate) ln_2: LayerNorm<B>,
    pub(crate) mlp: Mlp<B>,
}

impl<B: Backend> Block<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        Self {
            ln_1: layer_norm(config, device),
            attn: CausalSelfAttention::new(config, device),
            ln_2: layer_norm(config, device),
            mlp: Mlp::new(config, device),
        }
    }

    /// `x` (B, T, C) → (B, T, C).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.residuals(x, |x| self.attn.forward(x))
    }

    /// As [`forward`](Self::forward), pushing the attention weights (B, nh, T, T) onto
    /// `weights` (see [`Gpt::attention_maps`](crate::Gpt::attention_maps)).
    pub fn forward_recording(
        &self,
        x: Tensor<B, 3>,
        weights: &mut Vec<Tensor<B, 4>>,
    ) -> Tensor<B, 3> {
        self.residuals(x, |x| self.attn.forward_recording(x, weights))
    }

    /// As [`forward`](Self::forward), reusing and extending this layer's cached keys and
    /// values (see [`KvCache`](crate::KvCache)).
    pub fn forward_cached(&self, x: Tensor<B, 3>, past: &mut Option<LayerKv<B>>) -> Tensor<B, 3> {
        self.residuals(x, |x| self.attn.forward_cached(x, past))
    }

    /// The block's two residual branches, with `attend` as the attention.
    fn residuals(
        &self,
        x: Tensor<B, 3>,
        attend: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let x = x.clone() + attend(self.ln_1.forward(x));
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

/// LayerNorm over the embedding, with or without bias and with the epsilon per the config.
pub(crate) fn layer_norm<B: Backend>(config: &GptConfig, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(config.n_embd)
        .with_bias(config.bias)
        .with_epsilon(config.layer_norm_eps)
        .init(device)
}
