//! Causal multi-head self-attention, the heart of the GPT.
//!
//! Every token emits a query ("what am I looking for?"), a key ("what do I contain?") and a
//! value ("what I will tell you if you attend to me"). A token's output is the average of
//! the values of the tokens before it, weighted by how well their keys match its query.
//! All heads run at once as one more batch dimension (the lecture's exercise 1): one matmul
//! projects q, k and v for every head, instead of a Python loop over `Head` modules.

use crate::GptConfig;
use crate::fused_attention;
use crate::init::linear;
use crate::kv_cache::LayerKv;
use crate::per_token::per_token;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::softmax;

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
            c_attn: linear(c, 3 * c, false, device),
            c_proj: linear(c, c, config.bias, device),
            attn_dropout: DropoutConfig::new(config.dropout).init(),
            resid_dropout: DropoutConfig::new(config.dropout).init(),
            n_head: config.n_head,
        }
    }

    /// `x` (B, T, C) → (B, T, C), every token attending to itself and those before it.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let qkv = per_token(&self.c_attn, x); // (B, T, 3C)
        // On the CPU backend the whole of `attend` runs as one fused kernel; elsewhere,
        // and as its reference, the explicit path below.
        let y = fused_attention::causal_self_attention(qkv, self.n_head, self.attn_dropout.prob)
            .unwrap_or_else(|qkv| {
                let (q, k, v) = self.heads(qkv);
                merge_heads(self.attend(q, k, v))
            });
        self.resid_dropout.forward(per_token(&self.c_proj, y))
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
        let y = merge_heads(self.attend(q, k, v));
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
    /// last Tq positions against keys and values (B, nh, Tk, hs) of all Tk positions.
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
    fn attend(&self, q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
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
        self.attn_dropout.forward(softmax(att, 3)).matmul(v) // (B, nh, Tq, hs)
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
    use crate::test_util::{TestAutodiff, TestBackend as B};
    use burn::tensor::Distribution;

    /// The fused kernel against the explicit path: same output and same gradient with
    /// respect to qkv, for head sizes that are and are not a multiple of the SIMD width, and
    /// for sequences longer than one block of queries.
    #[test]
    fn fused_kernel_matches_explicit_path_forward_and_backward() {
        type A = TestAutodiff;
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
                    let (q, k, v) = attn.heads(qkv.clone());
                    merge_heads(attn.attend(q, k, v))
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
