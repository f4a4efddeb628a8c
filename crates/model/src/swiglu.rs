//! SwiGLU's gate on packed rows, one pass each way on the CPU.
//!
//! The MLP's up projection gives each token one row [gate | up] of 2·H numbers (one matrix
//! product, as `c_attn` packs q, k and v); the gate turns it into H numbers,
//! silu(gate) ∘ up with silu(g) = g·σ(g). Spelled as tensor ops that is two strided halves
//! of the row, a sigmoid, two products, and backward as many again plus a zero-filled
//! row per half for the gradients of the cut; on flex that cost more than the matrix
//! product itself. Here one pass writes the H outputs from the row, and one pass writes
//! the row's gradient,
//!
//!   d gate = dy·up·σ(g)·(1 + g·(1 − σ(g))),   d up = dy·silu(g),
//!
//! recomputing σ(g) rather than storing it. Other backends and dtypes take the tensor ops
//! ([`gate_explicit`]); the tests hold the two to the same values and gradients.

use burn::prelude::*;
use burn::tensor::activation::silu;

/// Packed rows `h` (N, 2H), [gate | up] → silu(gate) ∘ up (N, H).
pub(crate) fn gate<B: Backend>(h: Tensor<B, 2>) -> Tensor<B, 2> {
    #[cfg(feature = "fused")]
    let h = match kernel::fused(h) {
        Ok(y) => return y,
        Err(h) => h,
    };
    gate_explicit(h)
}

/// [`gate`] as tensor ops.
pub(crate) fn gate_explicit<B: Backend>(h: Tensor<B, 2>) -> Tensor<B, 2> {
    let hidden = h.dims()[1] / 2;
    silu(h.clone().narrow(1, 0, hidden)) * h.narrow(1, hidden, hidden)
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

    /// Rows per parallel task.
    const ROWS: usize = 16;

    /// The fused kernel on flex (f32), or `h` back where it does not apply.
    pub(super) fn fused<B: Backend>(h: Tensor<B, 2>) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
        let Some(kernel) = kernel::<B>(h.dtype()) else {
            return Err(h);
        };
        let primitive = h.into_primitive().tensor();
        Ok(match kernel {
            Kernel::Flex => {
                let h: FlexTensor = downcast(primitive).unwrap_or_else(|_| unreachable!());
                upcast(forward(&h.to_contiguous()))
            }
            Kernel::AutodiffFlex => {
                let h: AutodiffFlexTensor = downcast(primitive).unwrap_or_else(|_| unreachable!());
                let input = h.primitive.to_contiguous();
                let y = forward(&input);
                upcast(
                    match Gate
                        .prepare::<NoCheckpointing>([h.node.clone()])
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
    struct Gate;

    /// The backward pass needs only the packed rows.
    impl Backward<Flex, 1> for Gate {
        type State = FlexTensor;

        fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let Ops {
                parents,
                node,
                state: h,
            } = ops;
            unary::<Flex, _>(parents, node, grads, |dy| backward(&h, &dy.to_contiguous()));
        }
    }

    /// σ(g) through the vectorising exp (of −|g| ≤ 0, which never overflows).
    #[inline(always)]
    fn sigmoid(g: f32) -> f32 {
        let e = exp(-g.abs());
        if g >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        }
    }

    #[multiversion(targets(
        "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
        "x86_64+avx2+fma",
        "aarch64+neon"
    ))]
    fn forward_row(gate: &[f32], up: &[f32], y: &mut [f32]) {
        for ((y, &g), &u) in y.iter_mut().zip(gate).zip(up) {
            *y = g * sigmoid(g) * u;
        }
    }

    #[multiversion(targets(
        "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
        "x86_64+avx2+fma",
        "aarch64+neon"
    ))]
    fn backward_row(h: &[f32], dy: &[f32], dh: &mut [f32]) {
        let hidden = dy.len();
        let (gate, up) = h.split_at(hidden);
        let (d_gate, d_up) = dh.split_at_mut(hidden);
        for i in 0..hidden {
            let (g, s) = (gate[i], sigmoid(gate[i]));
            d_gate[i] = dy[i] * up[i] * s * (1.0 + g * (1.0 - s));
            d_up[i] = dy[i] * g * s;
        }
    }

    fn forward(h: &FlexTensor) -> FlexTensor {
        let shape = h.layout().shape().clone();
        let (n, width) = (shape[0], shape[1]);
        let hs: &[f32] = h.as_slice().expect("contiguous f32");
        let hidden = width / 2;
        let mut y = vec![0.0f32; n * hidden];
        y.par_chunks_mut(ROWS * hidden)
            .zip(hs.par_chunks(ROWS * width))
            .for_each(|(y, h)| {
                for (y, h) in y.chunks_exact_mut(hidden).zip(h.chunks_exact(width)) {
                    let (gate, up) = h.split_at(hidden);
                    forward_row(gate, up, y);
                }
            });
        FlexTensor::from_data(TensorData::new(y, [n, hidden]))
    }

    fn backward(h: &FlexTensor, dy: &FlexTensor) -> FlexTensor {
        let shape = h.layout().shape().clone();
        let width = shape[1];
        let hidden = width / 2;
        let hs: &[f32] = h.as_slice().expect("contiguous f32");
        let dys: &[f32] = dy.as_slice().expect("contiguous f32");
        let mut dh = vec![0.0f32; hs.len()];
        dh.par_chunks_mut(ROWS * width)
            .zip(
                hs.par_chunks(ROWS * width)
                    .zip(dys.par_chunks(ROWS * hidden)),
            )
            .for_each(|(dh, (h, dy))| {
                let rows = dh
                    .chunks_exact_mut(width)
                    .zip(h.chunks_exact(width).zip(dy.chunks_exact(hidden)));
                for (dh, (h, dy)) in rows {
                    backward_row(h, dy, dh);
                }
            });
        FlexTensor::from_data(TensorData::new(dh, [shape[0], width]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestAutodiff as A, TestBackend as B};
    use burn::tensor::{Distribution, Tolerance};

    /// The fused kernel against the tensor ops: values over the range a gate sees (far
    /// into both tails of the sigmoid), and gradients through a weighted sum.
    #[test]
    fn fused_gate_matches_the_tensor_ops_forward_and_backward() {
        let device = Default::default();
        let h = Tensor::<B, 2>::random([37, 2 * 344], Distribution::Normal(0.0, 4.0), &device);
        let w = Tensor::<B, 2>::random([37, 344], Distribution::Normal(0.0, 1.0), &device);
        gate(h.clone()).into_data().assert_approx_eq::<f32>(
            &gate_explicit(h.clone()).into_data(),
            Tolerance::absolute(1e-5),
        );
        let grad = |fused: bool| {
            let h = Tensor::<A, 2>::from_inner(h.clone()).require_grad();
            let y = if fused {
                gate(h.clone())
            } else {
                gate_explicit(h.clone())
            };
            let grads = (y * Tensor::from_inner(w.clone())).sum().backward();
            h.grad(&grads).expect("a gradient").into_data()
        };
        grad(true).assert_approx_eq::<f32>(&grad(false), Tolerance::absolute(1e-5));
    }
}
