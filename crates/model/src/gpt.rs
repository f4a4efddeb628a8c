//! The GPT: token and position embeddings, a stack of blocks, a final LayerNorm and a
//! linear head that reads next-token logits off the residual stream.

use crate::block::{self, Block};
use crate::init::{embedding, linear, linear_params};
use crate::norm::{self, NormLayer};
use crate::per_token::per_token;
use crate::precision::{self, Precision, to_stream};
use crate::{GptConfig, KvCache, ModelError, Result};
use burn::nn::{Embedding, Linear};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Gpt<B: Backend> {
    /// Token embedding: what each token is.
    wte: Embedding<B>,
    /// Learned position embedding: where it is. Attention alone works on sets, so without
    /// this the model could not tell "ab" from "ba". `None` with `rope`, where attention
    /// itself rotates q and k by position instead.
    wpe: Option<Embedding<B>>,
    pub(crate) blocks: Vec<Block<B>>,
    /// The final norm: LayerNorm, or RMSNorm with `norm = "rmsnorm"`.
    ln_f: NormLayer<B>,
    /// Reads the logits off the residual stream; `None` when tied to `wte`
    /// (`tie_weights`), whose matrix then does both jobs.
    lm_head: Option<Linear<B>>,
    block_size: usize,
    /// `logit_softcap`: logits become cap·tanh(logits/cap) when > 0.
    logit_softcap: f64,
    /// The matmuls' precision (`dtype`, see [`crate::precision`]).
    #[module(skip)]
    precision: Precision,
}

impl<B: Backend> Gpt<B> {
    /// Builds a freshly initialised GPT, refusing configs that cannot work.
    pub fn new(config: &GptConfig, device: &B::Device) -> Result<Self> {
        config.validate()?;
        if !config.dtype.supported_on::<B>(device) {
            return Err(ModelError::UnsupportedDtype {
                dtype: config.dtype,
                backend: B::name(device),
            });
        }
        Ok(Self {
            wte: embedding(config.vocab_size, config.n_embd, device),
            wpe: (!config.rope).then(|| embedding(config.block_size, config.n_embd, device)),
            blocks: (0..config.n_layer)
                .map(|_| Block::new(config, device))
                .collect(),
            ln_f: NormLayer::new(config, device),
            lm_head: (!config.tie_weights)
                .then(|| linear(config.n_embd, config.vocab_size, config.bias, device)),
            block_size: config.block_size,
            logit_softcap: config.logit_softcap,
            precision: config.dtype,
        })
    }

    /// The parameters of the learned position table `wpe` (none with RoPE): nanoGPT
    /// leaves them out of its count and its FLOPs estimate.
    pub fn position_params(&self) -> usize {
        self.wpe.as_ref().map_or(0, |wpe| wpe.num_params())
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The same model for contexts of at most `block_size` ≤ the current one: the
    /// position table loses its later rows (nanoGPT's `crop_block_size`, to finetune
    /// GPT-2 on shorter contexts).
    pub fn crop_block_size(mut self, block_size: usize) -> Result<Self> {
        if block_size == 0 || block_size > self.block_size {
            return Err(ModelError::InvalidConfig(format!(
                "block_size {block_size} cannot crop a model of block_size {}",
                self.block_size
            )));
        }
        // RoPE's table needs no cropping: positions past block_size are never asked for.
        if let Some(wpe) = &mut self.wpe {
            let c = wpe.weight.dims()[1];
            // Detached: the cropped table is a new leaf, a parameter like any other.
            wpe.weight = wpe
                .weight
                .clone()
                .map(|w| w.slice([0..block_size, 0..c]).detach());
        }
        self.block_size = block_size;
        Ok(self)
    }

    /// The same model with a vocabulary grown to `vocab_size` (a base run's tokens
    /// followed by new ones, such as the chat tokens): `wte`'s rows and, untied,
    /// `lm_head`'s columns and biases for the old tokens stay bit for bit, so the old
    /// tokens' logits do not change. Each new row, column and bias starts as the mean of
    /// the old ones (as Hugging Face's `resize_token_embeddings` does): a new token then
    /// reads as an average token, and starts as likely as one, instead of as noise.
    pub fn grow_vocab(mut self, vocab_size: usize) -> Result<Self> {
        let old = self.wte.weight.dims()[0];
        if vocab_size < old {
            return Err(ModelError::InvalidConfig(format!(
                "a vocabulary of {old} tokens cannot shrink to {vocab_size}"
            )));
        }
        let new = vocab_size - old;
        // Rows along `dim` of `t`, followed by `new` copies of their mean; detached, so the
        // grown tensor is a new leaf, a parameter like any other.
        fn grown<B: Backend, const D: usize>(
            t: Tensor<B, D>,
            dim: usize,
            new: usize,
        ) -> Tensor<B, D> {
            let mean = t.clone().mean_dim(dim);
            let mut dims = mean.dims();
            dims[dim] = new;
            Tensor::cat(vec![t, mean.expand(dims)], dim).detach()
        }
        self.wte.weight = self.wte.weight.clone().map(|w| grown(w, 0, new));
        if let Some(head) = &mut self.lm_head {
            head.weight = head.weight.clone().map(|w| grown(w, 1, new));
            if let Some(bias) = &mut head.bias {
                *bias = bias.clone().map(|b| grown(b, 0, new));
            }
        }
        Ok(self)
    }

    /// `idx` (B, T) token ids, 1 ≤ T ≤ block_size → logits (B, T, vocab_size).
    pub fn forward(&self, idx: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>> {
        let x = self.embed(idx, 0)?;
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        Ok(self.head(x))
    }

    /// The attention weights the model gives `idx` (B, T), 1 ≤ T ≤ block_size: one
    /// (B, n_head, T, T) tensor per layer, first layer first. Entry [b, h, i, j] is how
    /// much query position i of head h listens to key position j: each row is a softmax
    /// over j ≤ i and exactly 0 above the diagonal. Taken from a forward pass over the
    /// whole of `idx` (no KV cache), before dropout; call it on an inference model
    /// (no autodiff), where dropout is off anyway.
    pub fn attention_maps(&self, idx: Tensor<B, 2, Int>) -> Result<Vec<Tensor<B, 4>>> {
        Ok(self.forward_with_attention(idx)?.1)
    }

    /// [`forward`](Self::forward)'s logits together with the
    /// [`attention_maps`](Self::attention_maps) of the same pass. The attention runs as
    /// explicit tensor ops, so the weights exist as tensors; the fused CPU kernel computes
    /// the same function without storing them (the logits agree to float rounding).
    pub fn forward_with_attention(
        &self,
        idx: Tensor<B, 2, Int>,
    ) -> Result<(Tensor<B, 3>, Vec<Tensor<B, 4>>)> {
        let mut weights = Vec::with_capacity(self.blocks.len());
        let x = self.embed(idx, 0)?;
        let x = self
            .blocks
            .iter()
            .fold(x, |x, block| block.forward_recording(x, &mut weights));
        Ok((self.head(x), weights))
    }

    /// As [`forward`](Self::forward) for `idx` holding the tokens that follow the
    /// `cache.len()` tokens already in `cache`; their keys and values are appended to it.
    /// The positions continue from `cache.len()`, up to block_size in all.
    pub fn forward_cached(
        &self,
        idx: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>> {
        let t = idx.dims()[1];
        let mut x = self.embed(idx, cache.len())?;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward_cached(x, cache.layer(i));
        }
        cache.advance(t);
        Ok(self.head(x))
    }

    /// One new token per sequence, `idx` (B, 1), row i after the tokens in `caches[i]`
    /// (sequences of different lengths decoded together) → logits (B, 1, vocab_size).
    /// Each row's token is at its own position, and its keys and values go to its own
    /// cache; the layers' matrix products run on all rows at once.
    pub fn forward_step(
        &self,
        idx: Tensor<B, 2, Int>,
        caches: &mut [&mut KvCache<B>],
    ) -> Result<Tensor<B, 3>> {
        let [b, t] = idx.dims();
        assert_eq!((b, t), (caches.len(), 1), "one new token per cache");
        if let Some(full) = caches.iter().find(|c| c.len() + 1 > self.block_size) {
            return Err(ModelError::SequenceTooLong {
                t: full.len() + 1,
                block_size: self.block_size,
            });
        }
        let positions: Vec<i64> = caches.iter().map(|c| c.len() as i64).collect();
        let device = idx.device();
        let pos = Tensor::<B, 1, Int>::from_data(
            TensorData::new(positions, [b]).convert::<B::IntElem>(),
            &device,
        )
        .unsqueeze_dim::<2>(1); // (B, 1)
        let mut x = self.with_positions(self.wte.forward(idx), pos);
        for (i, block) in self.blocks.iter().enumerate() {
            let mut layer: Vec<_> = caches.iter_mut().map(|c| c.layer(i)).collect();
            x = block.forward_step(x, &mut layer);
        }
        for cache in caches.iter_mut() {
            cache.advance(1);
        }
        Ok(self.head(x))
    }

    /// Token plus position embeddings (B, T, C) of `idx`, its first token at position
    /// `past` (token embeddings alone with RoPE, which adds positions inside attention).
    fn embed(&self, idx: Tensor<B, 2, Int>, past: usize) -> Result<Tensor<B, 3>> {
        let [_, t] = idx.dims();
        if past + t > self.block_size {
            return Err(ModelError::SequenceTooLong {
                t: past + t,
                block_size: self.block_size,
            });
        }
        let positions = past as i64..(past + t) as i64;
        let pos = Tensor::<B, 1, Int>::arange(positions, &idx.device()).unsqueeze::<2>(); // (1, T)
        Ok(self.with_positions(self.wte.forward(idx), pos))
    }

    /// Token embeddings (B, T, C) plus the position embeddings of `pos` ((1, T) shared by
    /// the batch, or (B, 1) a position per row); with RoPE, the token embeddings alone.
    fn with_positions(&self, tok_emb: Tensor<B, 3>, pos: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        match &self.wpe {
            Some(wpe) => tok_emb + wpe.forward(pos), // broadcast over the batch or time
            None => tok_emb,
        }
    }

    /// The residual stream (B, T, C) → next-token logits (B, T, vocab_size).
    fn head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.precision.compute(self.ln_f.forward(x));
        let logits = match &self.lm_head {
            Some(lm_head) => per_token(lm_head, x, self.precision),
            // Tied: each logit is the dot product of the stream with a token's embedding.
            // Autodiff sums the gradients of both uses into wte's one matrix.
            None => {
                let [b, t, c] = x.dims();
                let wte = self.wte.weight.val(); // (V, C)
                let v = wte.dims()[0];
                precision::matmul(x.reshape([b * t, c]), wte.transpose(), self.precision) // (B·T, V)
                    .reshape([b, t, v])
            }
        };
        // Smooth and ≈ the identity for |logit| ≪ cap, so small logits train as uncapped ones,
        // while none can grow past ±cap and make the loss spike.
        // The loss (and sampling's softmax) in f32.
        let logits = to_stream(logits);
        let cap = self.logit_softcap;
        if cap > 0.0 {
            logits.div_scalar(cap).tanh().mul_scalar(cap)
        } else {
            logits
        }
    }

    /// Whether `lm_head` shares `wte`'s matrix (see [`GptConfig::tie_weights`]).
    pub fn is_tied(&self) -> bool {
        self.lm_head.is_none()
    }
}

/// The parameters [`Gpt::new`] makes, counted from the config alone, before
/// anything is allocated (the memory check's input); `None` past u128.
pub(crate) fn params(config: &GptConfig) -> Option<u128> {
    let (v, c, t) = (config.vocab_size, config.n_embd, config.block_size);
    let table = |rows: usize| (rows as u128).checked_mul(c as u128);
    [
        table(v)?,                               // wte
        if config.rope { 0 } else { table(t)? }, // wpe
        block::params(config)?.checked_mul(config.n_layer as u128)?,
        norm::params(config), // ln_f
        if config.tie_weights {
            0
        } else {
            linear_params(c, v, config.bias)?
        }, // lm_head
    ]
    .iter()
    .try_fold(0u128, |sum, &p| sum.checked_add(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross_entropy;
    use crate::test_util::{
        TestAutodiff, TestBackend as B, assert_overfits, random_ids, small_config as small,
    };
    use burn::module::Module;

    #[test]
    fn parameter_counts_match_the_lecture_and_pytorch() {
        let device = Default::default();
        let full = Gpt::<B>::new(&GptConfig::default(), &device).unwrap();
        assert_eq!(full.num_params(), 10_788_929); // the lecture's "10.788929 M parameters"
        let cpu = GptConfig {
            block_size: 64,
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            ..GptConfig::default()
        };
        assert_eq!(Gpt::<B>::new(&cpu, &device).unwrap().num_params(), 816_705);
    }

    /// Each switch of [`crate::SWITCHES`] alone, multi-query attention, all of them
    /// together; then every combination of the GPT-2 switches that changes the forward
    /// pass, with each activation.
    fn switch_configs() -> Vec<GptConfig> {
        let mut configs: Vec<GptConfig> = crate::SWITCHES
            .iter()
            .map(|switch| {
                let mut config = small();
                (switch.turn_on)(&mut config);
                config
            })
            .collect();
        configs.push(GptConfig {
            n_kv_head: 1,
            ..small()
        });
        configs.push(small().with_every_switch());
        for activation in crate::Activation::ALL {
            for (bias, qkv_bias) in [(true, false), (false, false), (true, true)] {
                for tie_weights in [false, true] {
                    configs.push(GptConfig {
                        activation,
                        bias,
                        qkv_bias,
                        tie_weights,
                        scaled_init: tie_weights,
                        layer_norm_eps: if bias { 1e-5 } else { 1e-3 },
                        ..small()
                    });
                }
            }
        }
        configs
    }

    /// The count the memory check makes from the config is the built model's, for every
    /// switch (and the bigram model).
    #[test]
    fn the_parameter_count_from_the_config_is_the_built_models() {
        let device = Default::default();
        let bigram = GptConfig {
            model: crate::ModelKind::Bigram,
            ..small()
        };
        for config in switch_configs().into_iter().chain([bigram]) {
            let built = crate::Model::<B>::new(&config, &device).unwrap();
            assert_eq!(
                crate::num_params(&config),
                Some(built.num_params() as u128),
                "{config:?}"
            );
        }
    }

    /// With tying and the scaled init on, nanoGPT's shakespeare_char preset is nanoGPT's
    /// model: 10,745,088 parameters (nanoGPT prints 10.65M, leaving out wpe's 98,304).
    #[test]
    fn nanogpt_preset_has_nanogpts_parameter_count() {
        let text = include_str!("../../../experiments/nanogpt_shakespeare_char.toml");
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut config: GptConfig = table["model"].clone().try_into().unwrap();
        config.vocab_size = 65;
        assert!(config.tie_weights && config.scaled_init && !config.bias);
        let model = Gpt::<B>::new(&config, &Default::default()).unwrap();
        assert_eq!(model.num_params(), 10_745_088);
        assert_eq!(model.num_params() - 256 * 384, 10_646_784); // nanoGPT's "10.65M"
        // Untied, lm_head adds its own vocab_size × n_embd matrix.
        let untied = GptConfig {
            tie_weights: false,
            ..config
        };
        let untied = Gpt::<B>::new(&untied, &Default::default()).unwrap();
        assert_eq!(untied.num_params(), 10_745_088 + 65 * 384);
    }

    /// SwiGLU's three matrices hold within 2 % of the weights of the 4× MLP's two, and
    /// grouped-query attention shrinks only the key/value projection.
    #[test]
    fn modern_switches_keep_or_shrink_the_parameter_count() {
        let device = Default::default();
        for n_embd in [128, 384, 768] {
            let config = GptConfig {
                n_embd,
                n_head: 4,
                block_size: 8,
                n_layer: 1,
                ..small()
            };
            let mlp = |c: &GptConfig| crate::mlp::Mlp::<B>::new(c, &device).num_params() as f64;
            let swiglu = GptConfig {
                activation: crate::Activation::SwiGlu,
                ..config.clone()
            };
            let ratio = mlp(&swiglu) / mlp(&config);
            assert!(
                (ratio - 1.0).abs() < 0.02,
                "n_embd {n_embd}: SwiGLU/GELU {ratio}"
            );
        }
        let gqa = GptConfig {
            n_kv_head: 1,
            ..small()
        };
        let (full, grouped) = (
            Gpt::<B>::new(&small(), &device).unwrap().num_params(),
            Gpt::<B>::new(&gqa, &device).unwrap().num_params(),
        );
        // Per layer, k and v lose (n_head - 1) of their 4 heads of 8: 2·32·24 weights.
        assert_eq!(full - grouped, 2 * (2 * 32 * 24));
    }

    /// GPT-2 124M's parameter count (Hugging Face's `num_parameters()`: 124,439,808).
    #[test]
    fn gpt2_shape_has_gpt2s_parameter_count() {
        let config = crate::hf::HfGpt2Config::named("gpt2")
            .unwrap()
            .to_gpt_config()
            .unwrap();
        // Count from the shapes: building 124M parameters here would only be slower.
        let (v, t, c, l) = (50257, 1024, 768, 12);
        let per_layer =
            2 * (2 * c) + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c);
        assert_eq!(v * c + t * c + l * per_layer + 2 * c, 124_439_808);
        let tiny = GptConfig {
            n_layer: 1,
            ..config.clone()
        };
        let model = Gpt::<B>::new(&tiny, &Default::default()).unwrap();
        assert_eq!(model.num_params(), v * c + t * c + per_layer + 2 * c);
        assert!(model.is_tied());
    }

    /// nanoGPT's scaled init: the residual projections start at std 0.02/√(2·n_layer),
    /// everything else at 0.02.
    #[test]
    fn scaled_init_shrinks_the_residual_projections() {
        let std = |t: Tensor<B, 2>| {
            let v = t.into_data().to_vec::<f32>().unwrap();
            let n = v.len() as f64;
            (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / n).sqrt()
        };
        let config = GptConfig {
            n_layer: 8,
            n_embd: 64,
            n_head: 4,
            ..small()
        };
        for scaled in [false, true] {
            let model = Gpt::<B>::new(
                &GptConfig {
                    scaled_init: scaled,
                    ..config.clone()
                },
                &Default::default(),
            )
            .unwrap();
            let expected = if scaled { 0.02 / 4.0 } else { 0.02 }; // √(2·8) = 4
            let block = &model.blocks[3];
            for w in [
                block.attn.c_proj.weight.val(),
                block.mlp.c_proj.weight.val(),
            ] {
                let s = std(w);
                assert!((s / expected - 1.0).abs() < 0.1, "{s} vs {expected}");
            }
            let s = std(block.attn.c_attn.weight.val());
            assert!((s / 0.02 - 1.0).abs() < 0.1, "c_attn std {s}");
        }
    }

    /// Growing the vocabulary (a base run becoming a chat run) keeps every old row bit for
    /// bit, so the old tokens' logits start as the base's; the new rows are the old mean.
    #[test]
    fn a_grown_vocabulary_keeps_the_old_tokens() {
        let device = Default::default();
        for tie_weights in [false, true] {
            let config = GptConfig {
                tie_weights,
                ..small()
            };
            let base = Gpt::<B>::new(&config, &device).unwrap();
            // Parameters are drawn when first read: read them all before cloning, or the
            // clone would draw its own.
            let idx = random_ids::<B>([2, 16], 65, 3, &device);
            let before = base.forward(idx.clone()).unwrap();
            let rows = |m: &Gpt<B>| m.wte.weight.val().into_data().to_vec::<f32>().unwrap();
            let old = rows(&base);
            let mean = base
                .wte
                .weight
                .val()
                .mean_dim(0)
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let grown = base.clone().grow_vocab(70).unwrap();
            let new = rows(&grown);
            assert_eq!(new.len(), 70 * 32);
            assert_eq!(old[..], new[..65 * 32]);
            for row in new[65 * 32..].chunks(32) {
                assert_eq!(row, &mean[..]);
            }
            let after = grown.forward(idx).unwrap();
            assert_eq!(after.dims(), [2, 16, 70]);
            after
                .slice([0..2, 0..16, 0..65])
                .into_data()
                .assert_approx_eq::<f32>(
                    &before.into_data(),
                    burn::tensor::Tolerance::absolute(1e-6),
                );
            assert_eq!(
                grown.num_params() - base.num_params(),
                5 * 32 + if tie_weights { 0 } else { 5 * 32 + 5 }
            );
        }
        assert!(
            Gpt::<B>::new(&small(), &device)
                .unwrap()
                .grow_vocab(64)
                .is_err()
        );
    }

    /// Tied, the logits are the final stream times wteᵀ, and no lm_head exists.
    #[test]
    fn tied_head_reads_logits_off_wte() {
        let device = Default::default();
        let config = GptConfig {
            tie_weights: true,
            ..small()
        };
        let model = Gpt::<B>::new(&config, &device).unwrap();
        assert!(model.is_tied());
        let idx = random_ids::<B>([2, 16], 65, 3, &device);
        let x = model.embed(idx.clone(), 0).unwrap();
        let x = model.blocks.iter().fold(x, |x, b| b.forward(x));
        let x = model.ln_f.forward(x);
        let by_hand = x.matmul(model.wte.weight.val().transpose().unsqueeze::<3>());
        model
            .forward(idx)
            .unwrap()
            .into_data()
            .assert_approx_eq::<f32>(&by_hand.into_data(), Default::default());
        let untied = Gpt::<B>::new(&small(), &device).unwrap();
        assert_eq!(
            untied.num_params() - model.num_params(),
            32 * 65 + 65 // lm_head's matrix and bias
        );
    }

    /// For every switch: the fused kernel's forward pass equals the explicit path's, and
    /// the KV cache gives the logits of a full recompute at every step.
    #[test]
    fn every_switch_keeps_fused_attention_and_kv_cache_exact() {
        let device = Default::default();
        for (i, config) in switch_configs().into_iter().enumerate() {
            let model = Gpt::<B>::new(&config, &device).unwrap();
            let ids = random_ids::<B>([2, 16], 65, 20 + i as u64, &device);
            let fused = model.forward(ids.clone()).unwrap();
            let (explicit, _) = model.forward_with_attention(ids.clone()).unwrap();
            let diff: f32 = (fused.clone() - explicit).abs().max().into_scalar();
            assert!(diff < 1e-4, "{config:?}: fused vs explicit {diff}");
            let mut cache = KvCache::new();
            let mut fed = 0;
            for end in [5, 6, 7, 11, 16] {
                let cached = model
                    .forward_cached(ids.clone().slice([0..2, fed..end]), &mut cache)
                    .unwrap();
                let t = end - fed;
                let full = fused.clone().slice([0..2, fed..end]);
                let diff: f32 = (cached.slice([0..2, 0..t]) - full)
                    .abs()
                    .max()
                    .into_scalar();
                assert!(diff < 1e-4, "{config:?}: cached vs full at {end}: {diff}");
                fed = end;
            }
        }
    }

    /// Sequences of different lengths decoded together: for every switch, each row of
    /// a batched step has the logits of that sequence's own cached step, through several
    /// steps, and each cache grows by one. A step past block_size is an error.
    #[test]
    fn a_batched_step_equals_each_sequence_alone() {
        let device = Default::default();
        for (i, config) in switch_configs().into_iter().enumerate() {
            let model = Gpt::<B>::new(&config, &device).unwrap();
            let ids = random_ids::<B>([1, 16], 65, 80 + i as u64, &device);
            let token = |at: usize| ids.clone().slice([0..1, at..at + 1]);
            let prompts = [1, 4, 9];
            let (mut together, mut alone): (Vec<_>, Vec<_>) = prompts
                .iter()
                .map(|&len| {
                    let mut cache = KvCache::new();
                    model
                        .forward_cached(ids.clone().slice([0..1, 0..len]), &mut cache)
                        .unwrap();
                    (cache.clone(), cache)
                })
                .unzip();
            for step in 0..3 {
                let batch = Tensor::cat(prompts.iter().map(|&p| token(p + step)).collect(), 0);
                let mut caches: Vec<_> = together.iter_mut().collect();
                let rows = model.forward_step(batch, &mut caches).unwrap(); // (3, 1, V)
                for (row, (&p, cache)) in prompts.iter().zip(alone.iter_mut()).enumerate() {
                    let lone = model.forward_cached(token(p + step), cache).unwrap();
                    let diff: f32 = (rows.clone().narrow(0, row, 1) - lone)
                        .abs()
                        .max()
                        .into_scalar();
                    assert!(diff < 1e-5, "{config:?}: row {row} step {step}: {diff}");
                    assert_eq!(together[row].len(), p + step + 1);
                }
            }
        }
        let model = Gpt::<B>::new(&small(), &device).unwrap();
        let mut full = KvCache::new();
        let ids = random_ids::<B>([1, 16], 65, 99, &device);
        model.forward_cached(ids.clone(), &mut full).unwrap();
        let (mut short, one) = (KvCache::new(), ids.slice([0..1, 0..1]));
        let step = model.forward_step(
            Tensor::cat(vec![one.clone(), one], 0),
            &mut [&mut short, &mut full],
        );
        assert!(matches!(
            step,
            Err(ModelError::SequenceTooLong {
                t: 17,
                block_size: 16
            })
        ));
    }

    /// For every switch, training through the fused kernel and through the explicit path
    /// gives the same gradients (the first layer's q/k/v projection, and the token table,
    /// which every switch's gradient reaches).
    #[test]
    fn every_switch_keeps_fused_and_explicit_gradients_equal() {
        let device = Default::default();
        for (i, config) in switch_configs().into_iter().enumerate() {
            let model = Gpt::<TestAutodiff>::new(&config, &device).unwrap();
            let x = random_ids::<TestAutodiff>([2, 16], 65, 40 + i as u64, &device);
            let y = random_ids::<TestAutodiff>([2, 16], 65, 60 + i as u64, &device);
            let grads = |explicit: bool| {
                let logits = if explicit {
                    model.forward_with_attention(x.clone()).unwrap().0
                } else {
                    model.forward(x.clone()).unwrap()
                };
                let grads = cross_entropy(logits, y.clone()).backward();
                let c_attn = model.blocks[0].attn.c_attn.weight.val().grad(&grads);
                let wte = model.wte.weight.val().grad(&grads);
                (c_attn.unwrap().into_data(), wte.unwrap().into_data())
            };
            let ((a1, a2), (b1, b2)) = (grads(false), grads(true));
            // The two paths add the same terms in different orders: with some random
            // weights (about one draw in 500) a large gradient entry differs by more than
            // 1e-5, so large entries are held to a relative 1e-4 instead.
            let tolerance = burn::tensor::Tolerance::rel_abs(1e-4, 1e-5);
            a1.assert_approx_eq::<f32>(&b1, tolerance);
            a2.assert_approx_eq::<f32>(&b2, tolerance);
        }
    }

    /// Training through a tied head and GELU: gradients reach wte from both of its uses, and
    /// the model memorises a batch.
    #[test]
    fn gpt2_switches_train() {
        let device = Default::default();
        let config = GptConfig {
            tie_weights: true,
            qkv_bias: true,
            scaled_init: true,
            activation: crate::Activation::GeluTanh,
            ..small()
        };
        let model = Gpt::<TestAutodiff>::new(&config, &device).unwrap();
        let x = random_ids::<TestAutodiff>([4, 16], 65, 7, &device);
        let y = random_ids::<TestAutodiff>([4, 16], 65, 8, &device);
        let grads = cross_entropy(model.forward(x.clone()).unwrap(), y.clone()).backward();
        let g_tied = model.wte.weight.val().grad(&grads).unwrap();
        let ids_used: Vec<i64> = x.clone().into_data().convert::<i64>().to_vec().unwrap();
        // Rows of tokens that never appear in the input still get a gradient (the head).
        let unused = (0..65).find(|t| !ids_used.contains(t)).unwrap() as usize;
        let row: f32 = g_tied
            .slice([unused..unused + 1, 0..32])
            .abs()
            .sum()
            .into_scalar();
        assert!(
            row > 0.0,
            "an unseen token's embedding gets the head's gradient"
        );
        assert_overfits(model);
    }

    /// Changing tokens after position t must not change the logits at positions ≤ t.
    #[test]
    fn causal_masking() {
        let device = Default::default();
        let model = Gpt::<B>::new(&small(), &device).unwrap();
        let t = 9;
        let a = random_ids::<B>([2, 16], 65, 1, &device);
        let new_tail = random_ids::<B>([2, 16 - t - 1], 65, 2, &device);
        let b = a.clone().slice_assign([0..2, t + 1..16], new_tail);
        let (la, lb) = (model.forward(a).unwrap(), model.forward(b).unwrap());
        la.clone()
            .slice([0..2, 0..t + 1])
            .into_data()
            .assert_approx_eq::<f32>(
                &lb.clone().slice([0..2, 0..t + 1]).into_data(),
                Default::default(),
            );
        // The changed positions themselves do move, so the comparison above can fail.
        let moved: f32 = (la - lb).slice([0..2, t + 1..16]).abs().max().into_scalar();
        assert!(moved > 1e-3, "{moved}");
    }

    /// Feeding a prompt and then one token at a time through the cache gives, at every
    /// step, the logits of a full forward pass over the whole prefix.
    #[test]
    fn cached_logits_match_full_recompute() {
        let device = Default::default();
        let model = Gpt::<B>::new(&small(), &device).unwrap();
        let ids = random_ids::<B>([1, 16], 65, 9, &device);
        let mut cache = KvCache::new();
        let mut fed = 0;
        for end in [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16] {
            let cached = model
                .forward_cached(ids.clone().slice([0..1, fed..end]), &mut cache)
                .unwrap();
            let full = model.forward(ids.clone().slice([0..1, 0..end])).unwrap();
            let last = |x: Tensor<B, 3>| {
                let t = x.dims()[1];
                x.slice([0..1, t - 1..t])
            };
            let diff: f32 = (last(cached) - last(full)).abs().max().into_scalar();
            assert!(diff < 1e-4, "step ending at {end}: max |diff| {diff}");
            fed = end;
        }
        assert_eq!(cache.len(), 16);
        // The cache is full: one more token would pass block_size.
        let more = model.forward_cached(ids.slice([0..1, 0..1]), &mut cache);
        assert_eq!(
            more.unwrap_err(),
            ModelError::SequenceTooLong {
                t: 17,
                block_size: 16
            }
        );
    }

    /// Every layer's map is (B, n_head, T, T), each row a probability distribution over
    /// the positions up to its own, exactly 0 above the diagonal.
    #[test]
    fn attention_maps_are_causal_distributions() {
        let device = Default::default();
        let model = Gpt::<B>::new(&small(), &device).unwrap();
        let (b, t) = (2, 16);
        let maps = model
            .attention_maps(random_ids::<B>([b, t], 65, 10, &device))
            .unwrap();
        assert_eq!(maps.len(), 2);
        for map in maps {
            assert_eq!(map.dims(), [b, 4, t, t]);
            let row_sums = map.clone().sum_dim(3).into_data().to_vec::<f32>().unwrap();
            assert!(
                row_sums.iter().all(|s| (s - 1.0).abs() < 1e-5),
                "{row_sums:?}"
            );
            let w = map.into_data().to_vec::<f32>().unwrap();
            for (n, row) in w.chunks_exact(t).enumerate() {
                let i = n % t; // the query's position
                assert!(row[i + 1..].iter().all(|&x| x == 0.0), "row {i}: {row:?}");
                assert!(row[..=i].iter().all(|&x| x > 0.0), "row {i}: {row:?}");
            }
        }
    }

    /// Recording the maps runs the explicit attention, yet the logits are those of the
    /// model's own forward pass (the fused kernel on flex).
    #[test]
    fn forward_with_attention_keeps_the_logits() {
        let device = Default::default();
        let model = Gpt::<B>::new(&small(), &device).unwrap();
        let idx = random_ids::<B>([3, 16], 65, 11, &device);
        let (logits, maps) = model.forward_with_attention(idx.clone()).unwrap();
        assert_eq!(maps.len(), 2);
        logits.into_data().assert_approx_eq::<f32>(
            &model.forward(idx).unwrap().into_data(),
            burn::tensor::Tolerance::absolute(1e-4),
        );
    }

    /// A checkpointing autodiff takes the fused kernel too (same tensor type): its
    /// gradients equal those without checkpointing, and those of the explicit path.
    #[test]
    fn balanced_checkpointing_gives_the_same_gradients() {
        use burn::backend::Autodiff;
        use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
        use burn::module::AutodiffModule;
        use burn::tensor::backend::AutodiffBackend;
        type Balanced = Autodiff<B, BalancedCheckpointing>;

        fn grad<A: AutodiffBackend>(
            inner: &Gpt<A::InnerBackend>,
            [x, y]: &[Tensor<A::InnerBackend, 2, Int>; 2],
            explicit: bool,
        ) -> TensorData
        where
            Gpt<A>: AutodiffModule<A, InnerModule = Gpt<A::InnerBackend>>,
        {
            // `inner`'s parameters were read on a backend without gradients: ask for them.
            struct RequireGrad;
            impl<A: AutodiffBackend> burn::module::ModuleMapper<A> for RequireGrad {
                fn map_float<const D: usize>(
                    &mut self,
                    p: burn::module::Param<Tensor<A, D>>,
                ) -> burn::module::Param<Tensor<A, D>> {
                    p.map(|t| t.require_grad())
                }
            }
            let model = Gpt::<A>::from_inner(inner.clone()).map(&mut RequireGrad);
            let idx = Tensor::from_inner(x.clone());
            let logits = if explicit {
                model.forward_with_attention(idx).unwrap().0 // the explicit path
            } else {
                model.forward(idx).unwrap()
            };
            let grads = cross_entropy(logits, Tensor::from_inner(y.clone())).backward();
            let w = model.blocks[0].attn.c_attn.weight.val();
            w.grad(&grads).unwrap().into_data()
        }

        let device = Default::default();
        // Parameters are initialised lazily, and each clone of a lazy one on its own:
        // read every parameter once so that the clones share the values.
        struct Touch;
        impl burn::module::ModuleVisitor<B> for Touch {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
                let _ = p.val();
            }
        }
        let inner = Gpt::<B>::new(&small(), &device).unwrap();
        inner.visit(&mut Touch);
        let batch = [
            random_ids::<B>([2, 16], 65, 12, &device),
            random_ids::<B>([2, 16], 65, 13, &device),
        ];
        let plain = grad::<TestAutodiff>(&inner, &batch, false);
        let tolerance = burn::tensor::Tolerance::absolute(1e-6);
        for (balanced, explicit) in [(false, true), (true, false), (true, true)] {
            let g = if balanced {
                grad::<Balanced>(&inner, &batch, explicit)
            } else {
                grad::<TestAutodiff>(&inner, &batch, explicit)
            };
            g.assert_approx_eq::<f32>(&plain, tolerance);
        }
    }

    #[test]
    fn initial_loss_is_ln_vocab() {
        let device = Default::default();
        let model = Gpt::<B>::new(&small(), &device).unwrap();
        let x = random_ids::<B>([8, 16], 65, 4, &device);
        let y = random_ids::<B>([8, 16], 65, 5, &device);
        let loss: f32 = cross_entropy(model.forward(x).unwrap(), y).into_scalar();
        assert!((loss - (65f32).ln()).abs() < 0.2, "loss {loss}");
    }

    #[test]
    fn longer_than_block_size_is_an_error() {
        let device = Default::default();
        let model = Gpt::<B>::new(&small(), &device).unwrap();
        let err = model
            .forward(random_ids::<B>([1, 17], 65, 6, &device))
            .unwrap_err();
        assert_eq!(
            err,
            ModelError::SequenceTooLong {
                t: 17,
                block_size: 16
            }
        );
        assert_eq!(
            model
                .forward(random_ids::<B>([1, 1], 65, 6, &device))
                .unwrap()
                .dims(),
            [1, 1, 65]
        );
    }

    #[test]
    fn overfits_one_batch() {
        let device = Default::default();
        assert_overfits(Gpt::<TestAutodiff>::new(&small(), &device).unwrap());
    }
}
