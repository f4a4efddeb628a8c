//! Weight initialisation shared by every layer, as in nanoGPT/GPT-2: weights N(0, 0.02),
//! biases zero. (Burn's initializer would draw the bias from the same normal, so it is
//! reset here.) A small std keeps the initial logits near zero, so the first loss is
//! ≈ ln(vocab_size): the model starts out predicting a uniform distribution.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;

const STD: f64 = 0.02;

/// A `d_input → d_output` linear layer with GPT-2 initialisation.
pub(crate) fn linear<B: Backend>(
    d_input: usize,
    d_output: usize,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    let mut layer = LinearConfig::new(d_input, d_output)
        .with_bias(bias)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: STD,
        })
        .init(device);
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
