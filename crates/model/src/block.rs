//! A transformer block: communication (attention) followed by computation (MLP).
//!
//! Both halves are residual branches, `x + f(ln(x))`: the gradient flows unchanged along
//! the residual stream from the loss to the input, so deep stacks train from the start.
//! The norm comes *before* each branch (pre-norm, the lecture's and GPT-2's deviation
//! from the original paper), keeping every branch's input at unit scale.

use crate::GptConfig;
use crate::attention::CausalSelfAttention;
use crate::kv_cache::LayerKv;
use crate::mlp::Mlp;
use crate::norm;
use crate::precision::{Precision, to_stream};
use burn::nn::{LayerNorm, RmsNorm};
use burn::prelude::*;

/// Each norm site holds a LayerNorm (`ln_*`) or an RMSNorm (`rms_*`), see [`crate::norm`].
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub(crate) ln_1: Option<LayerNorm<B>>,
    pub(crate) rms_1: Option<RmsNorm<B>>,
    pub(crate) attn: CausalSelfAttention<B>,
    pub(crate) ln_2: Option<LayerNorm<B>>,
    pub(crate) rms_2: Option<RmsNorm<B>>,
    pub(crate) mlp: Mlp<B>,
    /// The branches' compute precision (`dtype`); the residual stream stays f32.
    #[module(skip)]
    precision: Precision,
}

impl<B: Backend> Block<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        let (ln_1, rms_1) = norm::norm(config, device);
        let (ln_2, rms_2) = norm::norm(config, device);
        Self {
            ln_1,
            rms_1,
            attn: CausalSelfAttention::new(config, device),
            ln_2,
            rms_2,
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

    /// The block's two residual branches, with `attend` as the attention. Each branch
    /// reads the normalised stream in the compute precision and adds back in f32 (see
    /// [`crate::precision`]; both casts do nothing in float32).
    fn residuals(
        &self,
        x: Tensor<B, 3>,
        attend: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let p = self.precision;
        let x = x.clone() + to_stream(attend(p.compute(norm::apply(&self.ln_1, &self.rms_1, x))));
        x.clone()
            + to_stream(
                self.mlp
                    .forward(p.compute(norm::apply(&self.ln_2, &self.rms_2, x))),
            )
    }
}
