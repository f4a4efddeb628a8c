//! Measuring a trained model: the lecture's `estimate_loss` (mean over random batches)
//! and the deterministic loss over all of a split. (Arithmetic runs
//! are also scored by exact match: see `exact`.)

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use data::{Chunk, Corpus, LmBatch, LmBatcher, Split, mix_seed};
use model::loss::masked_cross_entropy;
use model::{LanguageModel, Model};

/// Mean loss over `eval_iters` random batches of `split` (`estimate_loss` for one split).
pub fn estimate_loss<B: Backend>(
    model: &Model<B>,
    corpus: &Corpus,
    split: Split,
    (block_size, batch_size, eval_iters): (usize, usize, usize),
    seed: u64,
    device: &B::Device,
) -> f64 {
    let chunks = corpus.random_chunks(
        split,
        block_size,
        batch_size,
        eval_iters * batch_size,
        mix_seed(seed, split as u64),
    );
    mean_loss(model, &*chunks, batch_size, device).0
}

/// Mean loss over all of `split` once ([`Corpus::whole_split`]: a text's consecutive
/// `block_size` windows, or each conversation, scored on its replies), and the number of
/// targets scored; `None` for generated problems.
pub fn full_split_loss<B: Backend>(
    model: &Model<B>,
    corpus: &Corpus,
    split: Split,
    block_size: usize,
    batch_size: usize,
    device: &B::Device,
) -> Option<(f64, usize)> {
    let chunks = corpus.whole_split(split, block_size)?;
    Some(mean_loss(model, &*chunks, batch_size, device))
}

/// Mean loss per scored target over a dataset of chunks, in batches.
fn mean_loss<B: Backend>(
    model: &Model<B>,
    chunks: &dyn Dataset<Chunk>,
    batch_size: usize,
    device: &B::Device,
) -> (f64, usize) {
    let (mut total, mut count) = (0.0, 0);
    for start in (0..chunks.len()).step_by(batch_size) {
        let items: Vec<Chunk> = (start..(start + batch_size).min(chunks.len()))
            .filter_map(|i| chunks.get(i))
            .collect();
        let n: usize = items.iter().map(Chunk::scored_targets).sum();
        let batch: LmBatch<B> = LmBatcher.batch(items, device);
        let logits = model
            .logits(batch.inputs)
            .expect("chunks are block_size long");
        let loss: f64 = masked_cross_entropy(logits, batch.targets, batch.scored)
            .into_scalar()
            .elem();
        total += loss * n as f64;
        count += n;
    }
    (total / count.max(1) as f64, count)
}
