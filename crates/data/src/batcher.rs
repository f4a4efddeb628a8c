//! Batches for next-token prediction, as the lecture's `get_batch`: pick `batch_size`
//! random offsets, take `block_size + 1` tokens from each, and let the targets be the
//! inputs shifted by one. Exposed as a Burn [`Dataset`] + [`Batcher`] so burn-train's
//! data loader can drive it.

use crate::Tokens;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// `block_size + 1` consecutive tokens: the inputs are the first `block_size`, the targets
/// the last `block_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub tokens: Vec<u32>,
    /// Which of the `block_size` targets the loss counts; `None`: all of them. A problem
    /// scores its answer only, not the prompt it is given (the lecture's `ignore_index`).
    pub scored: Option<Vec<bool>>,
}

impl Chunk {
    /// Plain text: every target scored.
    pub fn text(tokens: Vec<u32>) -> Self {
        Self {
            tokens,
            scored: None,
        }
    }

    /// How many targets the loss counts.
    pub fn scored_targets(&self) -> usize {
        match &self.scored {
            Some(scored) => scored.iter().filter(|&&s| s).count(),
            None => self.tokens.len() - 1,
        }
    }
}

/// `len` chunks at random offsets of a split. Item `i` depends only on `(seed, i)`, so a
/// dataset is reproducible whatever order the loader reads it in, and a new seed per epoch
/// gives fresh batches (a resumed run that continues the seed sequence never replays).
#[derive(Debug, Clone)]
pub struct RandomChunks {
    tokens: Arc<Tokens>,
    block_size: usize,
    len: usize,
    seed: u64,
}

impl RandomChunks {
    /// `tokens` must hold at least `block_size + 1` ids (see `TokenStore::check_block_size`).
    pub fn new(tokens: Arc<Tokens>, block_size: usize, len: usize, seed: u64) -> Self {
        assert!(
            tokens.len() > block_size,
            "RandomChunks needs more than block_size tokens"
        );
        Self {
            tokens,
            block_size,
            len,
            seed,
        }
    }
}

impl Dataset<Chunk> for RandomChunks {
    fn get(&self, index: usize) -> Option<Chunk> {
        if index >= self.len {
            return None;
        }
        // One small RNG per item, seeded from (seed, index): order-independent and cheap.
        let mut rng = StdRng::seed_from_u64(mix_seed(self.seed, index as u64));
        let start = rng.random_range(0..self.tokens.len() - self.block_size);
        Some(Chunk::text(
            self.tokens.range(start, start + self.block_size + 1),
        ))
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// Combines two numbers into a well-spread seed (SplitMix64's finaliser), so nearby
/// inputs such as consecutive epochs or indices give unrelated random streams.
pub fn mix_seed(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Every consecutive, non-overlapping `block_size` window of a split (the last partial
/// window dropped): the deterministic "whole split" loss walks these.
#[derive(Debug, Clone)]
pub struct ConsecutiveWindows {
    tokens: Arc<Tokens>,
    block_size: usize,
}

impl ConsecutiveWindows {
    pub fn new(tokens: Arc<Tokens>, block_size: usize) -> Self {
        Self { tokens, block_size }
    }
}

impl Dataset<Chunk> for ConsecutiveWindows {
    fn get(&self, index: usize) -> Option<Chunk> {
        (index < self.len()).then(|| {
            let start = index * self.block_size;
            Chunk::text(self.tokens.range(start, start + self.block_size + 1))
        })
    }

    fn len(&self) -> usize {
        self.tokens.len().saturating_sub(1) / self.block_size
    }
}

/// A batch of `B` sequences of `T` tokens and their next-token targets.
#[derive(Debug, Clone)]
pub struct LmBatch<B: Backend> {
    /// `(B, T)` token ids.
    pub inputs: Tensor<B, 2, Int>,
    /// `(B, T)` the token that follows each input position.
    pub targets: Tensor<B, 2, Int>,
    /// `(B, T)` which targets the loss counts (see [`Chunk::scored`]); `None`: all.
    pub scored: Option<Tensor<B, 2, Bool>>,
}

/// Stacks [`Chunk`]s into an [`LmBatch`] on the requested device.
///
/// Positions after the last scored target of every row are cut off: they cost a forward
/// and backward pass and teach nothing. A batch of short problems (or short
/// conversations) padded to `block_size` is then only as long as its longest answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LmBatcher;

impl<B: Backend> Batcher<B, Chunk, LmBatch<B>> for LmBatcher {
    fn batch(&self, items: Vec<Chunk>, device: &Device<B>) -> LmBatch<B> {
        let batch_size = items.len();
        // Chunks of one source are all scored or all plain.
        let scored = items[0].scored.is_some().then(|| {
            items
                .iter()
                .map(|c| {
                    c.scored
                        .as_deref()
                        .expect("a batch mixes scored and plain chunks")
                })
                .collect::<Vec<_>>()
        });
        let block_size = match &scored {
            None => items[0].tokens.len() - 1,
            Some(rows) => rows
                .iter()
                .map(|r| r.iter().rposition(|&s| s).map_or(0, |last| last + 1))
                .max()
                .unwrap_or(0)
                .max(1),
        };
        let mut inputs = Vec::with_capacity(batch_size * block_size);
        let mut targets = Vec::with_capacity(batch_size * block_size);
        for chunk in &items {
            inputs.extend(chunk.tokens[..block_size].iter().map(|&t| t as i64));
            targets.extend(chunk.tokens[1..=block_size].iter().map(|&t| t as i64));
        }
        let tensor = |ids: Vec<i64>| {
            let data = TensorData::new(ids, [batch_size, block_size]).convert::<B::IntElem>();
            Tensor::from_data(data, device)
        };
        let scored = scored.map(|rows| {
            let mask: Vec<bool> = rows
                .iter()
                .flat_map(|r| r[..block_size].iter().copied())
                .collect();
            Tensor::from_bool(TensorData::new(mask, [batch_size, block_size]), device)
        });
        LmBatch {
            inputs: tensor(inputs),
            targets: tensor(targets),
            scored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn tokens() -> Arc<Tokens> {
        Arc::new(Tokens::new(&(0..1000).collect::<Vec<u32>>(), 1000))
    }

    #[test]
    fn targets_are_inputs_shifted_by_one() {
        let ds = RandomChunks::new(tokens(), 8, 4, 1337);
        let items: Vec<Chunk> = (0..4).map(|i| ds.get(i).unwrap()).collect();
        let batch: LmBatch<Flex> = LmBatcher.batch(items, &Default::default());
        assert_eq!(batch.inputs.dims(), [4, 8]);
        let x = batch
            .inputs
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        let y = batch
            .targets
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        for row in 0..4 {
            // The store holds 0..1000, so each target is its input + 1.
            for t in 0..8 {
                assert_eq!(y[row * 8 + t], x[row * 8 + t] + 1);
            }
        }
    }

    #[test]
    fn scored_chunks_carry_their_mask_into_the_batch() {
        let chunk = |scored: Vec<bool>| Chunk {
            tokens: vec![1, 2, 3],
            scored: Some(scored),
        };
        let items = vec![chunk(vec![false, true]), chunk(vec![true, true])];
        assert_eq!(items[0].scored_targets(), 1);
        let batch: LmBatch<Flex> = LmBatcher.batch(items, &Default::default());
        let mask: Vec<bool> = batch.scored.unwrap().into_data().iter::<bool>().collect();
        assert_eq!(mask, [false, true, true, true]);
        // Positions after every row's last scored target are cut.
        let items = vec![
            Chunk {
                tokens: vec![1, 2, 3, 4, 5],
                scored: Some(vec![false, true, false, false]),
            },
            Chunk {
                tokens: vec![6, 7, 8, 9, 10],
                scored: Some(vec![true, false, false, false]),
            },
        ];
        let batch: LmBatch<Flex> = LmBatcher.batch(items, &Default::default());
        assert_eq!(batch.inputs.dims(), [2, 2]);
        let targets: Vec<i64> = batch.targets.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(targets, [2, 3, 7, 8]);
        let plain: LmBatch<Flex> =
            LmBatcher.batch(vec![Chunk::text(vec![1, 2, 3])], &Default::default());
        assert!(plain.scored.is_none());
    }

    #[test]
    fn same_seed_same_batches_new_seed_new_batches() {
        let a = RandomChunks::new(tokens(), 8, 32, 7);
        let b = RandomChunks::new(tokens(), 8, 32, 7);
        let c = RandomChunks::new(tokens(), 8, 32, 8);
        let all = |d: &RandomChunks| (0..32).map(|i| d.get(i).unwrap()).collect::<Vec<_>>();
        assert_eq!(all(&a), all(&b));
        assert_ne!(all(&a), all(&c));
        assert!(a.get(32).is_none());
    }

    #[test]
    fn chunks_reach_the_last_token() {
        // With 10 tokens and block_size 8 there are exactly two offsets: 0 and 1.
        let t = Arc::new(Tokens::new(&(0..10).collect::<Vec<u32>>(), 10));
        let ds = RandomChunks::new(t, 8, 200, 1);
        let starts: std::collections::BTreeSet<u32> =
            (0..200).map(|i| ds.get(i).unwrap().tokens[0]).collect();
        assert_eq!(starts.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn consecutive_windows_cover_the_split() {
        let ds = ConsecutiveWindows::new(tokens(), 64);
        assert_eq!(ds.len(), 999 / 64);
        assert_eq!(ds.get(1).unwrap().tokens[0], 64);
        assert_eq!(ds.get(1).unwrap().tokens.len(), 65);
        assert!(ds.get(ds.len()).is_none());
    }
}
