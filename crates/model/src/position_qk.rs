//! QK-norm and RoPE on the projected rows in place of cutting q and k out, one pass each
//! way on the CPU (the fused attention kernel's path).
//!
//! Each query and key head's hs numbers are, with QK-norm, divided by their root mean
//! square and scaled by a gain (q's for the query heads, k's for the key heads), then,
//! with RoPE, turned pair by pair by their position's angles (see [`crate::rope`]); the
//! value heads pass through. As tensor ops (the explicit path,
//! `CausalSelfAttention::position_qk`) that is q and k cut out of the row, two RMSNorms,
//! the row put back together and the rotation over the whole row (a product with the pair
//! swap and two with the cos/sin tables), each a pass over the rows and another backward;
//! on flex that cost a sixth of a training step for QK-norm and a tenth for RoPE. Here one
//! pass over the rows writes the positioned row, keeping each head's 1/rms, and one pass
//! writes the row's gradient and the gains'. With n = x/rms, m = n∘gain and y = R·m (R the
//! rotation, orthogonal, so its inverse is its transpose, the turn backwards):
//!
//!   dm = Rᵀ·dy,   dx = (dm∘gain − n·mean(dm∘gain∘n)) / rms,   d gain = Σ over rows and heads of dm∘n.
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
}

impl Heads {
    fn width(&self) -> usize {
        (self.nh + 2 * self.kv) * self.hs
    }

    /// Heads positioned per row: the query and key heads.
    fn positioned(&self) -> usize {
        self.nh + self.kv
    }
}

/// QK-norm's gains (hs each) and epsilon.
pub(crate) struct Norm<B: Backend> {
    pub q_gain: Tensor<B, 1>,
    pub k_gain: Tensor<B, 1>,
    pub eps: f32,
}

/// RoPE's angles for rows of `t` tokens at positions start..start + t: for each position,
/// cos and sin of pair i's angle, hs/2 each.
#[derive(Debug, Clone)]
pub(crate) struct Rotation {
    t: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rotation {
    pub fn new(start: usize, t: usize, hs: usize, theta: f64) -> Self {
        let angles = (start..start + t)
            .flat_map(|p| (0..hs / 2).map(move |i| crate::rope::angle(p, i, hs, theta)));
        let (cos, sin) = angles.map(|a| (a.cos() as f32, a.sin() as f32)).unzip();
        Self { t, cos, sin }
    }

    /// Turns each pair (a, b) of `head`, the row's `row`-th in the batch, by its angle;
    /// backwards (by minus the angle: the transpose) with `back`.
    fn turn(&self, head: &mut [f32], row: usize, back: bool) {
        let at = (row % self.t) * (head.len() / 2);
        let (cos, sin) = (&self.cos[at..], &self.sin[at..]);
        let sign = if back { -1.0 } else { 1.0 };
        for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
            let (a, b, s) = (pair[0], pair[1], sign * s);
            pair[0] = a * c - b * s;
            pair[1] = b * c + a * s;
        }
    }
}

/// `qkv` (B, T, (nh + 2·kv)·hs) with its query and key heads through QK-norm (`norm`)
/// and RoPE (`rotation`), whichever are given; for tensors where the fused kernel applies
/// (flex, f32).
pub(crate) fn position_rows<B: Backend>(
    qkv: Tensor<B, 3>,
    norm: Option<Norm<B>>,
    rotation: Option<Rotation>,
    heads: Heads,
) -> Tensor<B, 3> {
    let kernel = kernel::<B>(qkv.dtype()).expect("called on the fused kernel's path");
    let dims = qkv.dims();
    let qkv = qkv.into_primitive().tensor();
    let gains = norm.map(|n| {
        let eps = n.eps;
        (
            [n.q_gain, n.k_gain].map(|g| g.into_primitive().tensor()),
            eps,
        )
    });
    match kernel {
        Kernel::Flex => {
            let flex = |p| -> FlexTensor {
                downcast::<_, FlexTensor>(p)
                    .unwrap_or_else(|_| unreachable!())
                    .to_contiguous()
            };
            let saved = Saved {
                qkv: flex(qkv),
                norm: gains.map(|([q, k], eps)| Gains {
                    q: flex(q),
                    k: flex(k),
                    eps,
                    inv_rms: Vec::new(),
                }),
                rotation,
                heads,
            };
            upcast(FlexTensor::from_data(TensorData::new(
                forward(&saved).0,
                dims,
            )))
        }
        Kernel::AutodiffFlex => {
            let ad = |p| -> AutodiffFlexTensor { downcast(p).unwrap_or_else(|_| unreachable!()) };
            let qkv = ad(qkv);
            let gains = gains.map(|([q, k], eps)| (ad(q), ad(k), eps));
            let mut saved = Saved {
                qkv: qkv.primitive.to_contiguous(),
                norm: gains.as_ref().map(|(q, k, eps)| Gains {
                    q: q.primitive.to_contiguous(),
                    k: k.primitive.to_contiguous(),
                    eps: *eps,
                    inv_rms: Vec::new(),
                }),
                rotation,
                heads,
            };
            let (y, inv_rms) = forward(&saved);
            let y = FlexTensor::from_data(TensorData::new(y, dims));
            if let Some(norm) = &mut saved.norm {
                norm.inv_rms = inv_rms;
            }
            // Burn's graph takes a node's parents as an array of fixed length: the row and
            // both gains with QK-norm, the row alone without.
            upcast(match gains {
                Some((q, k, _)) => match PositionQk
                    .prepare::<NoCheckpointing>([qkv.node, q.node, k.node])
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish(saved, y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                },
                None => match PositionQk
                    .prepare::<NoCheckpointing>([qkv.node])
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish(saved, y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                },
            })
        }
    }
}

#[derive(Debug)]
struct PositionQk;

/// What the backward pass needs: the input rows, QK-norm's gains and each head's 1/rms,
/// RoPE's angles.
#[derive(Debug, Clone)]
struct Saved {
    qkv: FlexTensor,
    norm: Option<Gains>,
    rotation: Option<Rotation>,
    heads: Heads,
}

#[derive(Debug, Clone)]
struct Gains {
    q: FlexTensor,
    k: FlexTensor,
    eps: f32,
    /// (rows, nh + kv), filled by the forward pass.
    inv_rms: Vec<f32>,
}

impl PositionQk {
    /// Registers dL/dqkv and, where the gains have nodes, dL/dgain.
    fn register<const N: usize>(ops: Ops<Saved, N>, grads: &mut Gradients) {
        let Ops {
            parents,
            node,
            state,
        } = ops;
        let dy = grads.consume::<Flex>(&node).to_contiguous();
        let (dqkv, dgains) = backward(&state, &dy);
        let shape = state.qkv.layout().shape().clone();
        let mut parents = parents.into_iter();
        if let Some(node) = parents.next().flatten() {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dqkv, shape)));
        }
        let hs = state.heads.hs;
        for (node, grad) in parents.zip(dgains.into_iter().flatten()) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(grad, [hs])));
            }
        }
    }
}

impl Backward<Flex, 3> for PositionQk {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        Self::register(ops, grads);
    }
}

impl Backward<Flex, 1> for PositionQk {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        Self::register(ops, grads);
    }
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice().expect("contiguous f32")
}

/// The positioned rows, and each row's query and key heads' 1/rms (unused without
/// QK-norm).
fn forward(saved: &Saved) -> (Vec<f32>, Vec<f32>) {
    let s = saved.heads;
    let x = slice(&saved.qkv);
    let (w, hs, positioned) = (s.width(), s.hs, s.positioned());
    let mut y = x.to_vec();
    let mut inv = vec![0.0f32; x.len() / w * positioned];
    y.par_chunks_mut(ROWS * w)
        .zip(inv.par_chunks_mut(ROWS * positioned))
        .enumerate()
        .for_each(|(task, (y, inv))| {
            for (i, y) in y.chunks_exact_mut(w).enumerate() {
                let row = task * ROWS + i;
                for h in 0..positioned {
                    let yh = &mut y[h * hs..][..hs];
                    if let Some(norm) = &saved.norm {
                        let gain = slice(if h < s.nh { &norm.q } else { &norm.k });
                        let ms = yh.iter().map(|v| v * v).sum::<f32>() / hs as f32;
                        let r = 1.0 / (ms + norm.eps).sqrt();
                        inv[i * positioned + h] = r;
                        yh.iter_mut().zip(gain).for_each(|(y, &g)| *y *= r * g);
                    }
                    if let Some(rotation) = &saved.rotation {
                        rotation.turn(yh, row, false);
                    }
                }
            }
        });
    (y, inv)
}

/// dL/dqkv, and with QK-norm dL/dq_gain and dL/dk_gain, from dL/dy.
fn backward(saved: &Saved, dy: &FlexTensor) -> (Vec<f32>, Option<[Vec<f32>; 2]>) {
    let s = saved.heads;
    let x = slice(&saved.qkv);
    let (w, hs, positioned) = (s.width(), s.hs, s.positioned());
    // dm = Rᵀ·dy, then through the norm in place.
    let mut dx = slice(dy).to_vec();
    let zeros = || [vec![0.0f32; hs], vec![0.0f32; hs]];
    // Each task's share of the gains' gradients, summed below in the tasks' order, so a
    // run gives the same sums whatever thread took which task.
    let partials: Vec<[Vec<f32>; 2]> = dx
        .par_chunks_mut(ROWS * w)
        .zip(x.par_chunks(ROWS * w))
        .enumerate()
        .map(|(task, (dx, x))| {
            let mut dgain = zeros();
            for (i, (dx, x)) in dx.chunks_exact_mut(w).zip(x.chunks_exact(w)).enumerate() {
                let row = task * ROWS + i;
                for h in 0..positioned {
                    let at = h * hs..(h + 1) * hs;
                    let dxh = &mut dx[at.clone()];
                    if let Some(rotation) = &saved.rotation {
                        rotation.turn(dxh, row, true);
                    }
                    let Some(norm) = &saved.norm else { continue };
                    let (gain, dgain) = if h < s.nh {
                        (slice(&norm.q), &mut dgain[0])
                    } else {
                        (slice(&norm.k), &mut dgain[1])
                    };
                    let r = norm.inv_rms[row * positioned + h];
                    let xh = &x[at];
                    let mut dot = 0.0f32;
                    for j in 0..hs {
                        let n = xh[j] * r;
                        dgain[j] += dxh[j] * n;
                        dot += dxh[j] * gain[j] * n;
                    }
                    let mean = dot / hs as f32;
                    for j in 0..hs {
                        dxh[j] = r * (dxh[j] * gain[j] - xh[j] * r * mean);
                    }
                }
            }
            dgain
        })
        .collect();
    let dgains = saved.norm.as_ref().map(|_| {
        partials
            .into_iter()
            .fold(zeros(), |[mut a, mut b], [c, d]| {
                a.iter_mut().zip(c).for_each(|(a, c)| *a += c);
                b.iter_mut().zip(d).for_each(|(b, d)| *b += d);
                [a, b]
            })
    });
    (dx, dgains)
}
