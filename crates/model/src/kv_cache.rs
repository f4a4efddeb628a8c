//! The keys and values of tokens already seen, kept between sampling steps.
//!
//! When sampling, step n+1 sees the same first n tokens as step n. Their keys and values
//! in every layer do not change (attention is causal: a token never looks ahead), so they
//! are computed once and kept here; each step then runs the network on the one new token
//! only, instead of on the whole context as nanoGPT's `generate` does.

use burn::prelude::*;

/// One layer's keys and values, each (B, nh, T_past, hs).
#[derive(Debug, Clone)]
pub struct LayerKv<B: Backend> {
    pub k: Tensor<B, 4>,
    pub v: Tensor<B, 4>,
}

impl<B: Backend> LayerKv<B> {
    /// The keys and values (B, n_kv, T_past + T, hs) of the cached tokens in `past`, then
    /// of the new ones `k`, `v` (B, n_kv, T, hs); `past` then holds them all.
    pub(crate) fn extend(
        past: &mut Option<Self>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (k, v) = match past.take() {
            Some(p) => (Tensor::cat(vec![p.k, k], 2), Tensor::cat(vec![p.v, v], 2)),
            None => (k, v),
        };
        *past = Some(Self {
            k: k.clone(),
            v: v.clone(),
        });
        (k, v)
    }
}

/// Keys and values for every layer, and how many positions they cover.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerKv<B>>>,
    len: usize,
}

impl<B: Backend> Default for KvCache<B> {
    fn default() -> Self {
        Self {
            layers: Vec::new(),
            len: 0,
        }
    }
}

impl<B: Backend> KvCache<B> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions (tokens) already cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Layer `i`'s slot, created empty on first use.
    pub(crate) fn layer(&mut self, i: usize) -> &mut Option<LayerKv<B>> {
        if self.layers.len() <= i {
            self.layers.resize_with(i + 1, || None);
        }
        &mut self.layers[i]
    }

    /// Records that `t` more positions were appended in every layer.
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
}
