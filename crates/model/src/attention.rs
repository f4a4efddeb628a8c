//! Causal multi-head self-attention, the heart of the GPT.
//!
//! Every token emits a query ("what am I looking for?"), a key ("what do I contain?") and a
//! value ("what I will tell you if you attend to me"). A token's output is the average of
//! the values of the tokens before it, weighted by how well their keys match its query.
//! All heads run at once as one more batch dimension (the lecture's exercise 1): one matmul
//! projects q, k and v for every head, instead of a Python loop over `Head` modules.

use crate::GptConfig;
use crate::fused_attention;
use crate::init::{linear, linear_std, residual_std};
use crate::kv_cache::LayerKv;
use crate::per_token::per_token;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::Element;
use burn::tensor::activation::softmax;

/// Which computation [`CausalSelfAttention::forward`] runs on a backend: the fused CPU
/// kernel (`crate::fused_attention`, flex with or without autodiff, f32) or the explicit
/// tensor ops of [`CausalSelfAttention`]'s `attend` (every other backend, and the model
/// crate built without its `fused` feature). Sampling with a KV cache always runs the
/// explicit path; this names the path of full forward passes (training, evaluation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionPath {
    /// "fused-cpu"
    FusedCpu,
    /// "explicit"
    Explicit,
}

impl AttentionPath {
    pub fn as_str(self) -> &'static str {
        match self {
            AttentionPath::FusedCpu => "fused-cpu",
            AttentionPath::Explicit => "explicit",
        }
    }
}

impl std::fmt::Display for AttentionPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The attention path `B`'s forward pass takes for tensors of its float element type
/// (f32 on flex), decided by the very check the forward pass makes. (Tensors cast to
/// another dtype at run time fall back to the explicit path; on flex that fallback is
/// reported once on stderr.)
pub fn attention_path<B: Backend>() -> AttentionPath {
    if fused_attention::applies::<B>(<B::FloatElem as Element>::dtype()) {
        AttentionPath::FusedCpu
    } else {
        AttentionPath::Explicit
    }
}

/// The fields are visible to the crate so the lecture's one-head-at-a-time version
/// ([`crate::lecture::MultiHeadAttention::from_batched`]) can be cut from the same weights.
#[derive(Module, Debug)]
pub struct CausalSelfAttention<B: Backend> {
    /// Query, key and value projections for all heads, side by side: C → 3C.
    pub(crate) c_attn: Linear<B>,
    /// Mixes the concatenated heads back into the residual stream: C → C.
    pub(crate) c_proj: Linear<B>,
    pub(crate) attn_dropout: Dropout,
    pub(crate) resid_dropout: Dropout,
    pub(crate) n_head: usize,
}

impl<B: Backend> CausalSelfAttention<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Self {
        let c = config.n_embd;
        Self {
            c_attn: linear(c, 3 * c, config.qkv_bias, device),
            c_proj: linear_std(c, c, config.bias, residual_std(config), device),
            attn_dropout: DropoutConfig::new(config.dropout).init(),
            resid_dropout: DropoutConfig::new(config.dropout).init(),
            n_head: config.n_head,
        }
    }

    /// `x` (B, T, C) → (B, T, C), every token attending to itself and those before it.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_with(x, None)
    }

    /// As [`forward`](Self::forward), pushing this layer's attention weights
    /// (B, nh, T, T) onto `weights`: the softmax after the causal mask, before dropout.
    pub(crate) fn forward_recording(
        &self,
        x: Tensor<B, 3>,
        weights: &mut Vec<Tensor<B, 4>>,
    ) -> Tensor<B, 3> {
        self.forward_with(x, Some(weights))
    }

    fn forward_with(
        &self,
        x: Tensor<B, 3>,
        record: Option<&mut Vec<Tensor<B, 4>>>,
    ) -> Tensor<B, 3> {
        let qkv = per_token(&self.c_attn, x); // (B, T, 3C)
        let y = match record {
            // The fused kernel never stores the weights: take the explicit path, which
            // the tests hold to the kernel's outputs.
            Some(weights) => self.explicit(qkv, Some(weights)),
            // With the `fused` feature, on the CPU backend the whole of `explicit` runs as
            // one fused kernel; elsewhere, and as its reference, the explicit path.
            // [`attention_path`] says which.
            None => {
                fused_attention::causal_self_attention(qkv, self.n_head, self.attn_dropout.prob)
                    .unwrap_or_else(|qkv| self.explicit(qkv, None))
            }
        };
        self.resid_dropout.forward(per_token(&self.c_proj, y))
    }

    /// Projected `qkv` (B, T, 3C) → the heads' outputs side by side (B, T, C), as
    /// separate tensor ops.
    fn explicit(&self, qkv: Tensor<B, 3>, record: Option<&mut Vec<Tensor<B, 4>>>) -> Tensor<B, 3> {
        let (q, k, v) = self.heads(qkv);
        merge_heads(self.attend(q, k, v, record))
    }

    /// As [`forward`](Self::forward) for `x` holding the tokens after those in `past`:
    /// their keys and values are reused, and this call's are appended to `past`.
    pub fn forward_cached(&self, x: Tensor<B, 3>, past: &mut Option<LayerKv<B>>) -> Tensor<B, 3> {
        let (q, k, v) = self.heads(per_token(&self.c_attn, x));
        let (k, v) = match past.take() {
            // (B, nh, T_past + T, hs): earlier tokens' keys and values, then these.
            Some(p) => (Tensor::cat(vec![p.k, k], 2), Tensor::cat(vec![p.v, v], 2)),
            None => (k, v),
        };
        *past = Some(LayerKv {
            k: k.clone(),
            v: v.clone(),
        });
        let y = merge_heads(self.attend(q, k, v, None));
        self.resid_dropout.forward(per_token(&self.c_proj, y))
    }

    /// Projected `qkv` (B, T, 3C) → q, k, v, each (B, nh, T, hs): the heads become a batch
    /// dimension.
    fn heads(&self, qkv: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [b, t, c3] = qkv.dims();
        let (nh, hs) = (self.n_head, c3 / 3 / self.n_head);
        let split = |x: Tensor<B, 3>| x.reshape([b, t, nh, hs]).swap_dims(1, 2);
        let mut qkv = qkv.chunk(3, 2); // 3 × (B, T, C)
        let v = split(qkv.pop().expect("three chunks"));
        let k = split(qkv.pop().expect("three chunks"));
        let q = split(qkv.pop().expect("three chunks"));
        (q, k, v)
    }

    /// Scaled dot-product attention with a causal mask: queries (B, nh, Tq, hs) of the
    /// last Tq positions against keys and values (B, nh, Tk, hs) of all Tk positions, the
    /// [`weights`](Self::weights) (pushed onto `record` when given) through dropout,
    /// times the values.
    fn attend(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        record: Option<&mut Vec<Tensor<B, 4>>>,
    ) -> Tensor<B, 4> {
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
        let att = q.matmul(k.swap_dims(2, 3)) * scale; // (B, nh, Tq, Tk)
        let att = if tq == 1 {
            att
        } else {
            let offset = (tk - tq) as i64;
            let future = Tensor::<B, 2, Bool>::tril_mask([tq, tk], offset, &att.device()) // true above the diagonal
                .reshape([1, 1, tq, tk])
                .expand([b, nh, tq, tk]);
            att.mask_fill(future, f32::NEG_INFINITY)
        };
        softmax(att, 3)
    }
}

/// (B, nh, T, hs) → (B, T, C): the heads' outputs side by side again.
fn merge_heads<B: Backend>(y: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, nh, t, hs] = y.dims();
    y.swap_dims(1, 2).reshape([b, t, nh * hs])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TestBackend as B;
    use burn::tensor::Distribution;

    /// The fused kernel against the explicit path: same output and same gradient with
    /// respect to qkv, for head sizes that are and are not a multiple of the SIMD width, and
    /// for sequences longer than one block of queries.
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
            let config = GptConfig {
                n_embd,
                n_head,
                dropout: 0.0,
                ..GptConfig::default()
            };
            let attn = CausalSelfAttention::<A>::new(&config, &device);
            let qkv =
                Tensor::<A, 3>::random([b, t, 3 * n_embd], Distribution::Normal(0.0, 1.0), &device);
            let weights =
                Tensor::<A, 3>::random([b, t, n_embd], Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let qkv = qkv.clone().detach().require_grad();
                let y = if fused {
                    fused_attention::causal_self_attention(qkv.clone(), n_head, 0.0)
                        .expect("flex has the fused kernel")
                } else {
                    attn.explicit(qkv.clone(), None)
                };
                let grads = (y.clone() * weights.clone()).sum().backward();
                (
                    y.inner().into_data(),
                    qkv.grad(&grads).expect("a gradient").into_data(),
                )
            };
            let ((y_fused, g_fused), (y_explicit, g_explicit)) = (run(true), run(false));
            let tolerance = burn::tensor::Tolerance::absolute(1e-5);
            y_fused.assert_approx_eq::<f32>(&y_explicit, tolerance);
            g_fused.assert_approx_eq::<f32>(&g_explicit, tolerance);
        }
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

    /// Tensors of another dtype on flex fall back to the explicit path (with a notice on
    /// stderr) instead of feeding the f32 kernel.
    #[test]
    fn other_dtypes_fall_back_to_the_explicit_path() {
        let device = Default::default();
        let qkv = Tensor::<B, 3>::random([1, 4, 24], Distribution::Normal(0.0, 1.0), &device)
            .cast(burn::tensor::DType::F16);
        assert!(fused_attention::causal_self_attention(qkv, 2, 0.0).is_err());
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

        let qkv = per_token(&attn.c_attn, x.clone());
        let (_, _, v) = attn.heads(qkv.clone());
        let from_weights = merge_heads(weights[0].clone().matmul(v));
        let fused = fused_attention::causal_self_attention(qkv, n_head, 0.0)
            .expect("flex has the fused kernel");
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
        let config = GptConfig {
            n_embd: 32,
            n_head: 4,
            dropout: 0.0,
            ..GptConfig::default()
        };
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
