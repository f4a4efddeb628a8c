//! AdamW with nanoGPT's parameter groups: weight decay on matrices only.
//!
//! nanoGPT decays every parameter with two or more dimensions (linear weights, embedding
//! tables) and leaves vectors alone (biases, LayerNorm gains and shifts): shrinking a
//! LayerNorm gain towards zero fights the normalisation it exists for. Burn's AdamW has one
//! decay for all parameters, so this wraps two of them and picks by the tensor's rank.

use crate::RunConfig;
use crate::step::TrainingModel;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, AdamWState, Optimizer, SimpleOptimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

#[derive(Clone)]
pub struct MatrixDecayAdamW {
    /// For parameters of rank ≥ 2.
    decayed: AdamW,
    /// For biases and LayerNorm parameters.
    plain: AdamW,
}

impl MatrixDecayAdamW {
    pub fn new(config: &RunConfig) -> Self {
        let t = &config.train;
        let base = AdamWConfig::new()
            .with_beta_1(t.beta1 as f32)
            .with_beta_2(t.beta2 as f32)
            .with_epsilon(t.eps as f32);
        Self {
            decayed: base
                .clone()
                .with_weight_decay(t.weight_decay as f32)
                .build(),
            plain: base.with_weight_decay(0.0).build(),
        }
    }

    /// The optimizer burn-train's Learner drives.
    pub fn init<B: AutodiffBackend, M: burn::module::AutodiffModule<B>>(
        config: &RunConfig,
    ) -> OptimizerAdaptor<Self, M, B> {
        OptimizerAdaptor::from(Self::new(config))
    }
}

/// What the optimizer's checkpoint (`optim-E.mpk`) holds: AdamW's state by parameter id.
pub type OptimizerRecord<B> =
    <OptimizerAdaptor<MatrixDecayAdamW, TrainingModel<B>, B> as Optimizer<TrainingModel<B>, B>>::Record;

impl<B: Backend> SimpleOptimizer<B> for MatrixDecayAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let adamw = if D >= 2 { &self.decayed } else { &self.plain };
        adamw.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// With a zero gradient AdamW's update is zero, so only the decay moves a parameter.
    #[test]
    fn decays_matrices_but_not_vectors() {
        let mut config = RunConfig::default();
        config.train.weight_decay = 0.5;
        let opt = MatrixDecayAdamW::new(&config);
        let device = Default::default();
        let m = Tensor::<Flex, 2>::ones([2, 2], &device);
        let v = Tensor::<Flex, 1>::ones([3], &device);
        let (m2, _) = opt.step(0.1, m.clone(), m.zeros_like(), None);
        let (v2, _) = opt.step(0.1, v.clone(), v.zeros_like(), None);
        let m2: f32 = m2.mean().into_scalar();
        let v2: f32 = v2.mean().into_scalar();
        assert!((m2 - 0.95).abs() < 1e-6, "{m2}"); // 1 - lr * wd
        assert!((v2 - 1.0).abs() < 1e-6, "{v2}");
    }
}
