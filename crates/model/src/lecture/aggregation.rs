//! The mathematical trick in self-attention: token t's output is an average of the tokens
//! up to t (the lecture's `xbow`, "x bag of words": `xbow[b, t] = mean(x[b, ..=t])`).
//! Three ways to compute it, each faster than the last, all equal:
//!
//! - v1 [`xbow_loop`]: a double loop over batch and time;
//! - v2 [`xbow_matmul`]: one matmul with a lower-triangular matrix whose rows sum to 1;
//! - v3 [`xbow_softmax`]: the same matrix as the softmax of zeros with the future at -inf.
//!
//! v3 is the form attention keeps. Replace its zeros by data-dependent affinities (query ·
//! key) and it becomes v4, a self-attention [`Head`](super::Head); [`causal_softmax`] is the
//! step they share.

use burn::prelude::*;
use burn::tensor::activation::softmax;

/// v1: `xbow[b, t] = mean(x[b, ..=t])`, one position at a time. `x` (B, T, C) → (B, T, C).
/// Plain, and slow: B·T small operations where v2 needs one.
pub fn xbow_loop<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, t, c] = x.dims();
    let mut xbow = Tensor::zeros([b, t, c], &x.device());
    for bi in 0..b {
        for ti in 0..t {
            let xprev = x.clone().slice([bi..bi + 1, 0..ti + 1]); // (1, t+1, C)
            xbow = xbow.slice_assign([bi..bi + 1, ti..ti + 1], xprev.mean_dim(1)); // (1, 1, C)
        }
    }
    xbow
}

/// v2: the same average as one matmul. Row t of the lower-triangular matrix holds
/// 1/(t+1) in columns 0..=t, so multiplying by it sums the past and divides by its length.
pub fn xbow_matmul<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, t, _] = x.dims();
    let ones = Tensor::<B, 2>::ones([t, t], &x.device()).tril(0); // (T, T), 1 on and below the diagonal
    let wei = ones.clone() / ones.sum_dim(1); // each row sums to 1
    wei.unsqueeze::<3>().expand([b, t, t]).matmul(x) // (B, T, T) @ (B, T, C) → (B, T, C)
}

/// v3: the same matrix from a softmax. Zeros say "every past token is equally
/// interesting"; -inf on the future makes its weight exactly 0.
pub fn xbow_softmax<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, t, _] = x.dims();
    let wei = causal_softmax(Tensor::zeros([b, t, t], &x.device())); // (B, T, T)
    wei.matmul(x)
}

/// Affinities (B, T, T) → weights (B, T, T): everything after each row's own position is
/// set to -inf (a token cannot talk to the future), then each row's softmax sums to 1.
pub fn causal_softmax<B: Backend>(wei: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, t, _] = wei.dims();
    let future = Tensor::<B, 2, Bool>::tril_mask([t, t], 0, &wei.device()) // true above the diagonal
        .unsqueeze::<3>()
        .expand([b, t, t]);
    softmax(wei.mask_fill(future, f32::NEG_INFINITY), 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lecture::Head;
    use crate::test_util::TestBackend as B;
    use burn::tensor::Distribution;

    fn random_x(shape: [usize; 3]) -> Tensor<B, 3> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    #[test]
    fn three_ways_to_average_the_past_agree() {
        let x = random_x([4, 8, 2]); // the lecture's B, T, C
        let v1 = xbow_loop(x.clone());
        // v1 itself, by hand: the first output is the first token, the second the mean of two.
        let row = |t: Tensor<B, 3>, i: usize| t.slice([0..1, i..i + 1]);
        row(v1.clone(), 0)
            .into_data()
            .assert_approx_eq::<f32>(&row(x.clone(), 0).into_data(), Default::default());
        let mean01 = (row(x.clone(), 0) + row(x.clone(), 1)) / 2.0;
        row(v1.clone(), 1)
            .into_data()
            .assert_approx_eq::<f32>(&mean01.into_data(), Default::default());
        for v in [xbow_matmul(x.clone()), xbow_softmax(x)] {
            v.into_data()
                .assert_approx_eq::<f32>(&v1.clone().into_data(), Default::default());
        }
    }

    /// v4 generalises v3: with a query that asks for nothing (zero weights), every key
    /// matches equally, and with the identity as value the head is the plain average again.
    #[test]
    fn v4_with_a_blank_query_is_the_plain_average() {
        let device = Default::default();
        let c = 6;
        let key = Tensor::random([c, c], Distribution::Normal(0.0, 1.0), &device);
        let head = Head::<B>::from_weights(
            key,
            Tensor::zeros([c, c], &device),
            Tensor::eye(c, &device),
            0.0,
        );
        let x = random_x([3, 7, c]);
        head.forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&xbow_loop(x).into_data(), Default::default());
    }
}
