//! Gradient clipping by the global norm, as PyTorch's `clip_grad_norm_` and nanoGPT.
//!
//! Burn's `GradientClipping::Norm` clips each parameter tensor on its own, which changes
//! the direction of the update (some tensors shrink, others don't). Clipping the norm of
//! all gradients taken together scales every gradient by the same factor, so the update
//! keeps its direction and only its length is capped. That is what nanoGPT users expect
//! from `grad_clip = 1.0`, so we do it here before the optimizer sees the gradients.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Scales all gradients by `max_norm / norm` when their global L2 norm `norm` (see
/// [`global_norm`]) exceeds `max_norm`.
///
/// As PyTorch's `clip_grad_norm_`, without a host read: every gradient is multiplied by
/// min(1, max_norm / (norm + 1e-6)) computed on the device (exactly 1 when the norm is
/// below the limit), so a GPU never waits for the norm to come back.
pub fn clip_to_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    norm: Tensor<B::InnerBackend, 1>,
    max_norm: f64,
) {
    let factor = (norm + 1e-6).recip().mul_scalar(max_norm).clamp_max(1.0);
    scale::<B, M>(module, grads, factor);
}

/// The L2 norm of all gradients taken together, on the device; `None` without gradients.
pub fn global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> Option<Tensor<B::InnerBackend, 1>> {
    let mut sum = SquaredSum::<B> { grads, total: None };
    module.visit(&mut sum);
    sum.total.map(Tensor::sqrt)
}

/// Multiplies every gradient by `factor` (one value, on the device).
pub fn scale<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    factor: Tensor<B::InnerBackend, 1>,
) {
    module.visit(&mut Scale::<B> { grads, factor });
}

/// Adds up the squares of every gradient, on the device (one host read at the end).
struct SquaredSum<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredSum<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let sq = g.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
}

struct Scale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    factor: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let id: ParamId = param.id;
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(id) {
            let factor = self.factor.clone().reshape([1; D]);
            self.grads.register(id, g * factor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};

    type B = Autodiff<Flex>;

    /// Two linear layers whose gradients we can compute by hand: loss = sum(W1 x) + sum(W2 x).
    fn grads_of(model: &(Linear<B>, Linear<B>)) -> GradientsParams {
        let device = Default::default();
        let x = Tensor::<B, 2>::ones([1, 3], &device);
        let loss = model.0.forward(x.clone()).sum() * 3.0 + model.1.forward(x).sum() * 4.0;
        GradientsParams::from_grads(loss.backward(), model)
    }

    /// Clips to `max_norm`; the norm before.
    fn clip(model: &(Linear<B>, Linear<B>), grads: &mut GradientsParams, max_norm: f64) -> f64 {
        let before = global_norm(model, grads).unwrap();
        clip_to_norm(model, grads, before.clone(), max_norm);
        before.into_scalar().elem()
    }

    fn norm(model: &(Linear<B>, Linear<B>), grads: &GradientsParams) -> f64 {
        let mut sum = SquaredSum::<B> { grads, total: None };
        model.visit(&mut sum);
        sum.total.unwrap().sqrt().into_scalar().elem::<f64>()
    }

    #[test]
    fn scales_all_gradients_by_one_factor() {
        let device = Default::default();
        let cfg = LinearConfig::new(3, 2).with_bias(false);
        let model = (cfg.init::<B>(&device), cfg.init::<B>(&device));
        let mut grads = grads_of(&model);
        // d/dW1 = 3 everywhere (6 entries), d/dW2 = 4 everywhere: norm = sqrt(6*9 + 6*16) = sqrt(150).
        let before = clip(&model, &mut grads, 1.0);
        assert!((before - 150f64.sqrt()).abs() < 1e-4, "{before}");
        assert!((norm(&model, &grads) - 1.0).abs() < 1e-4);
        // The ratio between the two tensors' gradients is unchanged (direction kept).
        let g1 = grads.get::<Flex, 2>(model.0.weight.id).unwrap();
        let g2 = grads.get::<Flex, 2>(model.1.weight.id).unwrap();
        let ratio: f32 = (g2 / g1).mean().into_scalar();
        assert!((ratio - 4.0 / 3.0).abs() < 1e-4);
    }

    #[test]
    fn leaves_small_gradients_alone() {
        let device = Default::default();
        let cfg = LinearConfig::new(3, 2).with_bias(false);
        let model = (cfg.init::<B>(&device), cfg.init::<B>(&device));
        let mut grads = grads_of(&model);
        clip(&model, &mut grads, 100.0);
        assert!((norm(&model, &grads) - 150f64.sqrt()).abs() < 1e-4);
    }
}
