//! The norm in front of each residual branch and before the head: LayerNorm (the
//! lecture's, GPT-2's) or RMSNorm (Llama's), per [`GptConfig::norm`].
//!
//! LayerNorm subtracts each position's mean and divides by its standard deviation, then
//! scales (gamma) and shifts (beta). RMSNorm (Zhang & Sennrich 2019) only divides by the
//! root mean square and scales: re-centring turned out not to matter for training, and
//! dropping it saves a reduction per norm.
//!
//! A site holds one of two optional layers rather than an enum of them: an enum adds its
//! variant to the checkpoint's layout, so every run saved before RMSNorm existed would no
//! longer load, while an absent `Option` reads as `None` and a present one exactly as the
//! layer itself.

use crate::GptConfig;
use crate::config::Norm;
use burn::nn::{LayerNorm, LayerNormConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;

/// LayerNorm over the embedding (`Some`, `None`) or RMSNorm (`None`, `Some`), per the config.
pub(crate) fn norm<B: Backend>(
    config: &GptConfig,
    device: &B::Device,
) -> (Option<LayerNorm<B>>, Option<RmsNorm<B>>) {
    match config.norm {
        Norm::LayerNorm => (Some(layer_norm(config, device)), None),
        Norm::RmsNorm => (None, Some(rms_norm(config.n_embd, config, device))),
    }
}

/// LayerNorm over the embedding, with or without bias and with the epsilon per the config.
pub(crate) fn layer_norm<B: Backend>(config: &GptConfig, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(config.n_embd)
        .with_bias(config.bias)
        .with_epsilon(config.layer_norm_eps)
        .init(device)
}

/// RMSNorm over the last `d` dimensions' worth of features, with the config's epsilon.
pub(crate) fn rms_norm<B: Backend>(d: usize, config: &GptConfig, device: &B::Device) -> RmsNorm<B> {
    RmsNormConfig::new(d)
        .with_epsilon(config.layer_norm_eps)
        .init(device)
}

/// `x` through whichever of the two a site holds.
pub(crate) fn apply<B: Backend, const D: usize>(
    layer_norm: &Option<LayerNorm<B>>,
    rms_norm: &Option<RmsNorm<B>>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    match (layer_norm, rms_norm) {
        (Some(ln), _) => ln.forward(x),
        (None, Some(rms)) => rms.forward(x),
        (None, None) => unreachable!("every norm site holds a LayerNorm or an RMSNorm"),
    }
}
