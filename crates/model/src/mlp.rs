//! The feed-forward half of a block: after tokens have communicated (attention), each
//! one thinks on its own about what it gathered. Widened 4× as in "Attention Is All You Need".

use crate::init::{linear, linear_std, residual_std};
use crate::per_token::per_token;
use crate::{Activation, GptConfig};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::{gelu, gelu_approximate, relu};

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub(crate) c_fc: Linear<B>,
    pub(crate) c_proj: Linear<B>,
    dropout: Dropout,
    activation: Activation,
}

impl<B: Backend> Mlp<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        let c = config.n_embd;
        Self {
            c_fc: linear(c, 4 * c, config.bias, device),
            c_proj: linear_std(4 * c, c, config.bias, residual_std(config), device),
            dropout: DropoutConfig::new(config.dropout).init(),
            activation: config.activation,
        }
    }

    /// `x` (B, T, C) → (B, T, C), applied to every position independently.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = per_token(&self.c_fc, x); // (B, T, 4C)
        let h = match self.activation {
            Activation::Relu => relu(h),
            Activation::Gelu => gelu(h),
            // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), GPT-2's `gelu_new`.
            Activation::GeluTanh => gelu_approximate(h),
        };
        self.dropout.forward(per_token(&self.c_proj, h))
    }
}
