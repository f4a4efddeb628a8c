//! Causal self-attention as one fused CPU kernel, forward and backward.
//!
//! [`crate::attention`] computes attention the lecture's way: split the heads, q·kᵀ, scale,
//! mask, softmax, dropout, ·v, merge the heads. On Burn's CPU backend (flex) each step is a
//! separate tensor op that writes a (B, nh, T, T) tensor, and autodiff keeps every one of
//! them for the backward pass; on a small model that bookkeeping costs more than the
//! arithmetic. Here the same function runs per (batch row, head), reading q, k and v in
//! place inside qkv and writing each head's output in place inside y, in blocks of 64
//! queries: one matrix product for the block's scores (against only the keys it may see),
//! the causal mask, softmax and dropout row by row while the block is in cache, one product
//! with v. As in FlashAttention, only the output and each row's log-sum-exp are kept for
//! the backward pass, which recomputes the attention weights from them instead of storing
//! a (B, nh, T, T) tensor.
//!
//! It applies on the flex backend, with and without autodiff (any checkpointing strategy),
//! to f32 tensors; every other backend keeps the explicit path, where its own kernels
//! apply. [`crate::attention_path`] says which path a backend takes, from the same check
//! the forward pass makes; a flex backend that falls back says so once on stderr. The
//! tests hold the two paths to the same values and gradients. The crate's `fused` feature
//! (on by default) builds this module; without it every backend takes the explicit path.
//!
//! # How the kernel is plugged in: a run-time type check, not a backend trait
//!
//! Burn's idiom for a custom kernel (the `custom-wgpu-kernel` and `custom-cubecl-kernel`
//! examples and the Burn book's "backend extension" chapter) is an extension trait,
//!
//! ```text
//! pub trait Backend: burn::tensor::backend::Backend {
//!     fn fused_attention(qkv: FloatTensor<Self>, n_head: usize, dropout: f64) -> FloatTensor<Self>;
//! }
//! pub trait AutodiffBackend: Backend + burn::tensor::backend::AutodiffBackend {}
//! ```
//!
//! implemented for each backend that has the kernel (here `Flex`), and for
//! `Autodiff<B, C>` with `B: Backend` by registering a backward step, as below; the model
//! is then generic over `B: crate::Backend` instead of Burn's `Backend`. That is the right
//! shape for a library of kernels, and it resolves the choice at compile time. It fits this
//! project worse:
//!
//! - every backend the model runs on must implement the trait, including those with no
//!   kernel (ndarray, wgpu, cuda, and wrappers such as fusion or router), each with an impl
//!   that only calls the explicit path: Rust has no specialisation, so one blanket
//!   `impl<B: burn::tensor::backend::Backend> Backend for B` cannot coexist with the
//!   `Flex` impl. The model crate would depend on every backend crate, or each binary would
//!   carry impls for its own;
//! - the bound spreads to every generic item that holds a model: `Model<B>`, `Gpt<B>`, the
//!   training step, the Learner's `AutodiffBackend` bounds, the cli's sampling and
//!   evaluation, so one CPU kernel would reshape the whole workspace's signatures;
//! - the backward pass becomes a second trait method (the `Autodiff<B, C>` impl calls the
//!   inner backend's), where here it is one `Backward` step on `Flex`.
//!
//! The check here is a `TypeId` comparison of `B`'s float tensor type and the tensor's
//! dtype, made at each attention call (nanoseconds against a kernel of milliseconds): the
//! model stays generic over Burn's `Backend`, backends without a kernel need nothing, and
//! the explicit path remains the one reference every backend shares. What it gives up is
//! the compiler's word that the kernel runs; [`crate::attention_path`], the stderr notice
//! and the cli's test that the default build trains through the kernel stand in for it.

use crate::view::View;
use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::{Flex, FlexTensor};
use burn::prelude::*;
use burn::tensor::backend::BackendTypes;
use burn::tensor::{DType, Distribution, TensorData, TensorPrimitive};
use multiversion::multiversion;
use rayon::prelude::*;
use std::any::{Any, TypeId};
use std::sync::{Arc, Once};

pub(crate) type AutodiffFlexTensor = <Autodiff<Flex> as BackendTypes>::FloatTensorPrimitive;

/// Which kernel applies to tensors of `B` holding `dtype`: the one check both
/// [`causal_self_attention`] and [`crate::attention_path`] make.
///
/// It asks for `B`'s float tensor type, not for `B` itself, so every checkpointing
/// strategy of `Autodiff<Flex, C>` qualifies (they share `AutodiffTensor<Flex>`). That is
/// sound: the graph node below is compute-bound and keeps its own state, and burn-autodiff
/// treats a compute-bound node the same under every strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// `Flex`: inference (validation, sampling), no graph, no dropout.
    Flex,
    /// `Autodiff<Flex, _>`: training, with a backward pass.
    AutodiffFlex,
}

pub(crate) fn kernel<B: Backend>(dtype: DType) -> Option<Kernel> {
    let primitive = TypeId::of::<B::FloatTensorPrimitive>();
    if dtype != DType::F32 {
        None
    } else if primitive == TypeId::of::<FlexTensor>() {
        Some(Kernel::Flex)
    } else if primitive == TypeId::of::<AutodiffFlexTensor>() {
        Some(Kernel::AutodiffFlex)
    } else {
        None
    }
}

/// Whether [`causal_self_attention`] runs for tensors of `B` holding `dtype`.
pub(crate) fn applies<B: Backend>(dtype: DType) -> bool {
    kernel::<B>(dtype).is_some()
}

/// `qkv` (B, T, C + 2·n_kv·hs), each row `[q | k | v]` with query head h at columns
/// h·hs.. of q and key/value head g at columns g·hs.. of k and v, → (B, T, C), the heads'
/// outputs side by side: exactly what the explicit path computes from the same `qkv`,
/// dropout applied to the attention weights with probability `dropout` when training.
/// With grouped-query attention (n_kv < n_head) query head h reads key/value head
/// h / (n_head / n_kv) in place: nothing is copied per query head.
///
/// Called only where it [`applies`] (`crate::attention`'s `AttentionPath::pick`).
pub(crate) fn causal_self_attention<B: Backend>(
    qkv: Tensor<B, 3>,
    n_head: usize,
    n_kv_head: usize,
    dropout: f64,
) -> Tensor<B, 3> {
    let kernel = kernel::<B>(qkv.dtype()).expect("picked only where the kernel applies");
    let shape = Shape::new(qkv.dims(), n_head, n_kv_head);
    let primitive = qkv.into_primitive().tensor();
    match kernel {
        // Without autodiff (validation, sampling) dropout is off, as in burn's Dropout.
        Kernel::Flex => {
            let qkv: FlexTensor = downcast(primitive).unwrap_or_else(|_| unreachable!());
            upcast(forward(&qkv.to_contiguous(), shape, None).0)
        }
        Kernel::AutodiffFlex => {
            let qkv: AutodiffFlexTensor = downcast(primitive).unwrap_or_else(|_| unreachable!());
            upcast(forward_autodiff(qkv, shape, dropout))
        }
    }
}

/// Says on stderr, once per process, that a flex backend took the explicit path: a
/// wrapper around Flex that is not `Autodiff<Flex, _>`, or tensors that are not f32.
pub(crate) fn notice_fallback<B: Backend>(dtype: DType) {
    static NOTICE: Once = Once::new();
    let backend = std::any::type_name::<B>();
    if backend.contains("burn_flex") {
        NOTICE.call_once(|| {
            eprintln!(
                "note: attention runs the explicit path (slower), not the fused CPU kernel: \
                 the kernel takes f32 tensors of Flex or Autodiff<Flex>, this is {dtype:?} on {backend}"
            )
        });
    }
}

/// The sizes one call works with.
#[derive(Debug, Clone, Copy)]
struct Shape {
    b: usize,
    t: usize,
    /// The width of q and of y: nh·hs.
    c: usize,
    /// The width of a row of qkv: (nh + 2·kv)·hs.
    w: usize,
    nh: usize,
    kv: usize,
    hs: usize,
}

impl Shape {
    fn new([b, t, w]: [usize; 3], nh: usize, kv: usize) -> Self {
        let hs = w / (nh + 2 * kv);
        Self {
            b,
            t,
            c: nh * hs,
            w,
            nh,
            kv,
            hs,
        }
    }

    /// Why scale by 1/sqrt(head_size): see [`crate::attention`].
    fn scale(&self) -> f32 {
        (self.hs as f32).powf(-0.5)
    }
}

/// Which attention weights dropout zeroes: a hash of (seed, position of the weight), so the
/// backward pass regenerates the forward pass's mask instead of storing B·nh·T·T flags.
#[derive(Debug, Clone, Copy)]
struct Dropout {
    seed: u64,
    /// The probability of dropping a weight.
    p: f32,
}

impl Dropout {
    /// 0 for a dropped weight, 1/(1-p) for a kept one (so the expected sum is unchanged).
    #[inline(always)]
    fn factor(&self, index: u64) -> f32 {
        // splitmix64's finaliser: consecutive indices give independent-looking bits.
        let mut z = self
            .seed
            .wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let u = (z >> 40) as f32 / (1u64 << 24) as f32; // uniform in [0, 1)
        if u < self.p {
            0.0
        } else {
            1.0 / (1.0 - self.p)
        }
    }
}

/// The dropout factor of weight j in the score row whose first weight has index `first`
/// (1 without dropout).
fn keep(dropout: Option<Dropout>, first: usize) -> impl Fn(usize) -> f32 {
    move |j| dropout.map_or(1.0, |d| d.factor((first + j) as u64))
}

/// Under autodiff: the forward kernel, and a graph node whose backward is [`backward`].
fn forward_autodiff(qkv: AutodiffFlexTensor, shape: Shape, dropout: f64) -> AutodiffFlexTensor {
    let dropout = (dropout > 0.0).then(|| Dropout {
        seed: draw_seed(),
        p: dropout as f32,
    });
    let input = qkv.primitive.to_contiguous();
    let (y, lse) = forward(&input, shape, dropout);
    match FusedAttention
        .prepare::<NoCheckpointing>([qkv.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let saved = Saved {
                qkv: input,
                y: y.clone(),
                lse: Arc::new(lse),
                shape,
                dropout,
            };
            prep.finish(saved, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// A dropout seed from burn's random generator, so `B::seed` makes runs reproducible.
fn draw_seed() -> u64 {
    let bits = Tensor::<Flex, 1>::random([2], Distribution::Default, &Default::default())
        .into_data()
        .to_vec::<f32>()
        .expect("f32 data");
    (u64::from(bits[0].to_bits()) << 32) | u64::from(bits[1].to_bits())
}

#[derive(Debug)]
struct FusedAttention;

/// What the backward pass needs: the input, the output and each row's log-sum-exp.
#[derive(Debug, Clone)]
struct Saved {
    qkv: FlexTensor,
    y: FlexTensor,
    lse: Arc<Vec<f32>>,
    shape: Shape,
    dropout: Option<Dropout>,
}

impl Backward<Flex, 1> for FusedAttention {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Ops {
            parents,
            node,
            state,
        } = ops;
        unary::<Flex, _>(parents, node, grads, |dy| {
            backward(&state, &dy.to_contiguous())
        });
    }
}

/// Queries handled together: one block of scores is (QUERY_BLOCK, keys) and fits in the
/// L2 cache. A block's queries see keys up to its last query only, so the products skip
/// most of the masked upper triangle.
const QUERY_BLOCK: usize = 64;

/// Heads are read and written in place inside qkv (T, 3C) and y (T, C) through views,
/// without copies.
impl View {
    /// The (T, hs) matrix at column `offset` of a (T, `width`) batch row.
    fn head(s: Shape, width: usize, offset: usize) -> Self {
        Self {
            offset,
            rows: s.t,
            cols: s.hs,
            rs: width,
            cs: 1,
        }
    }

    /// Query head `h`'s q and its key/value head's k and v inside a batch row's qkv
    /// (T, w), each (T, hs).
    fn qkv(s: Shape, h: usize) -> (Self, Self, Self) {
        let g = h / (s.nh / s.kv); // the key/value head of h's group
        let kv_width = s.kv * s.hs;
        (
            Self::head(s, s.w, h * s.hs),
            Self::head(s, s.w, s.c + g * s.hs),
            Self::head(s, s.w, s.c + kv_width + g * s.hs),
        )
    }

    /// Query head `h`'s slice of a batch row's output y (T, C).
    fn y(s: Shape, h: usize) -> Self {
        Self::head(s, s.c, h * s.hs)
    }
}

/// `out = scale·a·b`, or `out += scale·a·b` when `accumulate`: one single-threaded call of
/// the `gemm` crate (the crate burn's CPU backend multiplies with), on strided views.
fn matmul(
    out: (&mut [f32], View),
    a: (&[f32], View),
    b: (&[f32], View),
    scale: f32,
    accumulate: bool,
) {
    let ((out, o), (a, av), (b, bv)) = (out, a, b);
    assert!(av.cols == bv.rows && o.rows == av.rows && o.cols == bv.cols);
    assert!(
        o.fits(out.len()) && av.fits(a.len()) && bv.fits(b.len()),
        "view outside its slice"
    );
    // SAFETY: the views were checked to lie inside their slices, `out` is borrowed
    // mutably so it overlaps neither input, and gemm reads and writes only within the views.
    unsafe {
        gemm::gemm(
            o.rows,
            o.cols,
            av.cols,
            out.as_mut_ptr().add(o.offset),
            o.cs as isize,
            o.rs as isize,
            accumulate,
            a.as_ptr().add(av.offset),
            av.cs as isize,
            av.rs as isize,
            b.as_ptr().add(bv.offset),
            bv.cs as isize,
            bv.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The forward kernel: (output (B, T, C), log-sum-exp of each score row (B, nh, T)).
/// Batch rows run in parallel.
fn forward(qkv: &FlexTensor, s: Shape, dropout: Option<Dropout>) -> (FlexTensor, Vec<f32>) {
    let qkv: &[f32] = qkv.as_slice().expect("contiguous f32");
    let (t, c) = (s.t, s.c);
    let mut y = vec![0.0f32; s.b * t * c];
    let mut lse = vec![0.0f32; s.b * s.nh * t];
    y.par_chunks_mut(t * c)
        .zip(lse.par_chunks_mut(s.nh * t))
        .enumerate()
        .for_each(|(bi, (y, lse))| {
            let qkv = &qkv[bi * t * s.w..][..t * s.w];
            forward_row(qkv, y, lse, bi, s, dropout);
        });
    (flex([s.b, t, c], y), lse)
}

/// The forward pass of batch row `bi`: `qkv` (T, 3C) → `y` (T, C), `lse` (nh, T).
fn forward_row(
    qkv: &[f32],
    y: &mut [f32],
    lse: &mut [f32],
    bi: usize,
    s: Shape,
    dropout: Option<Dropout>,
) {
    let t = s.t;
    let mut scores = vec![0.0f32; QUERY_BLOCK.min(t) * t];
    for h in 0..s.nh {
        let (q, k, v) = View::qkv(s, h);
        for from in (0..t).step_by(QUERY_BLOCK) {
            let to = (from + QUERY_BLOCK).min(t); // queries from..to see keys 0..to
            let block = View::dense(to - from, to);
            let qk = (qkv, k.rows(0, to).t());
            matmul(
                (&mut scores, block),
                (qkv, q.rows(from, to)),
                qk,
                s.scale(),
                false,
            );
            for (r, row) in scores[..block.rows * to].chunks_exact_mut(to).enumerate() {
                let i = from + r;
                let first = ((bi * s.nh + h) * t + i) * t;
                lse[h * t + i] = softmax_row(row, i, keep(dropout, first));
            }
            let out = (&mut *y, View::y(s, h).rows(from, to));
            matmul(out, (&scores, block), (qkv, v.rows(0, to)), 1.0, false);
        }
    }
}

/// Query i's row of scaled scores against keys 0..row.len() → its attention weights, in
/// place: softmax over keys 0..=i (the causal mask: later keys get weight 0), then the
/// dropout factor `keep(j)`. Returns the log-sum-exp of the visible scores, all the
/// backward pass needs to recompute the softmax.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn softmax_row(row: &mut [f32], i: usize, keep: impl Fn(usize) -> f32) -> f32 {
    let (seen, unseen) = row.split_at_mut(i + 1);
    unseen.fill(0.0);
    // Shifted by the row's maximum so exp never overflows.
    let max = max(seen);
    for x in seen.iter_mut() {
        *x = exp(*x - max);
    }
    let sum = sum(seen);
    for (j, x) in seen.iter_mut().enumerate() {
        *x *= keep(j) / sum;
    }
    max + sum.ln()
}

/// The backward kernel: dL/dqkv (B, T, 3C) from dL/dy (B, T, C). Batch rows run in
/// parallel.
fn backward(saved: &Saved, dy: &FlexTensor) -> FlexTensor {
    let s = saved.shape;
    let (t, c) = (s.t, s.c);
    let qkv: &[f32] = saved.qkv.as_slice().expect("contiguous f32");
    let y: &[f32] = saved.y.as_slice().expect("contiguous f32");
    let dy: &[f32] = dy.as_slice().expect("contiguous f32");
    let mut dqkv = vec![0.0f32; s.b * t * s.w];
    dqkv.par_chunks_mut(t * s.w)
        .enumerate()
        .for_each(|(bi, dqkv)| {
            let row = Row {
                qkv: &qkv[bi * t * s.w..][..t * s.w],
                y: &y[bi * t * c..][..t * c],
                dy: &dy[bi * t * c..][..t * c],
                lse: &saved.lse[bi * s.nh * t..][..s.nh * t],
            };
            backward_row(row, dqkv, bi, s, saved.dropout);
        });
    flex([s.b, t, s.w], dqkv)
}

/// One batch row's slices of what the backward pass reads.
struct Row<'a> {
    qkv: &'a [f32],
    y: &'a [f32],
    dy: &'a [f32],
    lse: &'a [f32],
}

/// The backward pass of batch row `bi`, into `dqkv` (T, 3C), zero on entry.
///
/// With S the scaled scores, P = softmax(S), D = P·keep the weights after dropout and
/// y = D·v: dD = dy·vᵀ, dv = Dᵀ·dy, dP = dD·keep, dS = P ∘ (dP − rowsum(P ∘ dP)),
/// dq = dS·k·scale, dk = dSᵀ·q·scale, where rowsum(P ∘ dP) = rowsum(D ∘ dD) = dy·y.
fn backward_row(row: Row, dqkv: &mut [f32], bi: usize, s: Shape, dropout: Option<Dropout>) {
    let t = s.t;
    let mut weights = vec![0.0f32; QUERY_BLOCK.min(t) * t];
    let mut grads = vec![0.0f32; QUERY_BLOCK.min(t) * t];
    for h in 0..s.nh {
        let (q, k, v) = View::qkv(s, h);
        let yh = View::y(s, h);
        for from in (0..t).step_by(QUERY_BLOCK) {
            let to = (from + QUERY_BLOCK).min(t);
            let block = View::dense(to - from, to);
            let (q_blk, dy_blk) = ((row.qkv, q.rows(from, to)), (row.dy, yh.rows(from, to)));
            let qk = (row.qkv, k.rows(0, to).t());
            matmul((&mut weights, block), q_blk, qk, s.scale(), false);
            matmul(
                (&mut grads, block),
                dy_blk,
                (row.qkv, v.rows(0, to).t()),
                1.0,
                false,
            );
            for r in 0..block.rows {
                let i = from + r;
                let dyi = &row.dy[i * s.c + h * s.hs..][..s.hs];
                let delta = dot(dyi, &row.y[i * s.c + h * s.hs..][..s.hs]);
                let first = ((bi * s.nh + h) * t + i) * t;
                let lse = row.lse[h * t + i];
                let (w, g) = (&mut weights[r * to..][..to], &mut grads[r * to..][..to]);
                score_grad_row(w, g, i, lse, delta, s.scale(), keep(dropout, first));
            }
            let (w, g) = ((&weights[..], block), (&grads[..], block));
            matmul(
                (&mut *dqkv, v.rows(0, to)),
                (w.0, w.1.t()),
                dy_blk,
                1.0,
                true,
            );
            matmul(
                (&mut *dqkv, q.rows(from, to)),
                g,
                (row.qkv, k.rows(0, to)),
                1.0,
                true,
            );
            matmul(
                (&mut *dqkv, k.rows(0, to)),
                (g.0, g.1.t()),
                q_blk,
                1.0,
                true,
            );
        }
    }
}

/// Query i's row: `weights` holds its scaled scores and `grads` dL/dD; on return `weights`
/// holds D (the weights after softmax and dropout factor `keep(j)`) and `grads`
/// dL/dS·scale, both 0 past key i.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn score_grad_row(
    weights: &mut [f32],
    grads: &mut [f32],
    i: usize,
    lse: f32,
    delta: f32,
    scale: f32,
    keep: impl Fn(usize) -> f32,
) {
    let (seen, unseen) = weights.split_at_mut(i + 1);
    unseen.fill(0.0);
    grads[i + 1..].fill(0.0);
    for (j, (w, g)) in seen.iter_mut().zip(&mut grads[..=i]).enumerate() {
        let p = exp(*w - lse);
        let keep = keep(j);
        *w = p * keep;
        *g = p * (*g * keep - delta) * scale;
    }
}

/// `x·y`, summed in 8 independent lanes so the loop vectorises (a single running sum
/// would force one addition after another).
#[inline(always)]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (xs, ys) in xc.zip(yc) {
        for l in 0..8 {
            lanes[l] += xs[l] * ys[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Σx, in 8 lanes as in [`dot`].
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for xs in chunks {
        for l in 0..8 {
            lanes[l] += xs[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// max x, in 8 lanes as in [`dot`].
#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for xs in chunks {
        for l in 0..8 {
            lanes[l] = lanes[l].max(xs[l]);
        }
    }
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

/// eˣ for x ≤ 0 (softmax's shifted scores), without a library call so loops over it
/// vectorise: eˣ = 2ᵏ·eʳ with k = round(x/ln 2) and |r| ≤ ln2/2, eʳ by its Taylor series
/// to r⁶ (relative error below 2·10⁻⁷, f32's own precision). Below -87 it returns ≈1e-38
/// instead of 0, which is 0 for any sum it enters.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    let k = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - k * LN2_HI - k * LN2_LO;
    let poly = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    poly * f32::from_bits(((k as i32 + 127) << 23) as u32)
}

fn flex(shape: [usize; 3], data: Vec<f32>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// `value` as a `T` when that is its type (the backend is a compile-time type parameter;
/// this asks which one it is at run time), or `value` back.
pub(crate) fn downcast<A: 'static, T: 'static>(value: A) -> Result<T, A> {
    let boxed: Box<dyn Any> = Box::new(value);
    boxed
        .downcast::<T>()
        .map(|t| *t)
        .map_err(|a| *a.downcast::<A>().expect("the value's own type"))
}

/// A primitive known to be `B`'s float tensor type back into a `Tensor<B, D>`.
pub(crate) fn upcast<B: Backend, P: 'static, const D: usize>(primitive: P) -> Tensor<B, D> {
    let primitive = downcast::<P, B::FloatTensorPrimitive>(primitive)
        .unwrap_or_else(|_| unreachable!("called with B's own primitive type"));
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_to_f32_precision() {
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let (ours, std) = (exp(x), x.exp());
            assert!(
                (ours - std).abs() <= 3e-7 * std,
                "exp({x}): {ours} vs {std}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn dropout_drops_the_requested_share_and_rescales_the_rest() {
        let dropout = Dropout { seed: 7, p: 0.2 };
        let n = 100_000;
        let factors: Vec<f32> = (0..n).map(|i| dropout.factor(i)).collect();
        let dropped = factors.iter().filter(|&&f| f == 0.0).count() as f32 / n as f32;
        assert!((dropped - 0.2).abs() < 0.01, "dropped {dropped}");
        assert!(factors.iter().all(|&f| f == 0.0 || f == 1.0 / 0.8));
        let other_seed = Dropout { seed: 8, p: 0.2 };
        assert!((0..n).any(|i| other_seed.factor(i) != dropout.factor(i)));
    }

    /// With dropout on, the backward kernel is the derivative of the forward kernel under
    /// the same mask: checked against central differences of L = Σ y∘w.
    #[test]
    fn backward_with_dropout_matches_finite_differences() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let shape = Shape::new([2, 5, 3 * 8], 2, 2);
        let dropout = Some(Dropout { seed: 11, p: 0.3 });
        let mut normal =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
        let qkv = normal(2 * 5 * 24);
        let w = normal(2 * 5 * 8);
        let loss = |qkv: &[f32]| -> f64 {
            let (y, _) = forward(&flex([2, 5, 24], qkv.to_vec()), shape, dropout);
            let y: &[f32] = y.as_slice().unwrap();
            y.iter().zip(&w).map(|(a, b)| f64::from(a * b)).sum()
        };
        let input = flex([2, 5, 24], qkv.clone());
        let (y, lse) = forward(&input, shape, dropout);
        let saved = Saved {
            qkv: input,
            y,
            lse: Arc::new(lse),
            shape,
            dropout,
        };
        let grad = backward(&saved, &flex([2, 5, 8], w.clone()));
        let grad: &[f32] = grad.as_slice().unwrap();
        let eps = 1e-2;
        for i in 0..qkv.len() {
            let (mut plus, mut minus) = (qkv.clone(), qkv.clone());
            plus[i] += eps;
            minus[i] -= eps;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(eps));
            let diff = (numeric - f64::from(grad[i])).abs();
            assert!(
                diff < 2e-3,
                "qkv[{i}]: numeric {numeric}, kernel {}",
                grad[i]
            );
        }
    }
}
