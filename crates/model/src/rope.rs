//! Rotary position embeddings (RoPE, Su et al. 2021, "RoFormer"), as Llama uses them.
//!
//! Instead of adding a learned position vector to each token, attention turns each head's
//! query and key by an angle proportional to the token's position: pair i of a head's
//! dimensions rotates at θ_i = rope_theta^(-2i/head_size) radians per position. Turning
//! q by mθ and k by nθ turns their dot product by (m - n)θ, so the scores depend on how
//! far apart two tokens are, not on where they sit, and no table of positions is learned.
//!
//! Which pairs: interleaved, dimensions (2i, 2i+1), as the RoFormer paper, Meta's original
//! Llama code and Burn's `RotaryEncoding`; Hugging Face's Llama rotates halves (i and
//! i + head_size/2). The two are the same rotation up to a fixed permutation of a head's
//! dimensions, which the learned q and k projections absorb, so a model trained from
//! scratch is equally good either way (Hugging Face permutes Meta's q/k weights when it
//! converts them, for that reason).
//!
//! Why not Burn's `RotaryEncoding` itself: it wants (…, T, head_size) tensors, so q and k
//! would first be split into (B, heads, T, hs) views, and its `apply` multiplies every
//! pair by a 2×4 sign matrix as a batched matmul and sums over a new axis; on the CPU
//! backend a training step of the CPU preset took 3× as long with it. Here the rotation
//! is x∘cos + swap(x)∘sin on rows as the projection lays them out, (B, T, heads·hs), where
//! swap(x) turns each pair (a, b) into (-b, a): one (hs × hs) matrix product and two
//! elementwise products. A test holds it to Burn's `RotaryEncoding`.

use burn::prelude::*;
use burn::tensor::FloatDType;

/// The cos/sin tables for rows of `heads` rotated heads followed by `plain` heads left as
/// they are (attention rotates its whole projected row [q | k | v] in one go, v
/// unturned, rather than splitting it), positions 0..block_size.
#[derive(Module, Debug)]
pub struct Rope<B: Backend> {
    /// (block_size, (heads + plain)·hs): cos(t·θ_i) for both dimensions of pair i of
    /// every rotated head, 1 for the plain heads.
    cos: Tensor<B, 2>,
    /// (block_size, (heads + plain)·hs): sin(t·θ_i), likewise; 0 for the plain heads.
    sin: Tensor<B, 2>,
    /// (hs, hs): x·swap turns each pair (a, b) of a head into (-b, a).
    swap: Tensor<B, 2>,
    /// rope_theta, for the fused path's kernel, which turns rows without the tables.
    theta: f64,
}

/// The angle by which pair `pair` of a head of `head_size` turns at `position`:
/// position·θ_i with θ_i = theta^(-2i/head_size).
pub(crate) fn angle(position: usize, pair: usize, head_size: usize, theta: f64) -> f64 {
    position as f64 * theta.powf(-2.0 * pair as f64 / head_size as f64)
}

impl<B: Backend> Rope<B> {
    pub fn new(
        block_size: usize,
        [heads, plain]: [usize; 2],
        head_size: usize,
        theta: f64,
        device: &B::Device,
    ) -> Self {
        let hs = head_size;
        let width = (heads + plain) * hs;
        let mut cos = Vec::with_capacity(block_size * width);
        let mut sin = Vec::with_capacity(block_size * width);
        for t in 0..block_size {
            for _ in 0..heads {
                for j in 0..hs {
                    let angle = angle(t, j / 2, hs, theta);
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
            cos.extend(std::iter::repeat_n(1.0, plain * hs));
            sin.extend(std::iter::repeat_n(0.0, plain * hs));
        }
        let mut swap = vec![0.0f32; hs * hs];
        for i in 0..hs / 2 {
            let (a, b) = (2 * i, 2 * i + 1);
            swap[b * hs + a] = -1.0; // new a = -b
            swap[a * hs + b] = 1.0; // new b = a
        }
        let table =
            |v: Vec<f32>, shape: [usize; 2]| Tensor::from_data(TensorData::new(v, shape), device);
        Self {
            cos: table(cos, [block_size, width]),
            sin: table(sin, [block_size, width]),
            swap: table(swap, [hs, hs]),
            theta,
        }
    }

    /// The angles the fused path's kernel turns rows of `t` tokens at positions
    /// start..start + t by (see [`crate::position_qk`]).
    #[cfg(feature = "fused")]
    pub(crate) fn rotation(&self, start: usize, t: usize) -> crate::position_qk::Rotation {
        crate::position_qk::Rotation::new(start, t, self.swap.dims()[0], self.theta)
    }

    /// `x` (B, T, (heads + plain)·hs) of tokens at positions start..start+T, the rotated
    /// heads' pairs turned by their position.
    pub fn apply(&self, x: Tensor<B, 3>, start: usize) -> Tensor<B, 3> {
        let [b, t, width] = x.dims();
        let hs = self.swap.dims()[0];
        // The tables' rows for these positions, copied out for every sequence of the batch:
        // an elementwise product of equal shapes runs far faster on the CPU backend than
        // one that broadcasts (and the tables are constants, outside the graph).
        let dtype: FloatDType = x.dtype().into();
        let rows = |table: &Tensor<B, 2>| {
            table
                .clone()
                .cast(dtype) // f32 tables, for a bfloat16/float16 x too
                .narrow(0, start, t)
                .unsqueeze::<3>()
                .repeat_dim(0, b)
        };
        let swapped = x
            .clone()
            .reshape([b * t * width / hs, hs])
            .matmul(self.swap.clone().cast(dtype))
            .reshape([b, t, width]);
        x * rows(&self.cos) + swapped * rows(&self.sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TestBackend as B;
    use burn::nn::RotaryEncodingConfig;
    use burn::tensor::Distribution;

    /// The same rotation as Burn's `RotaryEncoding` applied to each head on its own.
    #[test]
    fn matches_burns_rotary_encoding_head_by_head() {
        let device = Default::default();
        let (b, t, heads, hs, start) = (2, 5, 3, 8, 4);
        let ours = Rope::<B>::new(16, [heads, 1], hs, 500.0, &device);
        let burns = RotaryEncodingConfig::new(16, hs)
            .with_theta(500.0)
            .init::<B>(&device);
        let x = Tensor::<B, 3>::random([b, t, heads * hs], Distribution::Normal(0.0, 1.0), &device);
        let by_head = burns
            .apply(x.clone().reshape([b, t, heads, hs]).swap_dims(1, 2), start)
            .swap_dims(1, 2)
            .reshape([b, t, heads * hs]);
        // One more, plain head at the end, which must come out as it went in.
        let plain = Tensor::<B, 3>::random([b, t, hs], Distribution::Normal(0.0, 1.0), &device);
        let expected = Tensor::cat(vec![by_head, plain.clone()], 2);
        ours.apply(Tensor::cat(vec![x, plain], 2), start)
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Default::default());
    }
}
