//! The lecture's transformer block before batching: communication ([`MultiHeadAttention`])
//! then computation ([`FeedForward`]), each a residual branch behind a LayerNorm.
//! The production [`crate::block::Block`] is the same block with the batched attention.

use super::MultiHeadAttention;
use crate::GptConfig;
use crate::mlp::Mlp;
use crate::norm::layer_norm;
use burn::nn::LayerNorm;
use burn::prelude::*;

/// The lecture's `FeedFoward`: Linear(C, 4C), ReLU, Linear(4C, C), Dropout. That is
/// exactly the production MLP, so it is that type rather than a copy of it.
pub type FeedForward<B> = Mlp<B>;

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    sa: MultiHeadAttention<B>,
    ffwd: FeedForward<B>,
    ln1: LayerNorm<B>,
    ln2: LayerNorm<B>,
}

impl<B: Backend> Block<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        Self {
            sa: MultiHeadAttention::new(config, device),
            ffwd: FeedForward::new(config, device),
            ln1: layer_norm(config, device),
            ln2: layer_norm(config, device),
        }
    }

    /// `x` (B, T, C) → (B, T, C): `x + sa(ln1(x))`, then `x + ffwd(ln2(x))`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.sa.forward(self.ln1.forward(x));
        x.clone() + self.ffwd.forward(self.ln2.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestBackend as B, small_config};
    use burn::tensor::Distribution;

    /// Why residual connections train from the start: with small initial weights each
    /// branch adds only a little, so a fresh block passes its input (and the gradient)
    /// almost unchanged. Almost: the branches do contribute.
    #[test]
    fn a_fresh_block_is_close_to_the_identity() {
        let device = Default::default();
        let block = Block::<B>::new(&small_config(), &device);
        let x = Tensor::<B, 3>::random([2, 8, 32], Distribution::Normal(0.0, 1.0), &device);
        let change: f32 = (block.forward(x.clone()) - x.clone())
            .abs()
            .mean()
            .into_scalar();
        let size: f32 = x.abs().mean().into_scalar();
        assert!(change < 0.1 * size, "change {change}, input {size}");
        assert!(change > 1e-4, "change {change}");
    }

    /// The same block as production, only unbatched: the same number of weights.
    #[test]
    fn same_parameter_count_as_the_production_block() {
        let device = Default::default();
        assert_eq!(
            Block::<B>::new(&small_config(), &device).num_params(),
            crate::block::Block::<B>::new(&small_config(), &device).num_params()
        );
    }
}
