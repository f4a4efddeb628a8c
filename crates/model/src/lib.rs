//! The networks of the lecture, generic over any Burn [`Backend`](burn::prelude::Backend):
//! the bigram baseline and the GPT it grows into. No I/O and no training loop here.
//!
//! Reading order follows the lecture: [`bigram`] → [`attention`] → [`mlp`] → [`block`] →
//! [`gpt`], then [`loss`] and [`generate`]. [`config`] holds the hyperparameters.

pub mod attention;
#[cfg(feature = "fused")]
mod autocast;
#[cfg(feature = "fused")]
mod bf16_gemm;
pub mod bigram;
pub mod block;
pub mod config;
pub mod cpu;
#[cfg(feature = "fused")]
mod fused_attention;
mod gelu;
pub mod generate;
pub mod gpt;
pub mod hf;
mod init;
pub mod kv_cache;
pub mod lecture;
pub mod lm;
pub mod loss;
pub mod mlp;
pub mod norm;
mod per_token;
#[cfg(feature = "fused")]
mod position_qk;
pub mod precision;
pub mod rope;
mod swiglu;
#[cfg(feature = "fused")]
mod view;

pub use attention::{AttentionPath, attention_path};
pub use bigram::BigramLanguageModel;
pub use config::{Activation, GptConfig, ModelKind, Norm, SWITCHES, Switch};
pub use generate::{Decoder, Sampling, Sequence, extend, finish, generate, step};
pub use gpt::Gpt;
pub use kv_cache::KvCache;
pub use lm::{LanguageModel, Model, num_params};
pub use loss::cross_entropy;
pub use precision::Precision;

/// Mistakes in a model's configuration or use, worded for the person who made them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    #[error("sequence of {t} tokens is longer than block_size {block_size}")]
    SequenceTooLong { t: usize, block_size: usize },
    #[error("cannot generate from an empty prompt: give at least one token")]
    EmptyPrompt,
    #[error("invalid sampling option: {0}")]
    InvalidSampling(String),
    #[error("the bigram model has no attention layers: attention maps need a GPT")]
    NoAttention,
    #[error(
        "the model's logits are not finite numbers (its weights hold NaN or infinity: was it trained with a loss that diverged?)"
    )]
    NonFiniteLogits,
    #[error(
        "dtype = \"{dtype}\" is not supported by the {backend} backend on this device: use dtype = \"float32\"{}",
        if *dtype == crate::Precision::BFloat16 { " or \"float16\"" } else { "" }
    )]
    UnsupportedDtype {
        dtype: crate::Precision,
        backend: String,
    },
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// Built without the `fused` feature: no kernel, every backend takes the explicit path.
#[cfg(not(feature = "fused"))]
mod fused_attention {
    use burn::prelude::*;
    use burn::tensor::DType;

    pub(crate) fn applies<B: Backend>(_dtype: DType) -> bool {
        false
    }

    pub(crate) fn notice_fallback<B: Backend>(_dtype: DType) {}

    pub(crate) fn causal_self_attention<B: Backend>(
        _qkv: Tensor<B, 3>,
        _n_head: usize,
        _n_kv_head: usize,
        _dropout: f64,
    ) -> Tensor<B, 3> {
        unreachable!("without the `fused` feature the kernel is never picked")
    }
}

/// Built without the `fused` feature: no bf16 CPU products, bfloat16 casts as on a GPU.
#[cfg(not(feature = "fused"))]
mod autocast {
    use burn::prelude::*;
    use burn::tensor::DType;

    pub(crate) fn keeps_f32<B: Backend>(_dtype: DType) -> bool {
        false
    }

    pub(crate) fn matmul<B: Backend>(_x: Tensor<B, 2>, _w: Tensor<B, 2>) -> Tensor<B, 2> {
        unreachable!("without the `fused` feature the CPU backend casts as every other")
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use burn::backend::{Autodiff, Flex};
    use burn::prelude::*;

    pub type TestBackend = Flex;
    pub type TestAutodiff = Autodiff<Flex>;

    /// The bf16 nearest `x`, held in an f32, written independently of the kernels' rounding:
    /// compare the dropped half with one half, ties to the even kept half. Burn's own cast
    /// is no reference: flex casts through f64 with `half::bf16::from_f64`, which forgets
    /// the f32's lowest three bits and so rounds some values just above a tie down.
    pub fn nearest_bf16(x: f32) -> f32 {
        if x.is_nan() {
            return f32::NAN;
        }
        let (kept, dropped) = (x.to_bits() >> 16, x.to_bits() & 0xffff);
        let up = dropped > 0x8000 || (dropped == 0x8000 && kept & 1 == 1);
        f32::from_bits((kept + u32::from(up)) << 16)
    }

    /// Random token ids in `0..vocab`, reproducible from `seed`.
    pub fn random_ids<B: Backend>(
        shape: [usize; 2],
        vocab: usize,
        seed: u64,
        device: &B::Device,
    ) -> Tensor<B, 2, Int> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let ids: Vec<i64> = (0..shape[0] * shape[1])
            .map(|_| rng.random_range(0..vocab as i64))
            .collect();
        Tensor::from_data(TensorData::new(ids, shape).convert::<B::IntElem>(), device)
    }

    /// `module` with every drawn weight drawn again, uniform with the initial std of 0.02, by
    /// a generator seeded with `seed`; constant parameters (zero biases, norm gains of one)
    /// are kept. A test whose bound holds for most initial weights but not all (a
    /// low-precision gradient's direction) then checks the same weights on every run,
    /// whatever draws of the shared generator the tests running beside it took.
    pub fn seeded_weights<B: Backend, M: burn::module::Module<B>>(module: M, seed: u64) -> M {
        use burn::module::{ModuleMapper, Param};
        use rand::{Rng, SeedableRng};
        struct Redraw(rand::rngs::StdRng);
        impl<B: Backend> ModuleMapper<B> for Redraw {
            fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                p.map(|t| {
                    let values = t.to_data().convert::<f32>().to_vec::<f32>().unwrap();
                    if values.iter().all(|&v| v == values[0]) {
                        return t;
                    }
                    let a = (crate::init::STD * 3f64.sqrt()) as f32;
                    let drawn = (0..values.len()).map(|_| self.0.random_range(-a..a));
                    let data = TensorData::new(drawn.collect::<Vec<f32>>(), t.shape());
                    Tensor::from_data(data, &t.device()).set_require_grad(t.is_require_grad())
                })
            }
        }
        module.map(&mut Redraw(rand::rngs::StdRng::seed_from_u64(seed)))
    }

    /// A GPT small enough to train in a test: the lecture's shape at a fraction of the size,
    /// on Tiny Shakespeare's 65 characters, without dropout so that runs are deterministic.
    pub fn small_config() -> crate::GptConfig {
        crate::GptConfig {
            vocab_size: 65,
            block_size: 16,
            n_layer: 2,
            n_head: 4,
            n_embd: 32,
            dropout: 0.0,
            ..crate::GptConfig::default()
        }
    }

    /// Trains `model` on one fixed batch of random ids with AdamW (no weight decay) and
    /// asserts that it memorises it: the loss drops below 0.1 within 300 steps.
    pub fn assert_overfits(mut model: crate::Gpt<TestAutodiff>) {
        use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
        let device = Default::default();
        let mut optim = AdamWConfig::new()
            .with_weight_decay(0.0)
            .init::<TestAutodiff, crate::Gpt<TestAutodiff>>();
        let x = random_ids::<TestAutodiff>([4, 16], 65, 7, &device);
        let y = random_ids::<TestAutodiff>([4, 16], 65, 8, &device);
        let mut loss = f32::INFINITY;
        for _ in 0..300 {
            let l = crate::cross_entropy(model.forward(x.clone()).unwrap(), y.clone());
            loss = l.clone().into_scalar();
            if loss < 0.1 {
                break;
            }
            let grads = GradientsParams::from_grads(l.backward(), &model);
            model = optim.step(3e-3, model, grads);
        }
        assert!(loss < 0.1, "loss after 300 steps: {loss}");
    }
}
