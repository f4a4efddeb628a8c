//! The norm in front of each residual branch and before the head: LayerNorm (the
//! lecture's, GPT-2's) or RMSNorm (Llama's), per [`GptConfig::norm`].
//!
//! LayerNorm subtracts each position's mean and divides by its standard deviation, then
//! scales (gamma) and shifts (beta). RMSNorm (Zhang & Sennrich 2019) only divides by the
//! root mean square and scales: re-centring turned out not to matter for training, and
//! dropping it saves a reduction per norm.

use crate::GptConfig;
use crate::config::Norm;
use burn::nn::{LayerNorm, LayerNormConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;

/// One norm site (`ln_1`, `ln_2`, `ln_f`): whichever norm the config names. A checkpoint
/// records the variant; a new kind of norm is one more variant here.
#[derive(Module, Debug)]
pub enum NormLayer<B: Backend> {
    LayerNorm(LayerNorm<B>),
    RmsNorm(RmsNorm<B>),
}

impl<B: Backend> NormLayer<B> {
    /// The config's norm over the embedding.
    pub(crate) fn new(config: &GptConfig, device: &B::Device) -> Self {
        match config.norm {
            Norm::LayerNorm => NormLayer::LayerNorm(layer_norm(config, device)),
            Norm::RmsNorm => NormLayer::RmsNorm(rms_norm(config.n_embd, config, device)),
        }
    }

    pub(crate) fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            NormLayer::LayerNorm(ln) => ln.forward(x),
            NormLayer::RmsNorm(rms) => rms.forward(x),
        }
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

/// The parameters [`NormLayer::new`] makes: LayerNorm's gain and (with `bias`) shift,
/// RMSNorm's gain.
pub(crate) fn params(config: &GptConfig) -> u128 {
    let c = config.n_embd as u128;
    match config.norm {
        Norm::LayerNorm => c * (1 + u128::from(config.bias)),
        Norm::RmsNorm => c,
    }
}
