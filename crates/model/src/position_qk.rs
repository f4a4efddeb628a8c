//! QK-norm on the projected rows in place of cutting q and k out, one pass each way on
//! the CPU (the fused attention kernel's path).
//!
//! Each query and key head's hs numbers are divided by their root mean square and scaled
//! by a gain (q's for the query heads, k's for the key heads); the value heads pass
//! through. As tensor ops (the explicit path, `CausalSelfAttention::position_qk`) that is
//! q and k cut out of the row, two RMSNorms, and the row put back together, and backward
//! a zero-filled row per cut; on flex that cost a sixth of a training step. Here one pass
//! over the rows writes the normalised row, keeping each head's 1/rms, and one pass
//! writes the row's gradient and the gains', with n = x/rms, dn = dy∘gain:
//!
//!   dx = (dn − n·mean(dn∘n)) / rms,   d gain = Σ over rows and heads of dy∘n.
//!
//! The tests (attention's fused-against-explicit checks) hold it to the explicit path's
//! values and gradients, the gains' included.

use crate::fused_attention::{AutodiffFlexTensor, Kernel, downcast, kernel, upcast};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::prelude::*;
use burn::tensor::TensorData;
use rayon::prelude::*;

/// Rows per parallel task.
const ROWS: usize = 16;

/// The heads of a row: `nh` query heads, then `kv` key heads, then `kv` value heads, of
/// `hs` numbers each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub nh: usize,
    pub kv: usize,
    pub hs: usize,
    pub eps: f32,
}

impl Heads {
    fn width(&self) -> usize {
        (self.nh + 2 * self.kv) * self.hs
    }

    /// Heads normalised per row: the query and key heads.
    fn normed(&self) -> usize {
        self.nh + self.kv
    }
}

/// `qkv` (B, T, (nh + 2·kv)·hs) with its query heads normalised and scaled by `q_gain`
/// (hs), its key heads by `k_gain`; for tensors where the fused kernel applies (flex, f32).
pub(crate) fn qk_norm_rows<B: Backend>(
    qkv: Tensor<B, 3>,
    q_gain: Tensor<B, 1>,
    k_gain: Tensor<B, 1>,
    heads: Heads,
) -> Tensor<B, 3> {
    let kernel = kernel::<B>(qkv.dtype()).expect("called on the fused kernel's path");
    let dims = qkv.dims();
    let [qkv, q_gain, k_gain] = [
        qkv.into_primitive().tensor(),
        q_gain.into_primitive().tensor(),
        k_gain.into_primitive().tensor(),
    ];
    match kernel {
        Kernel::Flex => {
            let flex = |p| -> FlexTensor {
                downcast::<_, FlexTensor>(p)
                    .unwrap_or_else(|_| unreachable!())
                    .to_contiguous()
            };
            let (y, _) = forward(&flex(qkv), &flex(q_gain), &flex(k_gain), heads);
            upcast(FlexTensor::from_data(TensorData::new(y, dims)))
        }
        Kernel::AutodiffFlex => {
            let ad = |p| -> AutodiffFlexTensor { downcast(p).unwrap_or_else(|_| unreachable!()) };
            let (qkv, q_gain, k_gain) = (ad(qkv), ad(q_gain), ad(k_gain));
            let saved = Saved {
                qkv: qkv.primitive.to_contiguous(),
                q_gain: q_gain.primitive.to_contiguous(),
                k_gain: k_gain.primitive.to_contiguous(),
                inv_rms: Vec::new(),
                heads,
            };
            let (y, inv_rms) = forward(&saved.qkv, &saved.q_gain, &saved.k_gain, heads);
            let y = FlexTensor::from_data(TensorData::new(y, dims));
            upcast(
                match QkNorm
                    .prepare::<NoCheckpointing>([qkv.node, q_gain.node, k_gain.node])
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish(Saved { inv_rms, ..saved }, y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                },
            )
        }
    }
}

#[derive(Debug)]
struct QkNorm;

/// What the backward pass needs: the input rows and gains, and each head's 1/rms.
#[derive(Debug, Clone)]
struct Saved {
    qkv: FlexTensor,
    q_gain: FlexTensor,
    k_gain: FlexTensor,
    /// (rows, nh + kv).
    inv_rms: Vec<f32>,
    heads: Heads,
}

impl Backward<Flex, 3> for QkNorm {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Ops {
            parents,
            node,
            state,
        } = ops;
        let dy = grads.consume::<Flex>(&node).to_contiguous();
        let (dqkv, dq_gain, dk_gain) = backward(&state, &dy);
        let hs = state.heads.hs;
        let shape = state.qkv.layout().shape().clone();
        let [qkv, q, k] = parents;
        if let Some(node) = qkv {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dqkv, shape)));
        }
        for (node, grad) in [(q, dq_gain), (k, dk_gain)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(grad, [hs])));
            }
        }
    }
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice().expect("contiguous f32")
}

/// The normalised rows, and each row's query and key heads' 1/rms.
fn forward(
    qkv: &FlexTensor,
    q_gain: &FlexTensor,
    k_gain: &FlexTensor,
    s: Heads,
) -> (Vec<f32>, Vec<f32>) {
    let (x, gq, gk) = (slice(qkv), slice(q_gain), slice(k_gain));
    let (w, hs, normed) = (s.width(), s.hs, s.normed());
    let mut y = vec![0.0f32; x.len()];
    let mut inv = vec![0.0f32; x.len() / w * normed];
    y.par_chunks_mut(ROWS * w)
        .zip(inv.par_chunks_mut(ROWS * normed))
        .zip(x.par_chunks(ROWS * w))
        .for_each(|((y, inv), x)| {
            let rows = y.chunks_exact_mut(w).zip(inv.chunks_exact_mut(normed));
            for ((y, inv), x) in rows.zip(x.chunks_exact(w)) {
                for h in 0..normed {
                    let gain = if h < s.nh { gq } else { gk };
                    let (xh, yh) = (&x[h * hs..][..hs], &mut y[h * hs..][..hs]);
                    let ms = xh.iter().map(|v| v * v).sum::<f32>() / hs as f32;
                    let r = 1.0 / (ms + s.eps).sqrt();
                    inv[h] = r;
                    for ((y, &x), &g) in yh.iter_mut().zip(xh).zip(gain) {
                        *y = x * r * g;
                    }
                }
                y[normed * hs..].copy_from_slice(&x[normed * hs..]);
            }
        });
    (y, inv)
}

/// dL/dqkv, dL/dq_gain and dL/dk_gain from dL/dy.
fn backward(saved: &Saved, dy: &FlexTensor) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let s = saved.heads;
    let (x, dy) = (slice(&saved.qkv), slice(dy));
    let (gq, gk) = (slice(&saved.q_gain), slice(&saved.k_gain));
    let (w, hs, normed) = (s.width(), s.hs, s.normed());
    let mut dx = vec![0.0f32; x.len()];
    let zeros = || (vec![0.0f32; hs], vec![0.0f32; hs]);
    // Each task's share of the gains' gradients, summed below in the tasks' order, so a
    // run gives the same sums whatever thread took which task.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(ROWS * w)
        .zip(x.par_chunks(ROWS * w))
        .zip(dy.par_chunks(ROWS * w))
        .zip(saved.inv_rms.par_chunks(ROWS * normed))
        .map(|(((dx, x), dy), inv)| {
            let (mut dgq, mut dgk) = zeros();
            let rows = dx.chunks_exact_mut(w).zip(x.chunks_exact(w));
            for ((dx, x), (dy, inv)) in rows.zip(dy.chunks_exact(w).zip(inv.chunks_exact(normed))) {
                for (h, &r) in inv.iter().enumerate() {
                    let (gain, dgain) = if h < s.nh {
                        (gq, &mut dgq)
                    } else {
                        (gk, &mut dgk)
                    };
                    let at = h * hs..(h + 1) * hs;
                    let (xh, dyh, dxh) = (&x[at.clone()], &dy[at.clone()], &mut dx[at]);
                    let mut dot = 0.0f32;
                    for j in 0..hs {
                        let n = xh[j] * r;
                        dgain[j] += dyh[j] * n;
                        dot += dyh[j] * gain[j] * n;
                    }
                    let mean = dot / hs as f32;
                    for j in 0..hs {
                        dxh[j] = r * (dyh[j] * gain[j] - xh[j] * r * mean);
                    }
                }
                dx[normed * hs..].copy_from_slice(&dy[normed * hs..]);
            }
            (dgq, dgk)
        })
        .collect();
    let (dgq, dgk) = partials
        .into_iter()
        .fold(zeros(), |(mut a, mut b), (c, d)| {
            a.iter_mut().zip(c).for_each(|(a, c)| *a += c);
            b.iter_mut().zip(d).for_each(|(b, d)| *b += d);
            (a, b)
        });
    (dx, dgq, dgk)
}
