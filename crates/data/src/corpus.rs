//! What a run trains on: a text's train/val split, conversations, or freshly generated
//! problems. Each serves random chunks of a split, so one loader drives all three.

use crate::arithmetic::TaskConfig;
use crate::generator::RandomProblems;
use crate::sft::ConversationStore;
use crate::{Chunk, ConsecutiveWindows, RandomChunks, Split, TokenStore};
use burn::data::dataset::Dataset;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum Corpus {
    Text(TokenStore),
    Conversations(ConversationStore),
    Problems(TaskConfig),
}

impl Corpus {
    /// `len` random chunks of `block_size + 1` tokens from `split`; item `i` depends only
    /// on `(seed, i)`. Items `batch_size · k .. batch_size · (k + 1)` make one batch:
    /// generated problems share one operator in each.
    pub fn random_chunks(
        &self,
        split: Split,
        block_size: usize,
        batch_size: usize,
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
            Corpus::Conversations(store) => {
                Arc::new(store.random_chunks(split, block_size, len, seed))
            }
            Corpus::Problems(task) => Arc::new(RandomProblems::new(
                task.clone(),
                split,
                block_size,
                batch_size,
                len,
                seed,
            )),
        }
    }

    /// All of `split` once, in order: a text's consecutive `block_size` windows, or each
    /// conversation; `None` for problems, which never end.
    pub fn whole_split(&self, split: Split, block_size: usize) -> Option<Arc<dyn Dataset<Chunk>>> {
        match self {
            Corpus::Text(store) => Some(Arc::new(ConsecutiveWindows::new(
                store.split(split).clone(),
                block_size,
            ))),
            Corpus::Conversations(store) => Some(Arc::new(store.each(split, block_size))),
            Corpus::Problems(_) => None,
        }
    }
}
