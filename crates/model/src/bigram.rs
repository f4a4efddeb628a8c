//! The lecture's baseline: each token reads the logits for the next token straight off a
//! row of a `vocab_size × vocab_size` table. No context at all — the GPT's job is to beat it.

use crate::init::embedding;
use crate::{GptConfig, Result};
use burn::nn::Embedding;
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct BigramLanguageModel<B: Backend> {
    /// Row `i` is the (unnormalised) log-probabilities of the token after token `i`.
    token_embedding_table: Embedding<B>,
}

impl<B: Backend> BigramLanguageModel<B> {
    /// Uses only `vocab_size`. Initialised N(0, 0.02) like the GPT, so the first loss is
    /// ln(vocab_size): the lecture's `bigram.py` keeps PyTorch's N(0, 1) and starts at 4.87
    /// instead of ln 65 = 4.17, because unit-variance logits are far from uniform.
    pub fn new(config: &GptConfig, device: &B::Device) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            token_embedding_table: embedding(config.vocab_size, config.vocab_size, device),
        })
    }

    /// `idx` (B, T) → logits (B, T, vocab_size).
    pub fn forward(&self, idx: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.token_embedding_table.forward(idx)
    }
}

/// The parameters [`BigramLanguageModel::new`] makes: one vocab_size × vocab_size table.
pub(crate) fn params(config: &GptConfig) -> Option<u128> {
    (config.vocab_size as u128).checked_mul(config.vocab_size as u128)
}
