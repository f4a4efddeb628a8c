//! The feed-forward half of a block: after tokens have communicated (attention), each
//! one thinks on its own about what it gathered. Widened 4× as in "Attention Is All You Need".
//!
//! With `activation = "swiglu"` the widening is gated (Shazeer 2020, "GLU Variants Improve
//! Transformer"; Llama): two projections up, one passed through silu and used to gate the
//! other elementwise, then the projection down. Three matrices instead of two, so the
//! hidden width shrinks to ≈ 8/3·C to keep the parameter count ([`GptConfig::mlp_hidden`]).
//! The gate and up projections are one matrix side by side, [W_gate | W_up], as `c_attn`
//! packs q, k and v: one matrix product of twice the width instead of two.

use crate::gelu::gelu_tanh;
use crate::init::{linear, linear_params, linear_std, residual_std};
use crate::per_token::{by_rows, per_token};
use crate::precision::{self, Precision};
use crate::swiglu;
use crate::{Activation, GptConfig};
use burn::nn::{Dropout, DropoutConfig, Linear};
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
/// projections packed side by side, C → 2·hidden, the gate's columns first.
#[derive(Module, Debug)]
pub enum Up<B: Backend> {
    Linear(Linear<B>),
    Gated(Linear<B>),
}

impl<B: Backend> Mlp<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        let (c, hidden) = (config.n_embd, config.mlp_hidden());
        let c_fc = match config.activation {
            Activation::SwiGlu => Up::Gated(linear(c, 2 * hidden, config.bias, device)),
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
            Up::Gated(c_fc) => by_rows(x, |rows| {
                swiglu::gate(precision::linear(c_fc, rows, self.precision)) // (B·T, 2H) → (B·T, H)
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
        // A product, not a power: one multiply each way, where a power's backward runs
        // through the general pow.
        Activation::Relu2 => {
            let r = relu(h);
            r.clone() * r
        }
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

    /// The packed SwiGLU is Burn's `SwiGlu` (the gate and up projections as two layers)
    /// with its two matrices cut from the packed one: same output, and the packed
    /// matrix's gradient is the two layers' gradients side by side.
    #[test]
    fn packed_swiglu_equals_two_projections() {
        use burn::module::Param;
        use burn::nn::SwiGluConfig;
        use burn::tensor::{Distribution, Tolerance};
        let device = Default::default();
        let config = GptConfig {
            n_embd: 24,
            activation: Activation::SwiGlu,
            dropout: 0.0,
            ..GptConfig::default()
        };
        let (c, hidden) = (config.n_embd, config.mlp_hidden());
        let mlp = Mlp::<A>::new(&config, &device);
        let Up::Gated(packed) = &mlp.c_fc else {
            panic!("SwiGLU packs its projections")
        };
        let w = packed.weight.val(); // (C, 2H): [gate | up]
        let mut two = SwiGluConfig::new(c, hidden)
            .with_bias(true)
            .init::<A>(&device);
        let cut = |from: usize| Param::from_tensor(w.clone().narrow(1, from, hidden).detach());
        two.linear_inner.weight = cut(0);
        two.linear_outer.weight = cut(hidden);
        let bias = packed.bias.as_ref().unwrap().val();
        two.linear_inner.bias = Some(Param::from_tensor(
            bias.clone().narrow(0, 0, hidden).detach(),
        ));
        two.linear_outer.bias = Some(Param::from_tensor(bias.narrow(0, hidden, hidden).detach()));
        let x = Tensor::<A, 2>::random([10, c], Distribution::Normal(0.0, 1.0), &device);
        let weights = Tensor::<A, 2>::random([10, hidden], Distribution::Normal(0.0, 1.0), &device);
        let ours = swiglu::gate(precision::linear(packed, x.clone(), Precision::Float32));
        let theirs = two.forward(x);
        let tolerance = Tolerance::absolute(1e-5);
        ours.clone()
            .into_data()
            .assert_approx_eq::<f32>(&theirs.clone().into_data(), tolerance);
        let g_ours = (ours * weights.clone()).sum().backward();
        let g_theirs = (theirs * weights).sum().backward();
        let grad = |p: &Param<Tensor<A, 2>>, g| p.val().grad(g).unwrap();
        let side_by_side = Tensor::cat(
            vec![
                grad(&two.linear_inner.weight, &g_theirs),
                grad(&two.linear_outer.weight, &g_theirs),
            ],
            1,
        );
        grad(&packed.weight, &g_ours)
            .into_data()
            .assert_approx_eq::<f32>(&side_by_side.into_data(), tolerance);
    }
}
