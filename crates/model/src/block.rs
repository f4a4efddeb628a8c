//! A transformer block: communication (attention) followed by computation (MLP).
//!
//! Both halves are residual branches, `x + f(ln(x))`: the gradient flows unchanged along
//! the residual stream from the loss to the input, so deep stacks train from the start.
//! The norm comes *before* each branch (pre-norm, the lecture's and GPT-2's deviation
//! from the original paper), keeping every branch's input at unit scale.

use crate::GptConfig;
use crate::attention::{self, CausalSelfAttention};
use crate::kv_cache::LayerKv;
use crate::mlp::{self, Mlp};
use crate::norm::{self, NormLayer};
use crate::precision::{Precision, to_stream};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub(crate) ln_1: NormLayer<B>,
    pub(crate) attn: CausalSelfAttention<B>,
    pub(crate) ln_2: NormLayer<B>,
    pub(crate) mlp: Mlp<B>,
    /// The branches' compute precision (`dtype`); the residual stream stays f32.
    #[module(skip)]
    precision: Precision,
}

impl<B: Backend> Block<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        Self {
            ln_1: NormLayer::new(config, device),
            attn: CausalSelfAttention::new(config, device),
            ln_2: NormLayer::new(config, device),
            mlp: Mlp::new(config, device),
            precision: config.dtype,
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

    /// As [`forward_cached`](Self::forward_cached) for one new token per sequence, each
    /// with its own cache (see [`CausalSelfAttention::forward_step`]).
    pub fn forward_step(
        &self,
        x: Tensor<B, 3>,
        pasts: &mut [&mut Option<LayerKv<B>>],
    ) -> Tensor<B, 3> {
        self.residuals(x, |x| self.attn.forward_step(x, pasts))
    }

    /// The block's two residual branches, with `attend` as the attention. Each branch
    /// reads the normalised stream in the compute precision and adds back in f32 (see
    /// [`crate::precision`]; both casts do nothing in float32).
    fn residuals(
        &self,
        x: Tensor<B, 3>,
        attend: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let p = self.precision;
        let x = x.clone() + to_stream(attend(p.compute(self.ln_1.forward(x))));
        x.clone() + to_stream(self.mlp.forward(p.compute(self.ln_2.forward(x))))
    }
}

/// The parameters [`Block::new`] makes, counted from the config alone.
pub(crate) fn params(config: &GptConfig) -> Option<u128> {
    (2 * norm::params(config))
        .checked_add(attention::params(config)?)?
        .checked_add(mlp::params(config)?)
}
