//! The feed-forward half of a block: after tokens have communicated (attention), each
//! one thinks on its own about what it gathered. Widened 4× as in "Attention Is All You Need".

use crate::GptConfig;
use crate::init::linear;
use crate::per_token::per_token;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::relu;

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    c_fc: Linear<B>,
    c_proj: Linear<B>,
    dropout: Dropout,
}

impl<B: Backend> Mlp<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        let c = config.n_embd;
        Self {
            c_fc: linear(c, 4 * c, config.bias, device),
            c_proj: linear(4 * c, c, config.bias, device),
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    /// `x` (B, T, C) → (B, T, C), applied to every position independently.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = relu(per_token(&self.c_fc, x)); // (B, T, 4C)
        self.dropout.forward(per_token(&self.c_proj, h))
    }
}
