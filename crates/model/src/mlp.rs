//! The feed-forward half of a block: after tokens have communicated (attention), each
//! one thinks on its own about what it gathered. Widened 4× as in "Attention Is All You Need".
//!
//! With `activation = "swiglu"` the widening is gated (Shazeer 2020, "GLU Variants Improve
//! Transformer"; Llama): two projections up, one passed through silu and used to gate the
//! other elementwise, then the projection down. Three matrices instead of two, so the
//! hidden width shrinks to ≈ 8/3·C to keep the parameter count ([`GptConfig::mlp_hidden`]).

use crate::gelu::gelu_tanh;
use crate::init::{STD, linear, linear_params, linear_std, residual_std, zero_bias};
use crate::per_token::{by_rows, per_token};
use crate::precision::{self, Precision};
use crate::{Activation, GptConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, SwiGlu, SwiGluConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, relu, silu};

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// The projection up to the hidden width.
    pub(crate) c_fc: Up<B>,
    /// The projection back down to the residual stream.
    pub(crate) c_proj: Linear<B>,
    dropout: Dropout,
    activation: Activation,
    /// The projections' precision (`dtype`, see [`crate::precision`]).
    #[module(skip)]
    precision: Precision,
}

/// The projection up: one linear layer (GPT-2's `c_fc`), or SwiGLU's gate and up
/// projections (Burn's [`SwiGlu`]: `linear_inner` the gate, `linear_outer` the up).
// One per block, built once: the gap between the variants' sizes costs nothing, a box
// would cost an indirection per call.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Up<B: Backend> {
    Linear(Linear<B>),
    Gated(SwiGlu<B>),
}

impl<B: Backend> Mlp<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        let (c, hidden) = (config.n_embd, config.mlp_hidden());
        let c_fc = match config.activation {
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
                Up::Gated(swiglu)
            }
            _ => Up::Linear(linear(c, hidden, config.bias, device)),
        };
        Self {
            c_fc,
            c_proj: linear_std(hidden, c, config.bias, residual_std(config), device),
            dropout: DropoutConfig::new(config.dropout).init(),
            activation: config.activation,
            precision: config.dtype,
        }
    }

    /// `x` (B, T, C) → (B, T, C), applied to every position independently.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = match &self.c_fc {
            Up::Linear(c_fc) => nonlinearity(self.activation, per_token(c_fc, x, self.precision)), // (B, T, 4C)
            // Burn's `SwiGlu::forward`, with its two projections in `x`'s dtype.
            Up::Gated(swiglu) => by_rows(x, |rows| {
                let gate = precision::linear(&swiglu.linear_inner, rows.clone(), self.precision);
                nonlinearity(self.activation, gate)
                    * precision::linear(&swiglu.linear_outer, rows, self.precision)
            }),
        };
        self.dropout
            .forward(per_token(&self.c_proj, h, self.precision))
    }
}

/// The pointwise nonlinearity of the hidden layer (of the gate, in a gated MLP).
fn nonlinearity<B: Backend, const D: usize>(
    activation: Activation,
    h: Tensor<B, D>,
) -> Tensor<B, D> {
    match activation {
        Activation::Relu => relu(h),
        // As sparse as ReLU, smoother above zero; it trained better in Primer's search.
        Activation::Relu2 => relu(h).powi_scalar(2),
        Activation::Gelu => gelu(h),
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), GPT-2's `gelu_new`.
        Activation::GeluTanh => gelu_tanh(h),
        // SwiGLU's gate: Swish (silu), x·σ(x).
        Activation::SwiGlu => silu(h),
    }
}

/// The parameters [`Mlp::new`] makes, counted from the config alone.
pub(crate) fn params(config: &GptConfig) -> Option<u128> {
    let (c, hidden) = (config.n_embd, config.mlp_hidden());
    let up = linear_params(c, hidden, config.bias)?;
    let up = match config.activation {
        Activation::SwiGlu => up.checked_mul(2)?, // gate and up
        _ => up,
    };
    up.checked_add(linear_params(hidden, c, config.bias)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TestAutodiff as A;

    /// Squared ReLU is relu(x)², with gradient 2·relu(x).
    #[test]
    fn relu2_squares_the_positive_part() {
        let device = Default::default();
        let x = Tensor::<A, 1>::from_floats([-2.0, -0.5, 0.0, 1.5, 3.0], &device).require_grad();
        let y = nonlinearity(Activation::Relu2, x.clone());
        let grads = y.clone().sum().backward();
        let values = |t: Tensor<burn::backend::Flex, 1>| t.into_data().to_vec::<f32>().unwrap();
        assert_eq!(values(y.inner()), [0.0, 0.0, 0.0, 2.25, 9.0]);
        assert_eq!(values(x.grad(&grads).unwrap()), [0.0, 0.0, 0.0, 3.0, 6.0]);
    }
}
