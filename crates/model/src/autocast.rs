//! `dtype = "bfloat16"` on the CPU: bf16 products inside f32 matmuls, as PyTorch's CPU
//! autocast runs them.
//!
//! On a GPU the speed of bf16 is in its tensor cores and in moving half the bytes, so
//! [`crate::precision`] casts each branch's input down and runs the branch in bf16. Burn's
//! CPU backend (flex) has no bf16 kernels of its own: it converts bf16 tensors to f32 for a
//! matmul and back, which is slower than staying in f32. What a CPU does have is hardware
//! for bf16 *products*: AMX tiles (a 16 × 32 by 32 × 16 product per instruction) and
//! AVX512-BF16's pairwise dot products, both summing in f32 ([`crate::bf16_gemm`]). So on
//! flex the activations and the weights stay f32 in memory, and only the matmuls of the
//! linear layers (and of the tied head) round their operands to bf16 while packing them for
//! those instructions, summing in f32 — oneDNN's recipe under
//! `torch.autocast("cpu", dtype=torch.bfloat16)`, with f32 outputs where autocast rounds
//! them to bf16. Norms, softmax, the attention kernel's products, the loss and the
//! optimizer stay f32.
//!
//! The backward pass is two more products per matmul, dx = dy·wᵀ and dw = xᵀ·dy, in bf16
//! too, as under autocast. Products of fewer than [`MIN_ROWS`] rows (token-by-token
//! decoding) stay in f32: converting the weight for one row costs more than the product.
//! A CPU with neither AMX nor AVX512-BF16 computes in f32 and says so once on stderr.

use crate::bf16_gemm::{self, Bf16Isa};
use crate::fused_attention::{AutodiffFlexTensor, Kernel, downcast, kernel, upcast};
use crate::view::View;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::flex::{Flex, FlexTensor};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use std::sync::Once;

/// Below this many rows a product runs in f32 (see the module docs).
pub(crate) const MIN_ROWS: usize = 16;

/// Whether `B` keeps f32 activations under `dtype = "bfloat16"` (see the module docs):
/// the CPU backend, where [`matmul`] rounds inside the products instead.
pub(crate) fn keeps_f32<B: Backend>(dtype: DType) -> bool {
    kernel::<B>(dtype).is_some()
}

/// `x` (M, K) · `w` (K, N) → (M, N) in f32, the products in bf16 where the CPU has them.
/// Called only where [`keeps_f32`].
pub(crate) fn matmul<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    let kernel = kernel::<B>(x.dtype()).expect("called only on the CPU backend");
    let isa = match bf16_gemm::bf16_isa() {
        Some(isa) if x.dims()[0] >= MIN_ROWS => isa,
        found => {
            if found.is_none() {
                notice_f32();
            }
            return x.matmul(w);
        }
    };
    let (x, w) = (x.into_primitive().tensor(), w.into_primitive().tensor());
    match kernel {
        Kernel::Flex => {
            let x: FlexTensor = downcast(x).unwrap_or_else(|_| unreachable!());
            let w: FlexTensor = downcast(w).unwrap_or_else(|_| unreachable!());
            upcast(product(isa, &x, false, &w, false))
        }
        Kernel::AutodiffFlex => {
            let x: AutodiffFlexTensor = downcast(x).unwrap_or_else(|_| unreachable!());
            let w: AutodiffFlexTensor = downcast(w).unwrap_or_else(|_| unreachable!());
            upcast(matmul_autodiff(isa, x, w))
        }
    }
}

fn notice_f32() {
    static NOTICE: Once = Once::new();
    NOTICE.call_once(|| {
        eprintln!(
            "note: dtype = \"bfloat16\" computes in float32 here: this CPU has neither AMX nor \
             AVX512-BF16 for bf16 products"
        )
    });
}

/// Under autodiff: the forward product, and a graph node whose backward is two more.
fn matmul_autodiff(
    isa: Bf16Isa,
    x: AutodiffFlexTensor,
    w: AutodiffFlexTensor,
) -> AutodiffFlexTensor {
    let y = product(isa, &x.primitive, false, &w.primitive, false);
    match Bf16Matmul(isa)
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x.primitive, w.primitive), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

#[derive(Debug)]
struct Bf16Matmul(Bf16Isa);

impl Backward<Flex, 2> for Bf16Matmul {
    /// The two inputs, x and w.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Ops {
            parents,
            node,
            state: (x, w),
        } = ops;
        let isa = self.0;
        binary::<Flex, _, _>(
            parents,
            node,
            grads,
            |dy| product(isa, &dy, false, &w, true), // dx = dy·wᵀ
            |dy| product(isa, &x, true, &dy, false), // dw = xᵀ·dy
        );
    }
}

/// `a` · `b` (each transposed where asked) as a new contiguous f32 tensor, read in place
/// through their strides: a transpose is a view, never a copy.
fn product(isa: Bf16Isa, a: &FlexTensor, a_t: bool, b: &FlexTensor, b_t: bool) -> FlexTensor {
    let (a, av) = view(a, a_t);
    let (b, bv) = view(b, b_t);
    let mut out = vec![0.0f32; av.rows * bv.cols];
    let ov = View::dense(av.rows, bv.cols);
    bf16_gemm::gemm(
        isa,
        (&mut out, ov),
        (a.storage::<f32>(), av),
        (b.storage::<f32>(), bv),
        false,
    );
    FlexTensor::from_data(TensorData::new(out, [av.rows, bv.cols]))
}

/// A 2-d f32 tensor as a slice view (transposed if `t`); made contiguous first only where
/// its strides are negative (a flipped tensor).
fn view(x: &FlexTensor, t: bool) -> (FlexTensor, View) {
    let x = if x.layout().has_positive_strides() {
        x.clone()
    } else {
        x.to_contiguous()
    };
    let layout = x.layout();
    let (dims, strides) = (layout.shape(), layout.strides());
    let (rows, cols, rs, cs) = (dims[0], dims[1], strides[0] as usize, strides[1] as usize);
    let v = View {
        offset: layout.start_offset(),
        rows,
        cols,
        rs,
        cs,
    };
    (x, if t { v.t() } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestAutodiff, TestBackend as B, nearest_bf16};
    use burn::tensor::{Distribution, TensorData, Tolerance};

    fn random<BB: Backend>(shape: [usize; 2]) -> Tensor<BB, 2> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    /// `x` rounded to the nearest bfloat16, held in f32.
    fn rounded<BB: Backend>(x: Tensor<BB, 2>) -> Tensor<BB, 2> {
        let data = x.to_data();
        let values: Vec<f32> = data.iter::<f32>().map(nearest_bf16).collect();
        Tensor::from_data(TensorData::new(values, data.shape), &x.device())
    }

    /// Runs `test` where this CPU has bf16 products; says so where it does not.
    fn with_bf16_products(test: impl FnOnce()) {
        match bf16_gemm::bf16_isa() {
            Some(_) => test(),
            None => eprintln!("skipped: this CPU has neither AMX nor AVX512-BF16"),
        }
    }

    /// The product is f32's product of the inputs rounded to bf16: rounded, so not f32's
    /// own product, and summed in f32. A transposed right operand (the tied head's wteᵀ)
    /// is read through its strides.
    #[test]
    fn products_round_the_inputs_and_sum_in_f32() {
        with_bf16_products(|| {
            let (x, w) = (random::<B>([40, 72]), random::<B>([72, 24]));
            let reference = rounded(x.clone()).matmul(rounded(w.clone()));
            let y = matmul(x.clone(), w.clone());
            y.to_data()
                .assert_approx_eq::<f32>(&reference.to_data(), Tolerance::absolute(1e-4));
            let f32_diff = (y.clone() - x.clone().matmul(w.clone()))
                .abs()
                .max()
                .into_scalar();
            assert!(f32_diff > 1e-3, "the inputs were not rounded: {f32_diff}");
            let w_t = random::<B>([24, 72]); // read as its (72, 24) transpose
            matmul(x.clone(), w_t.clone().transpose())
                .to_data()
                .assert_approx_eq::<f32>(
                    &rounded(x).matmul(rounded(w_t).transpose()).to_data(),
                    Tolerance::absolute(1e-4),
                );
        });
    }

    /// Fewer rows than [`MIN_ROWS`] (decoding a token) keep f32's own product.
    #[test]
    fn few_rows_stay_f32() {
        let (x, w) = (random::<B>([MIN_ROWS - 1, 32]), random::<B>([32, 8]));
        matmul(x.clone(), w.clone())
            .to_data()
            .assert_eq(&x.matmul(w).to_data(), true);
    }

    /// Under autodiff both gradients, dx = dy·wᵀ and dw = xᵀ·dy, are the bf16 products of
    /// the same operands: with inputs and upstream gradient already bf16 numbers, exactly
    /// f32's gradients up to the order of the f32 sums.
    #[test]
    fn gradients_are_the_transposed_products() {
        with_bf16_products(|| {
            let x = rounded(random::<TestAutodiff>([48, 40])).require_grad();
            let w = rounded(random::<TestAutodiff>([40, 24])).require_grad();
            let c = rounded(random::<TestAutodiff>([48, 24]));
            let grads = (matmul(x.clone(), w.clone()) * c.clone()).sum().backward();
            let (dx, dw) = (x.grad(&grads).unwrap(), w.grad(&grads).unwrap());
            let (x2, w2) = (
                x.clone().detach().require_grad(),
                w.clone().detach().require_grad(),
            );
            let grads = (x2.clone().matmul(w2.clone()) * c).sum().backward();
            let tolerance = Tolerance::absolute(1e-4);
            dx.to_data()
                .assert_approx_eq::<f32>(&x2.grad(&grads).unwrap().to_data(), tolerance);
            dw.to_data()
                .assert_approx_eq::<f32>(&w2.grad(&grads).unwrap().to_data(), tolerance);
        });
    }
}
