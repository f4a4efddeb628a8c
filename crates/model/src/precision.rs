//! Mixed precision, nanoGPT's `dtype = "float32" | "bfloat16" | "float16"`, spelled out.
//!
//! PyTorch's autocast picks a precision per operation behind the user's back; Burn 0.21 has
//! none, so the model casts by hand, in few places, and every cast is differentiable (the
//! gradient comes back in the input's dtype):
//! - the parameters stay f32 ("master weights", and AdamW's moments with them): a bf16
//!   weight could not take an update smaller than 1/256 of itself;
//! - the residual stream stays f32: each block branch gets its input cast down after the
//!   norm ([`Precision::compute`]) and gives its output back up ([`to_stream`]), so the
//!   sum of many small branch outputs does not round away;
//! - matmuls run in the low precision — that is the speed: tensor cores — with each
//!   linear layer's weight cast to its input's dtype on use ([`linear`]);
//! - the statistics stay f32: norms run on the f32 stream, attention scores go up to f32
//!   for the mask and the softmax, and the logits go up to f32 before the loss.
//!
//! In float32 every cast is to the tensor's own dtype, which Burn skips: the lecture's
//! model runs exactly as it would without them. bfloat16 on the CPU backend casts nothing:
//! the activations stay f32 and the linear layers' products round inside the matmul
//! ([`crate::autocast`]), the one place a CPU gains from bf16.

use crate::autocast;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use serde::{Deserialize, Serialize};

/// The precision of the matmuls (see the module docs); nanoGPT's `dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything f32 (the default, and the CPU's).
    #[default]
    Float32,
    /// bfloat16 matmuls: f32's exponent range with 8 bits of mantissa; trains without
    /// loss scaling (nanoGPT's default on GPUs that have it).
    BFloat16,
    /// float16 matmuls: more mantissa, but the range ends at 65504 and small gradients
    /// underflow to 0, so training scales the loss (see the training crate's `LossScaler`).
    Float16,
}

impl Precision {
    /// The dtype of the low-precision work.
    pub fn float_dtype(self) -> FloatDType {
        match self {
            Precision::Float32 => FloatDType::F32,
            Precision::BFloat16 => FloatDType::BF16,
            Precision::Float16 => FloatDType::F16,
        }
    }

    /// The name in configs (`float32`, `bfloat16`, `float16`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::BFloat16 => "bfloat16",
            Precision::Float16 => "float16",
        }
    }

    /// Whether `B` can compute in this precision on `device`; a backend without the dtype
    /// would otherwise fail deep inside a kernel.
    pub fn supported_on<B: Backend>(self, device: &B::Device) -> bool {
        B::supports_dtype(device, DType::from(self.float_dtype()))
    }

    /// `x` cast down to the compute precision (a branch's input, after its norm); in
    /// bfloat16 on the CPU backend `x` stays f32 and the matmuls round inside
    /// ([`crate::autocast`]).
    pub(crate) fn compute<const D: usize, B: Backend>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        if autocasts::<B>(self, x.dtype()) {
            return x;
        }
        x.cast(self.float_dtype())
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `x` back in f32: a branch's output on its way into the residual stream, scores on their
/// way into the softmax, logits on their way into the loss.
pub(crate) fn to_stream<const D: usize, B: Backend>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.cast(FloatDType::F32)
}

/// `layer` applied to the rows of `x` (N, C_in) in `precision`: on the CPU backend through
/// [`crate::autocast`]'s bf16 products, elsewhere in `x`'s dtype, with the f32 weight and
/// bias cast on use.
pub(crate) fn linear<B: Backend>(
    layer: &Linear<B>,
    x: Tensor<B, 2>,
    precision: Precision,
) -> Tensor<B, 2> {
    if autocasts::<B>(precision, x.dtype()) {
        let y = autocast::matmul(x, layer.weight.val());
        return match &layer.bias {
            Some(b) => y + b.val().unsqueeze(),
            None => y,
        };
    }
    let dtype: FloatDType = x.dtype().into();
    burn::tensor::module::linear(
        x,
        layer.weight.val().cast(dtype),
        layer.bias.as_ref().map(|b| b.val().cast(dtype)),
    )
}

/// `x` (N, K) · `w` (K, M) in `precision`, `w` (f32) cast to `x`'s dtype on use, or through
/// [`crate::autocast`] on the CPU backend.
pub(crate) fn matmul<B: Backend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    precision: Precision,
) -> Tensor<B, 2> {
    if autocasts::<B>(precision, x.dtype()) {
        return autocast::matmul(x, w);
    }
    let dtype: FloatDType = x.dtype().into();
    x.matmul(w.cast(dtype))
}

/// Whether a matmul of `B` on `dtype` data in `precision` goes through [`crate::autocast`].
fn autocasts<B: Backend>(precision: Precision, dtype: DType) -> bool {
    precision == Precision::BFloat16 && autocast::keeps_f32::<B>(dtype)
}

/// `norm` (f32 parameters: LayerNorm, RMSNorm) on `x` in f32, its result back in `x`'s
/// dtype: the statistics of a low-precision tensor are taken in f32.
pub(crate) fn norm_in_f32<const D: usize, B: Backend>(
    x: Tensor<B, D>,
    norm: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    let dtype: FloatDType = x.dtype().into();
    norm(to_stream(x)).cast(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{
        TestAutodiff, TestBackend as B, random_ids, seeded_weights, small_config,
    };
    use crate::{Gpt, GptConfig, cross_entropy};
    use burn::module::Module;

    fn config(dtype: Precision) -> GptConfig {
        GptConfig {
            rope: true, // its tables are cast too
            qk_norm: true,
            dtype,
            ..small_config()
        }
    }

    /// The f32 model, its weights from a fixed seed. The bounds below hold for typical
    /// weights, not for every draw: of 4,500 draws of the initial weights one gave a
    /// bfloat16 gradient cosine of 0.989, and one full-suite run in 465 failed at 0.974.
    fn f32_model<BB: Backend>() -> Gpt<BB> {
        let device = Default::default();
        seeded_weights(Gpt::new(&config(Precision::Float32), &device).unwrap(), 17)
    }

    /// The f32 model's weights computed in `dtype`.
    fn same_weights<BB: Backend>(f32_model: &Gpt<BB>, dtype: Precision) -> Gpt<BB> {
        let device = f32_model.devices()[0].clone();
        Gpt::<BB>::new(&config(dtype), &device)
            .unwrap()
            .load_record(f32_model.clone().into_record())
    }

    /// The same weights give logits within bf16's/f16's rounding of the f32 ones, handed
    /// back in f32; the parameters stay f32.
    #[test]
    fn low_precision_logits_follow_f32() {
        let device = Default::default();
        let model = f32_model::<B>();
        let idx = random_ids::<B>([2, 16], 65, 3, &device);
        let reference = model.forward(idx.clone()).unwrap();
        for (dtype, tolerance) in [(Precision::BFloat16, 0.05), (Precision::Float16, 0.01)] {
            let low = same_weights(&model, dtype);
            let logits = low.forward(idx.clone()).unwrap();
            assert_eq!(
                logits.dtype(),
                DType::F32,
                "{dtype}: logits for the loss in f32"
            );
            let diff: f32 = (logits - reference.clone()).abs().max().into_scalar();
            assert!(diff < tolerance, "{dtype}: max |Δlogit| = {diff}");
            let mut dtypes = Vec::new();
            struct Dtypes<'a>(&'a mut Vec<DType>);
            impl<BB: Backend> burn::module::ModuleVisitor<BB> for Dtypes<'_> {
                fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<BB, D>>) {
                    self.0.push(p.val().dtype());
                }
            }
            low.visit(&mut Dtypes(&mut dtypes));
            assert!(
                dtypes.iter().all(|&d| d == DType::F32),
                "{dtype}: master weights f32"
            );
        }
    }

    /// Gradients flow back through every cast into the f32 parameters, in f32, and
    /// point where the f32 model's do.
    #[test]
    fn gradients_reach_the_f32_weights() {
        let device = Default::default();
        let model = f32_model::<TestAutodiff>();
        let idx = random_ids::<TestAutodiff>([2, 16], 65, 5, &device);
        let targets = random_ids::<TestAutodiff>([2, 16], 65, 6, &device);
        let grad_of = |m: &Gpt<TestAutodiff>| {
            let grads = cross_entropy(m.forward(idx.clone()).unwrap(), targets.clone()).backward();
            let w = m.blocks[0].attn.c_attn.weight.val();
            w.grad(&grads).expect("c_attn's weight has a gradient")
        };
        let reference = grad_of(&model);
        for dtype in [Precision::BFloat16, Precision::Float16] {
            let g = grad_of(&same_weights(&model, dtype));
            assert_eq!(g.dtype(), DType::F32, "{dtype}");
            let cos: f32 = ((g.clone() * reference.clone()).sum()
                / (g.powi_scalar(2).sum().sqrt() * reference.clone().powi_scalar(2).sum().sqrt()))
            .into_scalar();
            assert!(cos > 0.99, "{dtype}: cosine with the f32 gradient {cos}");
        }
    }
}
