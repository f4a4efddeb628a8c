//! Weight initialisation shared by every layer, as in nanoGPT/GPT-2: weights N(0, 0.02),
//! biases zero. (Burn's initializer would draw the bias from the same normal, so it is
//! reset here.) A small std keeps the initial logits near zero, so the first loss is
//! ≈ ln(vocab_size): the model starts out predicting a uniform distribution.
//! With `scaled_init` the residual projections start smaller still (see [`residual_std`]).

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;

pub(crate) const STD: f64 = 0.02;

/// The std of a layer that writes into the residual stream (`c_proj`): nanoGPT's
/// 0.02/√(2·n_layer) with `scaled_init` (each of the 2·n_layer branches adds its output
/// to the stream, so their variances add up), else 0.02.
pub(crate) fn residual_std(config: &crate::GptConfig) -> f64 {
    if config.scaled_init {
        STD / ((2 * config.n_layer) as f64).sqrt()
    } else {
        STD
    }
}

/// A `d_input → d_output` linear layer with GPT-2 initialisation.
pub(crate) fn linear<B: Backend>(
    d_input: usize,
    d_output: usize,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    linear_std(d_input, d_output, bias, STD, device)
}

/// The parameters of a `d_input → d_output` linear layer, counted without building it
/// (`None` past u128: such a layer cannot exist).
pub(crate) fn linear_params(d_input: usize, d_output: usize, bias: bool) -> Option<u128> {
    (d_input as u128)
        .checked_mul(d_output as u128)?
        .checked_add(u128::from(bias) * d_output as u128)
}

/// As [`linear`], its weights drawn from N(0, std²).
pub(crate) fn linear_std<B: Backend>(
    d_input: usize,
    d_output: usize,
    bias: bool,
    std: f64,
    device: &B::Device,
) -> Linear<B> {
    let layer = LinearConfig::new(d_input, d_output)
        .with_bias(bias)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device);
    zero_bias(layer, device)
}

/// `layer` with its bias, if it has one, reset to zero.
pub(crate) fn zero_bias<B: Backend>(mut layer: Linear<B>, device: &B::Device) -> Linear<B> {
    let d_output = layer.weight.dims()[1];
    layer.bias = layer
        .bias
        .map(|_| Param::from_tensor(Tensor::zeros([d_output], device)));
    layer
}

/// An embedding table with GPT-2 initialisation.
pub(crate) fn embedding<B: Backend>(n: usize, d_model: usize, device: &B::Device) -> Embedding<B> {
    EmbeddingConfig::new(n, d_model)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: STD,
        })
        .init(device)
}
