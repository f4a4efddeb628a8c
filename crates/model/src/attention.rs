//! Causal multi-head self-attention, the heart of the GPT.
//!
//! Every token emits a query ("what am I looking for?"), a key ("what do I contain?") and a
//! value ("what I will tell you if you attend to me"). A token's output is the average of
//! the values of the tokens before it, weighted by how well their keys match its query.
//! All heads run at once as one more batch dimension (the lecture's exercise 1): one matmul
//! projects q, k and v for every head, instead of a Python loop over `Head` modules.

use crate::GptConfig;
use crate::fused_attention;
use crate::init::{linear, linear_params, linear_std, residual_std};
use crate::kv_cache::LayerKv;
use crate::norm::rms_norm;
use crate::per_token::per_token;
use crate::precision::{Precision, norm_in_f32, to_stream};
use crate::rope::Rope;
use burn::nn::{Dropout, DropoutConfig, Linear, RmsNorm};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Element, FloatDType};

/// Which computation [`CausalSelfAttention::forward`] runs on a backend: the fused CPU
/// kernel (`crate::fused_attention`, flex with or without autodiff, f32), Burn's
/// attention op (`burn::tensor::module::attention`: flash-attention kernels on the GPU
/// backends) for inference without autodiff elsewhere, or the explicit tensor ops of
/// [`CausalSelfAttention`]'s `attend` (training on every other backend: Burn's op has no
/// fused backward; and the model crate built without its `fused` feature). This names
/// the path of full forward passes (training, evaluation); sampling with a KV cache takes
/// Burn's op or the explicit path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionPath {
    /// "fused-cpu"
    FusedCpu,
    /// "burn-attention"
    #[serde(rename = "burn-attention")]
    BurnOp,
    /// "explicit"
    Explicit,
}

impl AttentionPath {
    pub fn as_str(self) -> &'static str {
        match self {
            AttentionPath::FusedCpu => "fused-cpu",
            AttentionPath::BurnOp => "burn-attention",
            AttentionPath::Explicit => "explicit",
        }
    }
}

impl std::fmt::Display for AttentionPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The attention path `B`'s full forward passes (training, evaluation) take for tensors
/// of its float element type (f32 on flex): [`AttentionPath::pick`]'s answer, the one
/// choice every call makes. (Tensors cast to another dtype at run time fall back to the
/// explicit path; on flex that fallback is reported once on stderr.)
pub fn attention_path<B: Backend>() -> AttentionPath {
    let dtype = <B::FloatElem as Element>::dtype();
    AttentionPath::pick::<B>(&Default::default(), dtype, Call::Full)
}

/// What an attention call is for, which decides the path it can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// A whole sequence, nothing kept (training, evaluation).
    Full,
    /// A whole sequence whose attention weights are wanted (`attention_maps`).
    Recording,
    /// `tq` new tokens after cached ones, `tk` keys in all (sampling with a KV cache).
    Cached { tq: usize, tk: usize },
}

impl AttentionPath {
    /// The one place the path is chosen, for a call on `B`'s tensors of `dtype`:
    /// - the fused CPU kernel for a whole sequence, where it applies (flex, with or
    ///   without autodiff, f32: `crate::fused_attention`); it never stores the weights
    ///   and reads no cache;
    /// - Burn's attention op (flash-attention kernels on the GPU backends) without
    ///   autodiff, whose op has no fused backward, for a whole sequence (causal) or a
    ///   single new token (which sees every key), where the fused kernel does not apply
    ///   (on flex, the cached step keeps the explicit path the kernel is tested against);
    /// - the explicit tensor ops otherwise, and whenever the weights are recorded.
    fn pick<B: Backend>(device: &B::Device, dtype: DType, call: Call) -> Self {
        let fused = fused_attention::applies::<B>(dtype);
        match call {
            Call::Full if fused => Self::FusedCpu,
            Call::Full => {
                fused_attention::notice_fallback::<B>(dtype);
                Self::burn_or_explicit::<B>(device)
            }
            Call::Cached { tq, tk } if !fused && (tq == tk || tq == 1) => {
                Self::burn_or_explicit::<B>(device)
            }
            Call::Cached { .. } | Call::Recording => Self::Explicit,
        }
    }

    fn burn_or_explicit<B: Backend>(device: &B::Device) -> Self {
        if B::ad_enabled(device) {
            Self::Explicit
        } else {
            Self::BurnOp
        }
    }
}

/// The fields are visible to the crate so the lecture's one-head-at-a-time version
/// ([`crate::lecture::MultiHeadAttention::from_batched`]) can be cut from the same weights.
#[derive(Module, Debug)]
pub struct CausalSelfAttention<B: Backend> {
    /// Query, key and value projections for all heads, side by side:
    /// C → C + 2·n_kv_head·hs (3C without grouped-query attention).
    pub(crate) c_attn: Linear<B>,
    /// Mixes the concatenated heads back into the residual stream: C → C.
    pub(crate) c_proj: Linear<B>,
    pub(crate) attn_dropout: Dropout,
    pub(crate) resid_dropout: Dropout,
    pub(crate) n_head: usize,
    /// Key/value heads; query head h reads key/value head h / (n_head / n_kv_head).
    n_kv_head: usize,
    /// QK-norm: RMSNorm over each head's queries and keys (`qk_norm`).
    q_norm: Option<RmsNorm<B>>,
    k_norm: Option<RmsNorm<B>>,
    /// Rotary position embeddings (`rope`, see [`crate::rope`]) for a projected row
    /// [q | k | v]: q's and k's heads turned, v's left alone; cos/sin tables per
    /// position up to block_size (constants, not parameters).
    rope: Option<Rope<B>>,
    /// The projections' precision (`dtype`, see [`crate::precision`]).
    #[module(skip)]
    precision: Precision,
}

impl<B: Backend> CausalSelfAttention<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        let (c, hs, kv) = (config.n_embd, config.head_size(), config.kv_heads());
        let qk_norm = || config.qk_norm.then(|| rms_norm(hs, config, device));
        Self {
            c_attn: linear(c, c + 2 * kv * hs, config.qkv_bias, device),
            c_proj: linear_std(c, c, config.bias, residual_std(config), device),
            attn_dropout: DropoutConfig::new(config.dropout).init(),
            resid_dropout: DropoutConfig::new(config.dropout).init(),
            n_head: config.n_head,
            n_kv_head: kv,
            q_norm: qk_norm(),
            k_norm: qk_norm(),
            rope: config.rope.then(|| {
                let heads = [config.n_head + kv, kv]; // q and k turned, v plain
                Rope::new(config.block_size, heads, hs, config.rope_theta, device)
            }),
            precision: config.dtype,
        }
    }

    /// `x` (B, T, C) → (B, T, C), every token attending to itself and those before it.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_with(x, None, None).0
    }

    /// As [`forward`](Self::forward), pushing this layer's attention weights
    /// (B, nh, T, T) onto `weights`: the softmax after the causal mask, before dropout.
    pub(crate) fn forward_recording(
        &self,
        x: Tensor<B, 3>,
        weights: &mut Vec<Tensor<B, 4>>,
    ) -> Tensor<B, 3> {
        self.forward_with(x, None, Some(weights)).0
    }

    /// As [`forward`](Self::forward) for `x` holding the tokens after those in `past`:
    /// their keys and values are reused, and this call's are appended to `past`.
    ///
    /// The cache keeps keys after QK-norm and RoPE: a key's rotation depends only on its
    /// own position, fixed once it is cached, so the cache stays exact with RoPE.
    pub fn forward_cached(&self, x: Tensor<B, 3>, past: &mut Option<LayerKv<B>>) -> Tensor<B, 3> {
        self.forward_with(x, Some(past), None).0
    }

    /// One new token for each of several sequences, row i of `x` (B, 1, C) after the
    /// tokens cached in `pasts[i]`, each sequence at its own position (a server's
    /// concurrent requests, decoded together). The projections see all rows at once, one
    /// matrix product instead of B; attention runs row by row, over each row's own keys,
    /// and appends each row's key and value to its own cache.
    pub fn forward_step(
        &self,
        x: Tensor<B, 3>,
        pasts: &mut [&mut Option<LayerKv<B>>],
    ) -> Tensor<B, 3> {
        let qkv = per_token(&self.c_attn, x, self.precision); // (B, 1, C + 2·n_kv·hs)
        let rows = qkv.chunk(pasts.len(), 0);
        let y = rows
            .into_iter()
            .zip(pasts.iter_mut())
            .map(|(qkv, past)| {
                let start = past.as_ref().map_or(0, |p| p.k.dims()[2]);
                let call = Call::Cached {
                    tq: 1,
                    tk: start + 1,
                };
                let path = AttentionPath::pick::<B>(&qkv.device(), qkv.dtype(), call);
                let qkv = self.position_qk(qkv, start, path);
                self.attention(path, qkv, Some(&mut **past), None)
            })
            .collect();
        self.resid_dropout
            .forward(per_token(&self.c_proj, Tensor::cat(y, 0), self.precision))
    }

    /// The entry point of the three whole-batch forwards: projects `x`, runs attention on the
    /// path [`AttentionPath::pick`] chooses for this call, mixes the heads back into the
    /// stream, and says which path ran.
    fn forward_with(
        &self,
        x: Tensor<B, 3>,
        past: Option<&mut Option<LayerKv<B>>>,
        record: Option<&mut Vec<Tensor<B, 4>>>,
    ) -> (Tensor<B, 3>, AttentionPath) {
        let start = past
            .as_ref()
            .and_then(|p| p.as_ref())
            .map_or(0, |p| p.k.dims()[2]);
        let qkv = per_token(&self.c_attn, x, self.precision); // (B, T, C + 2·n_kv·hs)
        let t = qkv.dims()[1];
        let call = match (&past, &record) {
            (Some(_), _) => Call::Cached {
                tq: t,
                tk: start + t,
            },
            (None, Some(_)) => Call::Recording,
            (None, None) => Call::Full,
        };
        let path = AttentionPath::pick::<B>(&qkv.device(), qkv.dtype(), call);
        let qkv = self.position_qk(qkv, start, path);
        let y = self.attention(path, qkv, past, record);
        (
            self.resid_dropout
                .forward(per_token(&self.c_proj, y, self.precision)),
            path,
        )
    }

    /// Positioned `qkv` (B, T, C + 2·n_kv·hs) → the heads' outputs side by side (B, T, C),
    /// on `path`; with `past`, after its keys and values, extending it.
    fn attention(
        &self,
        path: AttentionPath,
        qkv: Tensor<B, 3>,
        past: Option<&mut Option<LayerKv<B>>>,
        record: Option<&mut Vec<Tensor<B, 4>>>,
    ) -> Tensor<B, 3> {
        match path {
            // The whole of the explicit path below as one kernel, reading q, k and v in
            // place inside `qkv`.
            AttentionPath::FusedCpu => fused_attention::causal_self_attention(
                qkv,
                self.n_head,
                self.n_kv_head,
                self.attn_dropout.prob,
            ),
            path => {
                let (q, k, v) = self.heads(qkv);
                let (k, v) = match past {
                    Some(past) => LayerKv::extend(past, k, v),
                    None => (k, v),
                };
                merge_heads(self.attend(path, q, k, v, record))
            }
        }
    }

    /// Projected `qkv` (B, T, C + 2·n_kv·hs) → q (B, nh, T, hs), k and v
    /// (B, n_kv, T, hs): the heads become a batch dimension.
    fn heads(&self, qkv: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [b, t, width] = qkv.dims();
        let (nh, kv) = (self.n_head, self.n_kv_head);
        let hs = width / (nh + 2 * kv);
        let split = |x: Tensor<B, 3>, heads: usize| x.reshape([b, t, heads, hs]).swap_dims(1, 2);
        let mut qkv = qkv.split_with_sizes(vec![nh * hs, kv * hs, kv * hs], 2);
        let v = split(qkv.pop().expect("three parts"), kv);
        let k = split(qkv.pop().expect("three parts"), kv);
        let q = split(qkv.pop().expect("three parts"), nh);
        (q, k, v)
    }

    /// `qkv` (B, T, C + 2·n_kv·hs) of tokens at positions start.. with q and k through
    /// QK-norm and RoPE where the config turns them on (normalised first, then rotated,
    /// as Gemma 3 and OLMo 2: the rotation keeps the norm); v untouched.
    ///
    /// Both work on rows as the projection lays them out, each head's hs numbers side by
    /// side. Splitting into (B, heads, T, hs) first would make every step run on strided
    /// views, several times slower on the CPU. On the fused kernel's path both are one
    /// kernel over the rows (`crate::position_qk`); on the others (the reference it is
    /// tested against) QK-norm is RMSNorm over the last dimension of q (B, T, nh, hs) and
    /// k (B, T, n_kv, hs), cut out of the row and put back, and RoPE turns the whole row
    /// (see [`crate::rope`]).
    fn position_qk(&self, qkv: Tensor<B, 3>, start: usize, path: AttentionPath) -> Tensor<B, 3> {
        let [b, t, width] = qkv.dims();
        let (nh, kv) = (self.n_head, self.n_kv_head);
        let hs = width / (nh + 2 * kv);
        #[cfg(feature = "fused")]
        if path == AttentionPath::FusedCpu && (self.q_norm.is_some() || self.rope.is_some()) {
            use crate::position_qk::{Heads, Norm, position_rows};
            let norm = self
                .q_norm
                .as_ref()
                .zip(self.k_norm.as_ref())
                .map(|(q, k)| Norm {
                    q_gain: q.gamma.val(),
                    k_gain: k.gamma.val(),
                    eps: q.epsilon as f32,
                });
            let rotation = self.rope.as_ref().map(|rope| rope.rotation(start, t));
            return position_rows(qkv, norm, rotation, Heads { nh, kv, hs });
        }
        #[cfg(not(feature = "fused"))]
        let _ = path;
        let qkv =
            match (&self.q_norm, &self.k_norm) {
                (Some(q_norm), Some(k_norm)) => {
                    let norm =
                        |norm: &RmsNorm<B>, x: Tensor<B, 3>, heads: usize| {
                            norm_in_f32(x.reshape([b, t, heads, hs]), |x| norm.forward(x))
                                .reshape([b, t, heads * hs])
                        };
                    let mut parts = qkv.split_with_sizes(vec![nh * hs, kv * hs, kv * hs], 2);
                    let v = parts.pop().expect("three parts");
                    let k = norm(k_norm, parts.pop().expect("three parts"), kv);
                    let q = norm(q_norm, parts.pop().expect("three parts"), nh);
                    Tensor::cat(vec![q, k, v], 2)
                }
                _ => qkv,
            };
        match &self.rope {
            Some(rope) => rope.apply(qkv, start),
            None => qkv,
        }
    }

    /// Scaled dot-product attention with a causal mask, on `path` (Burn's op or the
    /// explicit ops): queries (B, nh, Tq, hs) of the last Tq positions against keys and
    /// values (B, n_kv, Tk, hs) of all Tk positions, the [`weights`](Self::weights)
    /// (pushed onto `record` when given) through dropout, times the values.
    fn attend(
        &self,
        path: AttentionPath,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        record: Option<&mut Vec<Tensor<B, 4>>>,
    ) -> Tensor<B, 4> {
        // Grouped-query attention, spelled out: each key/value head repeated for its
        // group of query heads (the fused kernel reads the shared head instead).
        let groups = self.n_head / self.n_kv_head;
        let (k, v) = (repeat_kv(k, groups), repeat_kv(v, groups));
        if path == AttentionPath::BurnOp {
            // The same scores, mask and softmax as one kernel.
            let options = AttentionModuleOptions {
                scale: None, // 1/sqrt(head_size), as `weights`
                softcap: None,
                is_causal: q.dims()[2] > 1,
            };
            return attention(q, k, v, None, None, options);
        }
        let att = self.weights(q, k);
        if let Some(weights) = record {
            weights.push(att.clone());
        }
        self.attn_dropout.forward(att).matmul(v) // (B, nh, Tq, hs)
    }

    /// The attention weights (B, nh, Tq, Tk) of queries (B, nh, Tq, hs) at the last Tq
    /// positions over keys (B, nh, Tk, hs) at all Tk positions: each row a softmax that is
    /// exactly 0 on the keys the query may not see.
    ///
    /// Why scale by 1/sqrt(head_size): with unit-variance q and k, each score q·k is a sum of
    /// head_size products, so its variance grows like head_size. Large scores make softmax
    /// saturate towards one-hot, and each token would listen to a single other token from
    /// the start. Dividing by sqrt(head_size) keeps the scores at unit variance.
    ///
    /// Why the mask: a decoder predicts the next token, so position t must not see t+1…;
    /// scores above the diagonal become -inf and their softmax weight exactly 0. Query i
    /// sits at position Tk - Tq + i, so it may see keys 0..=Tk - Tq + i. A single new
    /// token (Tq = 1, sampling with a cache) sees every key and needs no mask.
    fn weights(&self, q: Tensor<B, 4>, k: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, nh, tq, hs] = q.dims();
        let tk = k.dims()[2];
        let scale = (hs as f64).powf(-0.5);
        let dtype: FloatDType = q.dtype().into();
        // The scores' mask and softmax in f32 (see `crate::precision`), the weights back in
        // the matmuls' dtype for the product with v.
        let att = to_stream(q.matmul(k.swap_dims(2, 3)) * scale); // (B, nh, Tq, Tk)
        let att = if tq == 1 {
            att
        } else {
            let offset = (tk - tq) as i64;
            let future = Tensor::<B, 2, Bool>::tril_mask([tq, tk], offset, &att.device()) // true above the diagonal
                .reshape([1, 1, tq, tk])
                .expand([b, nh, tq, tk]);
            att.mask_fill(future, f32::NEG_INFINITY)
        };
        softmax(att, 3).cast(dtype)
    }
}

/// (B, n_kv, T, hs) → (B, n_kv·groups, T, hs): key/value head g serves query heads
/// g·groups..(g+1)·groups.
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, groups: usize) -> Tensor<B, 4> {
    if groups == 1 {
        return x;
    }
    let [b, kv, t, hs] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kv, groups, t, hs])
        .reshape([b, kv * groups, t, hs])
}

/// (B, nh, T, hs) → (B, T, C): the heads' outputs side by side again.
fn merge_heads<B: Backend>(y: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, nh, t, hs] = y.dims();
    y.swap_dims(1, 2).reshape([b, t, nh * hs])
}

/// The parameters [`CausalSelfAttention::new`] makes, counted from the config alone.
pub(crate) fn params(config: &GptConfig) -> Option<u128> {
    let (c, hs, kv) = (config.n_embd, config.head_size(), config.kv_heads());
    let qkv_width = kv.checked_mul(hs)?.checked_mul(2)?.checked_add(c)?;
    let qk_norm = if config.qk_norm { 2 * hs as u128 } else { 0 };
    linear_params(c, qkv_width, config.qkv_bias)?
        .checked_add(linear_params(c, c, config.bias)?)?
        .checked_add(qk_norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestBackend as B, small_config};
    use burn::tensor::Distribution;

    /// The attention variants of the modern switches, on a base config: QK-norm, RoPE,
    /// both, grouped-query (two groups, and multi-query), and all of them together.
    fn variants(base: &GptConfig) -> Vec<GptConfig> {
        let with = |f: &dyn Fn(&mut GptConfig)| {
            let mut c = base.clone();
            f(&mut c);
            c
        };
        let mut configs = vec![
            base.clone(),
            with(&|c| c.qk_norm = true),
            with(&|c| c.rope = true),
            with(&|c| {
                c.qk_norm = true;
                c.rope = true;
            }),
        ];
        for kv in [base.n_head / 2, 1] {
            if kv >= 1 && base.n_head.is_multiple_of(kv) {
                configs.push(with(&|c| c.n_kv_head = kv));
                configs.push(with(&|c| {
                    c.n_kv_head = kv;
                    c.qk_norm = true;
                    c.rope = true;
                }));
            }
        }
        configs
    }

    /// The fused kernel against the explicit path: same output and same gradients with
    /// respect to qkv and the layer's own parameters (QK-norm's gains), for head sizes
    /// that are and are not a multiple of the SIMD width, sequences longer than one block
    /// of queries, and every attention switch (grouped-query heads read in place by the
    /// kernel, repeated by the explicit path; RoPE and QK-norm before either).
    #[cfg(feature = "fused")]
    #[test]
    fn fused_kernel_matches_explicit_path_forward_and_backward() {
        type A = crate::test_util::TestAutodiff;
        let device = Default::default();
        for (b, t, n_embd, n_head) in [
            (2, 7, 32, 4),
            (3, 16, 48, 3),
            (1, 1, 12, 2),
            (2, 150, 24, 2),
        ] {
            let base = GptConfig {
                n_embd,
                n_head,
                block_size: t,
                dropout: 0.0,
                ..GptConfig::default()
            };
            for config in variants(&base) {
                let attn = CausalSelfAttention::<A>::new(&config, &device);
                let width = n_embd + 2 * config.kv_heads() * config.head_size();
                let qkv =
                    Tensor::<A, 3>::random([b, t, width], Distribution::Normal(0.0, 1.0), &device);
                let weights =
                    Tensor::<A, 3>::random([b, t, n_embd], Distribution::Normal(0.0, 1.0), &device);
                let run = |fused: bool| {
                    let qkv = qkv.clone().detach().require_grad();
                    let path = if fused {
                        AttentionPath::FusedCpu
                    } else {
                        AttentionPath::Explicit
                    };
                    let y =
                        attn.attention(path, attn.position_qk(qkv.clone(), 0, path), None, None);
                    let grads = (y.clone() * weights.clone()).sum().backward();
                    let norm_grad = [&attn.q_norm, &attn.k_norm].map(|norm| {
                        norm.as_ref()
                            .map(|n| n.gamma.val().grad(&grads).expect("a gradient").into_data())
                    });
                    (
                        y.inner().into_data(),
                        qkv.grad(&grads).expect("a gradient").into_data(),
                        norm_grad,
                    )
                };
                let (fused, explicit) = (run(true), run(false));
                let tolerance = burn::tensor::Tolerance::absolute(1e-5);
                fused.0.assert_approx_eq::<f32>(&explicit.0, tolerance);
                fused.1.assert_approx_eq::<f32>(&explicit.1, tolerance);
                for (f, e) in fused.2.into_iter().zip(explicit.2) {
                    if let (Some(f), Some(e)) = (f, e) {
                        f.assert_approx_eq::<f32>(&e, burn::tensor::Tolerance::absolute(1e-4));
                    }
                }
            }
        }
    }

    /// Burn's attention op, as `attend` calls it for inference on the GPU backends, is
    /// the explicit path's scores, mask and softmax: same scale, causal over a full
    /// sequence, and a single new token seeing every key (the KV cache's step). On flex
    /// this runs Burn's reference implementation; `gpt bench` checks the GPU kernels.
    #[test]
    fn burn_attention_op_matches_explicit_weights() {
        let device = Default::default();
        let config = GptConfig {
            block_size: 9,
            ..small_config()
        };
        let attn = CausalSelfAttention::<B>::new(&config, &device);
        let qkv = Tensor::<B, 3>::random([2, 9, 96], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = attn.heads(qkv);
        for tq in [9, 1] {
            let q = q.clone().narrow(2, 9 - tq, tq);
            let explicit = attn.weights(q.clone(), k.clone()).matmul(v.clone());
            let options = AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: tq > 1,
            };
            let op = attention(q, k.clone(), v.clone(), None, None, options);
            op.into_data().assert_approx_eq::<f32>(
                &explicit.into_data(),
                burn::tensor::Tolerance::absolute(1e-5),
            );
        }
    }

    /// Grouped-query attention is attention with each key/value head copied to its group
    /// of query heads: the same layer with n_kv_head = n_head and the k/v weights copied
    /// gives the same output.
    #[test]
    fn grouped_query_attention_equals_copied_key_value_heads() {
        let device = Default::default();
        let (c, nh, kv, hs) = (32, 4, 2, 8);
        let config = GptConfig {
            n_embd: c,
            n_head: nh,
            n_kv_head: kv,
            dropout: 0.0,
            ..GptConfig::default()
        };
        let gqa = CausalSelfAttention::<B>::new(&config, &device);
        let mut full = CausalSelfAttention::<B>::new(
            &GptConfig {
                n_kv_head: 0,
                ..config
            },
            &device,
        );
        let w = gqa.c_attn.weight.val(); // (C, C + 2·kv·hs)
        let head = |part_start: usize, g: usize| {
            let from = part_start + g * hs;
            w.clone().slice([0..c, from..from + hs])
        };
        let mut columns = vec![w.clone().slice([0..c, 0..c])]; // q unchanged
        for part_start in [c, c + kv * hs] {
            columns.extend((0..nh).map(|h| head(part_start, h / (nh / kv))));
        }
        full.c_attn.weight = burn::module::Param::from_tensor(Tensor::cat(columns, 1));
        full.c_proj = gqa.c_proj.clone();
        let x = Tensor::<B, 3>::random([2, 9, c], Distribution::Normal(0.0, 1.0), &device);
        gqa.forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&full.forward(x).into_data(), Default::default());
    }

    /// RoPE makes q·k depend on the distance between two positions only: the same q and k
    /// placed at positions (m, n) and (m + s, n + s) score alike, in every head.
    #[test]
    fn rope_scores_depend_on_relative_position() {
        let device = Default::default();
        let config = GptConfig {
            n_embd: 16,
            n_head: 2,
            block_size: 32,
            rope: true,
            ..GptConfig::default()
        };
        let attn = CausalSelfAttention::<B>::new(&config, &device);
        let qkv = Tensor::<B, 3>::random([1, 1, 48], Distribution::Normal(0.0, 1.0), &device);
        let scores = |m: usize, n: usize| -> Vec<f32> {
            let (q, _, _) = attn.heads(attn.position_qk(qkv.clone(), m, AttentionPath::Explicit));
            let (_, k, _) = attn.heads(attn.position_qk(qkv.clone(), n, AttentionPath::Explicit));
            (q * k).sum_dim(3).into_data().to_vec().unwrap() // one per head
        };
        let (near, shifted, far) = (scores(5, 3), scores(25, 23), scores(25, 3));
        for h in 0..2 {
            assert!(
                (near[h] - shifted[h]).abs() < 1e-4,
                "{near:?} vs {shifted:?}"
            );
            assert!(
                (near[h] - far[h]).abs() > 1e-3,
                "position must matter: {near:?} vs {far:?}"
            );
        }
        // Every head turns at the same frequencies: equal heads stay equal at any position.
        let head = Tensor::<B, 3>::random([1, 1, 8], Distribution::Normal(0.0, 1.0), &device);
        let twins = Tensor::cat(
            vec![head.clone(), head, qkv.clone().slice([0..1, 0..1, 16..48])],
            2,
        );
        let (q, _, _) = attn.heads(attn.position_qk(twins, 7, AttentionPath::Explicit));
        let (h0, h1) = (q.clone().slice([0..1, 0..1]), q.slice([0..1, 1..2]));
        h0.into_data()
            .assert_approx_eq::<f32>(&h1.into_data(), Default::default());
        // At position 0 nothing turns: RoPE leaves q and k as they are.
        let (q0, _, _) = attn.heads(attn.position_qk(qkv.clone(), 0, AttentionPath::Explicit));
        let (q, _, _) = attn.heads(qkv);
        q0.into_data()
            .assert_approx_eq::<f32>(&q.into_data(), Default::default());
    }

    #[test]
    fn attention_path_names_the_fused_kernel_on_flex() {
        use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
        use burn::backend::{Autodiff, Flex};
        let expected = if cfg!(feature = "fused") {
            AttentionPath::FusedCpu
        } else {
            AttentionPath::Explicit
        };
        assert_eq!(attention_path::<Flex>(), expected);
        assert_eq!(attention_path::<Autodiff<Flex>>(), expected);
        // Checkpointing strategies share Autodiff<Flex>'s tensor type, and its kernel.
        assert_eq!(
            attention_path::<Autodiff<Flex, BalancedCheckpointing>>(),
            expected
        );
        assert_eq!(
            serde_json::to_string(&AttentionPath::FusedCpu).unwrap(),
            "\"fused-cpu\""
        );
        assert_eq!(
            serde_json::from_str::<AttentionPath>("\"explicit\"").unwrap(),
            AttentionPath::Explicit
        );
        assert_eq!(AttentionPath::FusedCpu.to_string(), "fused-cpu");
    }

    /// Tensors of another dtype on flex fall back (with a notice on stderr) instead of
    /// feeding the f32 kernel: to Burn's op without autodiff, the explicit path with it.
    #[test]
    fn other_dtypes_fall_back_from_the_fused_kernel() {
        use burn::backend::Autodiff;
        let (device, f16) = (Default::default(), DType::F16);
        assert_eq!(
            AttentionPath::pick::<B>(&device, f16, Call::Full),
            AttentionPath::BurnOp
        );
        assert_eq!(
            AttentionPath::pick::<Autodiff<B>>(&device, f16, Call::Full),
            AttentionPath::Explicit
        );
    }

    /// The path each call reports having run: the one [`attention_path`] names for full
    /// passes, the explicit ops where the weights are recorded, and on flex's cached
    /// steps (the kernel reads no cache).
    #[test]
    fn each_call_reports_the_path_it_ran() {
        let device = Default::default();
        let attn = CausalSelfAttention::<B>::new(&small_config(), &device);
        let x = || Tensor::<B, 3>::random([1, 5, 32], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(attn.forward_with(x(), None, None).1, attention_path::<B>());
        let mut weights = Vec::new();
        let recording = attn.forward_with(x(), None, Some(&mut weights)).1;
        assert_eq!((recording, weights.len()), (AttentionPath::Explicit, 1));
        let mut past = None;
        let cached = attn.forward_with(x(), Some(&mut past), None).1;
        let expected = if cfg!(feature = "fused") {
            AttentionPath::Explicit
        } else {
            AttentionPath::BurnOp
        };
        assert_eq!(cached, expected);
        assert_eq!(past.map(|p| p.k.dims()[2]), Some(5));
    }

    /// The weights [`CausalSelfAttention::forward_recording`] records are those the fused
    /// kernel applies: times v they give the kernel's output, and the layer's output is
    /// the one [`CausalSelfAttention::forward`] gives (sequence longer than one block of
    /// the kernel's queries).
    #[cfg(feature = "fused")]
    #[test]
    fn recorded_weights_reproduce_the_fused_kernel() {
        let device = Default::default();
        let (b, t, n_embd, n_head) = (2, 70, 32, 4);
        let config = GptConfig {
            n_embd,
            n_head,
            dropout: 0.0,
            ..GptConfig::default()
        };
        let attn = CausalSelfAttention::<B>::new(&config, &device);
        let x = Tensor::<B, 3>::random([b, t, n_embd], Distribution::Normal(0.0, 1.0), &device);
        let mut weights = Vec::new();
        let recorded = attn.forward_recording(x.clone(), &mut weights);
        assert_eq!(weights.len(), 1);
        assert_eq!(weights[0].dims(), [b, n_head, t, t]);

        let qkv = per_token(&attn.c_attn, x.clone(), attn.precision);
        let (_, _, v) = attn.heads(qkv.clone());
        let from_weights = merge_heads(weights[0].clone().matmul(v));
        let fused = fused_attention::causal_self_attention(qkv, n_head, n_head, 0.0);
        let tolerance = burn::tensor::Tolerance::absolute(1e-5);
        from_weights
            .into_data()
            .assert_approx_eq::<f32>(&fused.into_data(), tolerance);
        recorded
            .into_data()
            .assert_approx_eq::<f32>(&attn.forward(x).into_data(), tolerance);
    }

    /// The batched computation must equal the lecture's version: each head on its own
    /// (its slice of the q/k/v weights), outputs concatenated, then the projection.
    #[test]
    fn batched_heads_equal_one_head_at_a_time() {
        let device = Default::default();
        let config = small_config();
        let attn = CausalSelfAttention::<B>::new(&config, &device);
        let (t, c, hs) = (7, 32, 8);
        let x = Tensor::<B, 3>::random([2, t, c], Distribution::Normal(0.0, 1.0), &device);
        let batched = attn.forward(x.clone());

        let w = attn.c_attn.weight.val(); // (C, 3C): [Wq | Wk | Wv], head h at columns h*hs..
        let mask = Tensor::<B, 2, Bool>::tril_mask([t, t], 0, &device)
            .reshape([1, t, t])
            .expand([2, t, t]);
        let heads: Vec<Tensor<B, 3>> = (0..4)
            .map(|h| {
                let proj = |part: usize| {
                    let cols = part * c + h * hs..part * c + (h + 1) * hs;
                    x.clone().matmul(w.clone().slice([0..c, cols]).unsqueeze()) // (B, T, hs)
                };
                let (q, k, v) = (proj(0), proj(1), proj(2));
                let wei = q.matmul(k.swap_dims(1, 2)) / (hs as f64).sqrt();
                softmax(wei.mask_fill(mask.clone(), f32::NEG_INFINITY), 2).matmul(v)
            })
            .collect();
        let one_by_one = attn.c_proj.forward(Tensor::cat(heads, 2));
        batched
            .into_data()
            .assert_approx_eq::<f32>(&one_by_one.into_data(), Default::default());
    }
}
