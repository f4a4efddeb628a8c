//! What a run trains on: a text's train/val split, or freshly generated problems. Either
//! serves random chunks of a split, so one loader drives both.

use crate::arithmetic::TaskConfig;
use crate::generator::RandomProblems;
use crate::{Chunk, RandomChunks, Split, TokenStore};
use burn::data::dataset::Dataset;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum Corpus {
    Text(TokenStore),
    Problems(TaskConfig),
}

impl Corpus {
    /// `len` random chunks of `block_size + 1` tokens from `split`; item `i` depends only
    /// on `(seed, i)`.
    pub fn random_chunks(
        &self,
        split: Split,
        block_size: usize,
        len: usize,
        seed: u64,
    ) -> Arc<dyn Dataset<Chunk>> {
        match self {
            Corpus::Text(store) => Arc::new(RandomChunks::new(
                store.split(split).clone(),
                block_size,
                len,
                seed,
            )),
            Corpus::Problems(task) => Arc::new(RandomProblems::new(
                task.clone(),
                split,
                block_size,
                len,
                seed,
            )),
        }
    }
}
