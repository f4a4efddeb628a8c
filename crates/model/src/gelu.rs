//! GELU with the tanh approximation (GPT-2's `gelu_new`, nanoGPT's `approximate='tanh'`),
//! one pass each way on the CPU.
//!
//! gelu(x) = 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³): a smooth ReLU that lets a
//! little of the negative inputs through. Burn's `gelu_approximate` spells it as seven
//! tensor ops (x³ through `powf`, a scale, sums, `tanh`, products); under autodiff each one
//! writes a tensor of the MLP's hidden width (4C per token: 100 MB per layer for GPT-2
//! 124M at 8 × 1024 tokens), keeps it for the backward pass, which runs as many ops again,
//! and calls libm's `tanhf` and `powf` per element. On flex this computes the formula in one
//! pass over x, and its derivative,
//!
//!   gelu'(x) = 0.5·(1 + t) + 0.5·x·(1 - t²)·√(2/π)·(1 + 3·0.044715·x²),  t = tanh(u),
//!
//! in one pass over x and the incoming gradient, recomputing t rather than storing it.
//! Other backends and dtypes take Burn's `gelu_approximate`; the tests hold the two to
//! the same values and gradients.

use burn::prelude::*;
use burn::tensor::activation::gelu_approximate;

/// `x` through GELU-tanh, elementwise.
pub(crate) fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "fused")]
    let x = match kernel::fused(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    gelu_approximate(x)
}

#[cfg(feature = "fused")]
mod kernel {
    use crate::fused_attention::{AutodiffFlexTensor, Kernel, downcast, exp, kernel, upcast};
    use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::NoCheckpointing};
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn::backend::flex::{Flex, FlexTensor};
    use burn::prelude::*;
    use burn::tensor::TensorData;
    use multiversion::multiversion;
    use rayon::prelude::*;

    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const A: f32 = 0.044_715;
    /// Elements per parallel task: large enough that rayon's overhead vanishes.
    const CHUNK: usize = 1 << 14;

    /// The fused kernel on flex (f32), or `x` back where it does not apply.
    pub(super) fn fused<B: Backend, const D: usize>(
        x: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        let Some(kernel) = kernel::<B>(x.dtype()) else {
            return Err(x);
        };
        let primitive = x.into_primitive().tensor();
        Ok(match kernel {
            Kernel::Flex => {
                let x: FlexTensor = downcast(primitive).unwrap_or_else(|_| unreachable!());
                upcast(forward(&x.to_contiguous()))
            }
            Kernel::AutodiffFlex => {
                let x: AutodiffFlexTensor = downcast(primitive).unwrap_or_else(|_| unreachable!());
                let input = x.primitive.to_contiguous();
                let y = forward(&input);
                upcast(
                    match Gelu
                        .prepare::<NoCheckpointing>([x.node.clone()])
                        .compute_bound()
                        .stateful()
                    {
                        OpsKind::Tracked(prep) => prep.finish(input, y),
                        OpsKind::UnTracked(prep) => prep.finish(y),
                    },
                )
            }
        })
    }

    #[derive(Debug)]
    struct Gelu;

    /// The backward pass needs only the input.
    impl Backward<Flex, 1> for Gelu {
        type State = FlexTensor;

        fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let Ops {
                parents,
                node,
                state: x,
            } = ops;
            unary::<Flex, _>(parents, node, grads, |dy| backward(&x, &dy.to_contiguous()));
        }
    }

    /// tanh(u) = sign(u)·(1 - e^(-2|u|)) / (1 + e^(-2|u|)), through the vectorising exp.
    #[inline(always)]
    fn tanh(u: f32) -> f32 {
        let e = exp(-2.0 * u.abs());
        ((1.0 - e) / (1.0 + e)).copysign(u)
    }

    #[inline(always)]
    fn inner(x: f32) -> f32 {
        SQRT_2_OVER_PI * (x + A * x * x * x)
    }

    #[multiversion(targets(
        "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
        "x86_64+avx2+fma",
        "aarch64+neon"
    ))]
    fn forward_chunk(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = 0.5 * x * (1.0 + tanh(inner(x)));
        }
    }

    #[multiversion(targets(
        "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
        "x86_64+avx2+fma",
        "aarch64+neon"
    ))]
    fn backward_chunk(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            let t = tanh(inner(x));
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * A * x * x);
            *dx = dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du);
        }
    }

    fn forward(x: &FlexTensor) -> FlexTensor {
        let xs: &[f32] = x.as_slice().expect("contiguous f32");
        let mut y = vec![0.0f32; xs.len()];
        y.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(y, x)| forward_chunk(x, y));
        FlexTensor::from_data(TensorData::new(y, x.layout().shape().clone()))
    }

    fn backward(x: &FlexTensor, dy: &FlexTensor) -> FlexTensor {
        let xs: &[f32] = x.as_slice().expect("contiguous f32");
        let dys: &[f32] = dy.as_slice().expect("contiguous f32");
        let mut dx = vec![0.0f32; xs.len()];
        dx.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK).zip(dys.par_chunks(CHUNK)))
            .for_each(|(dx, (x, dy))| backward_chunk(x, dy, dx));
        FlexTensor::from_data(TensorData::new(dx, x.layout().shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestAutodiff as A, TestBackend as B};
    use burn::tensor::{Distribution, Tolerance};

    /// The fused kernel against Burn's op: values over the range GELU sees (and past
    /// tanh's saturation), and gradients through a weighted sum.
    #[test]
    fn matches_burns_gelu_approximate_forward_and_backward() {
        let device = Default::default();
        let x = Tensor::<B, 2>::random([64, 300], Distribution::Normal(0.0, 3.0), &device);
        let w = Tensor::<B, 2>::random([64, 300], Distribution::Normal(0.0, 1.0), &device);
        gelu_tanh(x.clone()).into_data().assert_approx_eq::<f32>(
            &gelu_approximate(x.clone()).into_data(),
            Tolerance::absolute(2e-6),
        );
        let grad = |fused: bool| {
            let x = Tensor::<A, 2>::from_inner(x.clone()).require_grad();
            let y = if fused {
                gelu_tanh(x.clone())
            } else {
                gelu_approximate(x.clone())
            };
            let grads = (y * Tensor::from_inner(w.clone())).sum().backward();
            x.grad(&grads).expect("a gradient").into_data()
        };
        grad(true).assert_approx_eq::<f32>(&grad(false), Tolerance::absolute(1e-5));
    }
}
