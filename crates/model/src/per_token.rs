//! Applying a linear layer to every position of a (B, T, C) batch.

use crate::precision::{self, Precision};
use burn::nn::Linear;
use burn::prelude::*;

/// `layer` applied to each of the B·T positions of `x` (B, T, C_in) → (B, T, C_out), in
/// `precision` (see [`crate::precision`]).
///
/// Why not `layer.forward(x)` on the 3-d tensor: Burn broadcasts the weight and runs one
/// small matrix product per batch row (B products of T × C_in), and the weight gradient
/// is B more products summed afterwards. Folding the batch into the rows gives one
/// (B·T) × C_in product forward and one per gradient, which a CPU runs far faster. The
/// reshapes are free: the tensor is contiguous and only its shape changes.
pub(crate) fn per_token<B: Backend>(
    layer: &Linear<B>,
    x: Tensor<B, 3>,
    precision: Precision,
) -> Tensor<B, 3> {
    by_rows(x, |rows| precision::linear(layer, rows, precision))
}

/// `f`, a map of (B·T, C_in) rows to (B·T, C_out) rows (linear layers, SwiGLU), applied to
/// `x` (B, T, C_in) → (B, T, C_out), for the reason above.
pub(crate) fn by_rows<B: Backend>(
    x: Tensor<B, 3>,
    f: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 2>,
) -> Tensor<B, 3> {
    let [b, t, c] = x.dims();
    let y = f(x.reshape([b * t, c]));
    let n = y.dims()[1];
    y.reshape([b, t, n])
}
