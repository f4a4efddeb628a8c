//! Sampling text from a trained model, one token at a time (the lecture's `generate`).
//!
//! Each step crops the context to the model's `block_size` (the position table has no
//! rows beyond it), takes the logits at the last position, divides them by the
//! temperature, keeps the `top_k` largest, and draws from their softmax. The draw uses a
//! seeded RNG on the host, so a seed gives the same text on every backend.
//!
//! With the KV cache (the default) each step runs the network on the new token only,
//! reusing the keys and values of the tokens before it. That holds while the text fits in
//! `block_size`. Past it, the window slides: every token moves to a new position, and
//! with learned position embeddings a position change alters every key and value, so
//! nothing cached is valid any more. Then each step recomputes the cropped window, exactly
//! as without the cache; both paths give the same tokens for the same seed.
//!
//! With RoPE (`rope = true`) the cache is exact up to `block_size` too (each key is turned
//! by its own position once, when it is cached, and scores depend only on distances), and
//! past it the same crop-and-recompute runs. RoPE would let a cache go on past block_size
//! without recomputing (keys carry their rotation, nothing is re-positioned), but not
//! exactly: dropping the oldest keys (a sliding window) keeps, in every layer after the
//! first, keys computed while the dropped tokens were still visible, which the cropped
//! recompute does not have; and distances ≥ block_size were never seen in training.

use crate::{KvCache, LanguageModel, ModelError, Result};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::ops::ControlFlow;

/// How to draw each next token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub max_new_tokens: usize,
    /// < 1 sharpens the distribution, > 1 flattens it. Must be > 0; as it approaches 0
    /// sampling approaches greedy decoding, and any tiny positive value (down to the
    /// smallest f32) samples without overflow (see [`sample_next`]).
    pub temperature: f32,
    /// Sample only among the k most likely tokens; `Some(1)` is greedy decoding.
    pub top_k: Option<usize>,
    pub seed: u64,
    /// Reuse the keys and values of earlier tokens (see the module docs).
    pub kv_cache: bool,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            max_new_tokens: 500,
            temperature: 1.0,
            top_k: None,
            seed: 1337,
            kv_cache: true,
        }
    }
}

impl Sampling {
    /// Refuses settings that cannot sample; callers check before printing anything.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(ModelError::InvalidSampling(format!(
                "temperature must be a finite number > 0, got {}",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(ModelError::InvalidSampling("top_k must be ≥ 1".into()));
        }
        Ok(())
    }
}

/// Extends `prompt` by up to `sampling.max_new_tokens` tokens, calling `on_token` with
/// each as soon as it is drawn (so a caller can stream text; it returns
/// `ControlFlow::Break` to stop early, e.g. when its reader has gone), and returns the new
/// tokens.
pub fn generate<B: Backend, M: LanguageModel<B>>(
    model: &M,
    prompt: &[u32],
    sampling: &Sampling,
    device: &B::Device,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Vec<u32>> {
    let mut sequence = Sequence::new(prompt, sampling.clone())?;
    while !sequence.is_done() {
        let next = step(model, &mut [&mut sequence], device)
            .pop()
            .expect("one token per sequence")?;
        if on_token(next).is_break() {
            break;
        }
    }
    Ok(sequence.new_tokens().to_vec())
}

/// Decodes every one of `sequences` to its end, those not done yet together in each
/// [`step`] (a batch of problems, or of samples of one prompt).
pub fn finish<B: Backend, M: LanguageModel<B>>(
    model: &M,
    sequences: &mut [Sequence<B>],
    device: &B::Device,
) -> Result<()> {
    loop {
        let mut unfinished: Vec<_> = sequences.iter_mut().filter(|s| !s.is_done()).collect();
        if unfinished.is_empty() {
            return Ok(());
        }
        for next in step(model, &mut unfinished, device) {
            next?;
        }
    }
}

/// A prompt being extended one token at a time, with its own decoder and random
/// generator: [`generate`]'s one sequence, or one of several that [`step`] decodes
/// together (a server's concurrent requests).
pub struct Sequence<B: Backend> {
    decoder: Decoder<B>,
    idx: Vec<u32>,
    prompt_len: usize,
    sampling: Sampling,
    rng: StdRng,
}

impl<B: Backend> Sequence<B> {
    /// Checks `sampling` and that the prompt has a token.
    pub fn new(prompt: &[u32], sampling: Sampling) -> Result<Self> {
        sampling.validate()?;
        if prompt.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        Ok(Self {
            decoder: Decoder::new(sampling.kv_cache),
            idx: prompt.to_vec(),
            prompt_len: prompt.len(),
            rng: StdRng::seed_from_u64(sampling.seed),
            sampling,
        })
    }

    /// Whether `max_new_tokens` have been drawn.
    pub fn is_done(&self) -> bool {
        self.new_tokens().len() >= self.sampling.max_new_tokens
    }

    /// The tokens drawn so far.
    pub fn new_tokens(&self) -> &[u32] {
        &self.idx[self.prompt_len..]
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let next = sample_next(
            logits,
            self.sampling.temperature,
            self.sampling.top_k,
            &mut self.rng,
        );
        self.idx.push(next);
        next
    }
}

/// Draws the next token of each of `sequences` (none done), in order.
///
/// Sequences whose decoder has read all of its context but the last token (every
/// sequence after its first step, while it fits in `block_size`) run as one batch
/// through [`LanguageModel::logits_step`]: one matrix product per layer for all of them,
/// each attending over its own cache. The rest (a prompt not read yet, a context past
/// `block_size`, no KV cache) and a batch of one take [`Decoder::next_logits`], so a
/// lone sequence gives exactly [`generate`]'s tokens. In a batch, a row's logits can
/// differ from its lone ones in the last bits (the products sum in another order), and
/// so can a token drawn at a near tie.
pub fn step<B: Backend, M: LanguageModel<B>>(
    model: &M,
    sequences: &mut [&mut Sequence<B>],
    device: &B::Device,
) -> Vec<Result<u32>> {
    let batched: Vec<bool> = sequences
        .iter()
        .map(|s| s.decoder.reads_one_more(model, &s.idx))
        .collect();
    let together = batched.iter().filter(|&&b| b).count() >= 2;
    let mut drawn = Vec::with_capacity(sequences.len());
    let mut batch = Vec::new();
    for (s, batched) in sequences.iter_mut().zip(batched) {
        if batched && together {
            batch.push(&mut **s);
            drawn.push(None);
        } else {
            let logits = s.decoder.next_logits(model, &s.idx, device);
            drawn.push(Some(logits.map(|logits| s.draw(&logits))));
        }
    }
    let mut rows = last_token_logits(model, &mut batch, device).into_iter();
    let mut batch = batch.into_iter();
    drawn
        .into_iter()
        .map(|d| {
            d.unwrap_or_else(|| {
                let (s, logits) = (batch.next(), rows.next());
                let s = s.expect("a batch row per batched sequence");
                logits
                    .expect("a logits row per batched sequence")
                    .map(|logits| s.draw(&logits))
            })
        })
        .collect()
}

/// The next-token logits of each of `batch`, whose decoders have read all but the
/// last token of their contexts, as one [`LanguageModel::logits_step`].
fn last_token_logits<B: Backend, M: LanguageModel<B>>(
    model: &M,
    batch: &mut [&mut Sequence<B>],
    device: &B::Device,
) -> Vec<Result<Vec<f32>>> {
    if batch.is_empty() {
        return Vec::new();
    }
    let ids: Vec<i64> = batch
        .iter()
        .map(|s| *s.idx.last().expect("a prompt has a token") as i64)
        .collect();
    let b = ids.len();
    let idx = Tensor::<B, 2, Int>::from_data(
        TensorData::new(ids, [b, 1]).convert::<B::IntElem>(),
        device,
    );
    let mut caches: Vec<_> = batch.iter_mut().map(|s| &mut s.decoder.cache).collect();
    let logits = match model.logits_step(idx, &mut caches) {
        Ok(logits) => logits, // (B, 1, V)
        Err(e) => return vec![Err(e); b],
    };
    let vocab = logits.dims()[2];
    let values: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("converted to f32");
    batch
        .iter_mut()
        .zip(values.chunks(vocab))
        .map(|(s, row)| {
            s.decoder
                .read
                .push(*s.idx.last().expect("a prompt has a token"));
            finite(row.to_vec())
        })
        .collect()
}

/// [`generate`]'s loop on a context that lives on: `idx` grows by up to
/// `sampling.max_new_tokens` tokens drawn with `rng` (its seed is not used), and `decoder`
/// keeps what the model has read, so that a later call on a context that extends this
/// one (a chat's next turn) feeds only what is new.
pub fn extend<B: Backend, M: LanguageModel<B>>(
    model: &M,
    decoder: &mut Decoder<B>,
    idx: &mut Vec<u32>,
    sampling: &Sampling,
    rng: &mut StdRng,
    device: &B::Device,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<()> {
    sampling.validate()?;
    if idx.is_empty() {
        return Err(ModelError::EmptyPrompt);
    }
    for _ in 0..sampling.max_new_tokens {
        let last = decoder.next_logits(model, idx, device)?;
        let next = sample_next(&last, sampling.temperature, sampling.top_k, rng);
        idx.push(next);
        if on_token(next).is_break() {
            break;
        }
    }
    Ok(())
}

/// What the model has read of a context: the KV cache and the tokens in it.
pub struct Decoder<B: Backend> {
    cache: KvCache<B>,
    /// The tokens whose keys and values `cache` holds, in order.
    read: Vec<u32>,
    kv_cache: bool,
}

impl<B: Backend> Decoder<B> {
    /// With `kv_cache` false every call recomputes the window, as nanoGPT does.
    pub fn new(kv_cache: bool) -> Self {
        Self {
            cache: KvCache::new(),
            read: Vec::new(),
            kv_cache,
        }
    }

    /// The logits of the token that follows `context`. The model reads only the tokens
    /// after the part of `context` it has read already; a context that does not begin
    /// with that part (a chat that dropped its oldest turn) starts the cache afresh, and
    /// one longer than `block_size` is cropped and recomputed (see the module docs).
    pub fn next_logits<M: LanguageModel<B>>(
        &mut self,
        model: &M,
        context: &[u32],
        device: &B::Device,
    ) -> Result<Vec<f32>> {
        let tensor = |ids: &[u32]| {
            let ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
            let t = ids.len();
            Tensor::<B, 2, Int>::from_data(
                TensorData::new(ids, [1, t]).convert::<B::IntElem>(),
                device,
            )
        };
        let logits = match model.context_size() {
            Some(block_size) if self.kv_cache && context.len() <= block_size => {
                if !context.starts_with(&self.read) || context.len() == self.read.len() {
                    self.forget();
                }
                let logits =
                    model.logits_cached(tensor(&context[self.read.len()..]), &mut self.cache)?;
                self.read = context.to_vec();
                logits
            }
            // Recompute the window; a bigram model reads only the last token.
            context_size => {
                self.forget();
                let window = context_size.unwrap_or(1);
                model.logits(tensor(&context[context.len().saturating_sub(window)..]))?
            }
        }; // (1, T, V)
        let [_, t, vocab] = logits.dims();
        let last: Vec<f32> = logits
            .slice([0..1, t - 1..t])
            .reshape([vocab])
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("converted to f32");
        finite(last)
    }

    /// Whether `context` is what this decoder has read plus one token that fits in the
    /// model's window: then its cache can take that token in a batched step.
    fn reads_one_more<M: LanguageModel<B>>(&self, model: &M, context: &[u32]) -> bool {
        self.kv_cache
            && !self.read.is_empty()
            && context.len() == self.read.len() + 1
            && model
                .context_size()
                .is_some_and(|size| context.len() <= size)
            && context.starts_with(&self.read)
    }

    fn forget(&mut self) {
        self.cache = KvCache::new();
        self.read.clear();
    }
}

/// `logits`, unless one is not a finite number (weights that hold NaN or infinity).
fn finite(logits: Vec<f32>) -> Result<Vec<f32>> {
    if logits.iter().all(|l| l.is_finite()) {
        Ok(logits)
    } else {
        Err(ModelError::NonFiniteLogits)
    }
}

/// Draws one token id from `logits` scaled by `temperature`, restricted to the `top_k`
/// largest (ties at the k-th value are kept, as in nanoGPT).
pub fn sample_next(
    logits: &[f32],
    temperature: f32,
    top_k: Option<usize>,
    rng: &mut StdRng,
) -> u32 {
    // Shift by the largest logit before dividing: (l - max) / T is ≤ 0, so a tiny T sends
    // the others to -inf (weight 0) instead of overflowing to inf - inf = NaN.
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut scaled: Vec<f32> = logits.iter().map(|l| (l - top) / temperature).collect();
    if let Some(k) = top_k.filter(|&k| k < scaled.len()) {
        let mut sorted = scaled.clone();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        let kth = sorted[k - 1];
        for l in scaled.iter_mut().filter(|l| **l < kth) {
            *l = f32::NEG_INFINITY;
        }
    }
    // Softmax, stabilised by subtracting the max; then invert the CDF at a uniform draw.
    let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = scaled.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (id, w) in weights.iter().enumerate() {
        if u < *w {
            return id as u32;
        }
        u -= w;
    }
    // Rounding left `u` past the end: the last token with any weight.
    weights
        .iter()
        .rposition(|&w| w > 0.0)
        .expect("softmax has a positive weight") as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TestBackend as B;
    use crate::{GptConfig, Model};

    fn config() -> GptConfig {
        GptConfig {
            block_size: 8,
            n_layer: 1,
            n_head: 2,
            n_embd: 16,
            dropout: 0.0,
            ..GptConfig::default()
        }
    }

    fn model() -> Model<B> {
        Model::new(&config(), &Default::default()).unwrap()
    }

    fn run(model: &Model<B>, sampling: &Sampling) -> Vec<u32> {
        generate(model, &[1, 2, 3], sampling, &Default::default(), |_| {
            ControlFlow::Continue(())
        })
        .unwrap()
    }

    #[test]
    fn same_seed_same_text_and_exact_length() {
        let m = model();
        // Past block_size (8): the context is cropped, and generation goes on.
        let s = Sampling {
            max_new_tokens: 20,
            ..Sampling::default()
        };
        let a = run(&m, &s);
        assert_eq!(a.len(), 20);
        assert_eq!(a, run(&m, &s));
        assert_ne!(a, run(&m, &Sampling { seed: 7, ..s }));
    }

    /// The KV cache changes the cost, not the result: same seed, same tokens, including
    /// past block_size (8) where the cached path falls back to recomputing the window.
    #[test]
    fn kv_cache_gives_the_same_tokens() {
        let with = |kv_cache| Sampling {
            max_new_tokens: 20,
            kv_cache,
            ..Sampling::default()
        };
        // The lecture's model, and one with every modern switch (RoPE, GQA, …).
        let modern = GptConfig {
            n_layer: 2,
            n_kv_head: 1,
            ..config().with_every_switch()
        };
        for m in [model(), Model::new(&modern, &Default::default()).unwrap()] {
            assert_eq!(run(&m, &with(true)), run(&m, &with(false)));
        }
    }

    /// Sequences decoded together by [`step`] draw the tokens each draws alone with
    /// [`generate`]: prompts of different lengths, sampled and greedy, one without the KV
    /// cache, all running past block_size (8), where they leave the batch to be cropped,
    /// and each leaving when it has its tokens.
    #[test]
    fn sequences_decoded_together_draw_their_lone_tokens() {
        let modern = GptConfig {
            n_layer: 2,
            n_kv_head: 1,
            ..config().with_every_switch()
        };
        for m in [model(), Model::new(&modern, &Default::default()).unwrap()] {
            let jobs: Vec<(Vec<u32>, Sampling)> = vec![
                (
                    vec![1],
                    Sampling {
                        max_new_tokens: 12,
                        seed: 1,
                        ..Sampling::default()
                    },
                ),
                (
                    vec![4, 5, 6],
                    Sampling {
                        max_new_tokens: 6,
                        top_k: Some(1),
                        ..Sampling::default()
                    },
                ),
                (
                    vec![7, 8, 9, 10, 11],
                    Sampling {
                        max_new_tokens: 9,
                        seed: 3,
                        ..Sampling::default()
                    },
                ),
                (
                    vec![2, 3],
                    Sampling {
                        max_new_tokens: 7,
                        kv_cache: false,
                        ..Sampling::default()
                    },
                ),
                (
                    vec![12, 13],
                    Sampling {
                        max_new_tokens: 10,
                        temperature: 0.5,
                        seed: 5,
                        ..Sampling::default()
                    },
                ),
            ];
            let device = Default::default();
            let mut sequences: Vec<_> = jobs
                .iter()
                .map(|(prompt, s)| Sequence::<B>::new(prompt, s.clone()).unwrap())
                .collect();
            let mut drawn = vec![Vec::new(); jobs.len()];
            loop {
                let mut active: Vec<(usize, &mut Sequence<B>)> = sequences
                    .iter_mut()
                    .enumerate()
                    .filter(|(_, s)| !s.is_done())
                    .collect();
                if active.is_empty() {
                    break;
                }
                let (which, mut batch): (Vec<usize>, Vec<&mut Sequence<B>>) =
                    active.drain(..).unzip();
                for (i, next) in which.into_iter().zip(step(&m, &mut batch, &device)) {
                    drawn[i].push(next.unwrap());
                }
            }
            for ((prompt, sampling), (sequence, drawn)) in
                jobs.iter().zip(sequences.iter().zip(drawn))
            {
                let alone =
                    generate(&m, prompt, sampling, &device, |_| ControlFlow::Continue(())).unwrap();
                assert_eq!(drawn, alone, "{prompt:?} {sampling:?}");
                assert_eq!(sequence.new_tokens(), alone);
            }
        }
    }

    /// A context that lives on (a chat): each call feeds the cache only what is new, a
    /// context that no longer begins with what was read starts it afresh, and the tokens
    /// equal recomputing the whole context every time.
    #[test]
    fn a_growing_context_through_the_cache_equals_recomputing_it() {
        let config = GptConfig {
            block_size: 24,
            ..config()
        };
        let m = Model::<B>::new(&config, &Default::default()).unwrap();
        let s = Sampling {
            max_new_tokens: 4,
            ..Sampling::default()
        };
        let turns = |kv_cache| {
            let mut decoder = Decoder::new(kv_cache);
            let mut rng = StdRng::seed_from_u64(3);
            let mut idx = vec![1, 2, 3];
            let mut seen = Vec::new();
            for turn in 0..4u32 {
                idx.extend([5 + turn, 6]);
                if turn == 3 {
                    // The oldest turn dropped: the context no longer begins as before.
                    idx.drain(..6);
                }
                extend(
                    &m,
                    &mut decoder,
                    &mut idx,
                    &s,
                    &mut rng,
                    &Default::default(),
                    |_| ControlFlow::Continue(()),
                )
                .unwrap();
                seen.push(idx.clone());
            }
            seen
        };
        assert_eq!(turns(true), turns(false));
    }

    #[test]
    fn streams_every_token_in_order() {
        let m = model();
        let mut streamed = Vec::new();
        let s = Sampling {
            max_new_tokens: 5,
            ..Sampling::default()
        };
        let out = generate(&m, &[0], &s, &Default::default(), |t| {
            streamed.push(t);
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(out, streamed);
        // A caller that stops after two tokens gets two.
        let mut n = 0;
        let out = generate(&m, &[0], &s, &Default::default(), |_| {
            n += 1;
            if n == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(out, streamed[..2]);
    }

    #[test]
    fn tiny_temperatures_are_greedy_not_nan() {
        let mut rng = StdRng::seed_from_u64(0);
        for t in [1e-45, f32::MIN_POSITIVE, 1e-20] {
            for _ in 0..20 {
                assert_eq!(sample_next(&[0.1, 3.0, 2.9, -1.0], t, None, &mut rng), 1);
            }
        }
    }

    #[test]
    fn top_k_one_is_greedy() {
        let m = model();
        let greedy = |seed| {
            run(
                &m,
                &Sampling {
                    max_new_tokens: 10,
                    top_k: Some(1),
                    seed,
                    ..Sampling::default()
                },
            )
        };
        assert_eq!(greedy(1), greedy(2));
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(
            sample_next(&[0.1, 3.0, 2.9, -1.0], 1.0, Some(1), &mut rng),
            1
        );
    }

    #[test]
    fn top_k_never_samples_outside_the_k_best() {
        let mut rng = StdRng::seed_from_u64(0);
        let logits = [0.0, 1.0, 0.5, 0.9, -2.0];
        for _ in 0..200 {
            let id = sample_next(&logits, 5.0, Some(2), &mut rng);
            assert!(id == 1 || id == 3, "{id}");
        }
    }

    #[test]
    fn bad_options_are_errors() {
        let m = model();
        let gen_err = |prompt: &[u32], s: &Sampling| {
            generate(&m, prompt, s, &Default::default(), |_| {
                ControlFlow::Continue(())
            })
            .unwrap_err()
        };
        assert_eq!(gen_err(&[], &Sampling::default()), ModelError::EmptyPrompt);
        let cold = Sampling {
            temperature: 0.0,
            ..Sampling::default()
        };
        assert!(gen_err(&[1], &cold).to_string().contains("temperature"));
        let k0 = Sampling {
            top_k: Some(0),
            ..Sampling::default()
        };
        assert!(gen_err(&[1], &k0).to_string().contains("top_k"));
    }
}
