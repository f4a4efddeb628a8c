//! The feed-forward half of a block: after tokens have communicated (attention), each
//! one thinks on its own about what it gathered. Widened 4× as in "Attention Is All You Need".
//!
//! With `activation = "swiglu"` the widening is gated (Shazeer 2020, "GLU Variants Improve
//! Transformer"; Llama): two projections up, one passed through silu and used to gate the
//! other elementwise, then the projection down. Three matrices instead of two, so the
//! hidden width shrinks to ≈ 8/3·C to keep the parameter count ([`GptConfig::mlp_hidden`]).

use crate::gelu::gelu_tanh;
use crate::init::{STD, linear, linear_std, residual_std, zero_bias};
use crate::per_token::{by_rows, per_token};
use crate::precision;
use crate::{Activation, GptConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, SwiGlu, SwiGluConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, relu, silu};

/// `c_fc` for relu/gelu, `swiglu` (Burn's gate and up projections) for SwiGLU; one of
/// the two is set.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub(crate) c_fc: Option<Linear<B>>,
    pub(crate) swiglu: Option<SwiGlu<B>>,
    /// The projection back down to the residual stream.
    pub(crate) c_proj: Linear<B>,
    dropout: Dropout,
    activation: Activation,
}

impl<B: Backend> Mlp<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        let (c, hidden) = (config.n_embd, config.mlp_hidden());
        let (c_fc, swiglu) = match config.activation {
            Activation::SwiGlu => {
                let mut swiglu = SwiGluConfig::new(c, hidden)
                    .with_bias(config.bias)
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: STD,
                    })
                    .init(device);
                swiglu.linear_inner = zero_bias(swiglu.linear_inner, device);
                swiglu.linear_outer = zero_bias(swiglu.linear_outer, device);
                (None, Some(swiglu))
            }
            _ => (Some(linear(c, hidden, config.bias, device)), None),
        };
        Self {
            c_fc,
            swiglu,
            c_proj: linear_std(hidden, c, config.bias, residual_std(config), device),
            dropout: DropoutConfig::new(config.dropout).init(),
            activation: config.activation,
        }
    }

    /// `x` (B, T, C) → (B, T, C), applied to every position independently.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = match (&self.c_fc, &self.swiglu) {
            // Burn's `SwiGlu::forward`, with its two projections in `x`'s dtype.
            (_, Some(swiglu)) => by_rows(x, |rows| {
                let gate = precision::linear(&swiglu.linear_inner, rows.clone());
                silu(gate) * precision::linear(&swiglu.linear_outer, rows)
            }),
            (Some(c_fc), None) => {
                let h = per_token(c_fc, x); // (B, T, 4C)
                match self.activation {
                    Activation::Relu => relu(h),
                    Activation::Gelu => gelu(h),
                    // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), GPT-2's `gelu_new`.
                    Activation::GeluTanh => gelu_tanh(h),
                    Activation::SwiGlu => unreachable!("SwiGLU's MLP holds `swiglu`"),
                }
            }
            (None, None) => unreachable!("an MLP holds `c_fc` or `swiglu`"),
        };
        self.dropout.forward(per_token(&self.c_proj, h))
    }
}
