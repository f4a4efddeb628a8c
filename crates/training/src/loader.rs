//! nanoGPT's iteration schedule as burn-train epochs.
//!
//! burn-train thinks in epochs; nanoGPT in iterations with an evaluation every
//! `eval_interval`. An iteration is one optimizer step: with gradient accumulation its
//! batch holds `gradient_accumulation_steps` micro-batches (see `step`). So one "epoch" here is `eval_interval` training iterations (fewer in
//! the last one if `max_iters` is not a multiple), and each epoch's validation pass is the
//! lecture's `estimate_loss`: `eval_iters` random batches of train, then of val.
//!
//! Every pass draws fresh random chunks (of a text, or generated problems: a [`Corpus`])
//! from a seed derived from (run seed, stream, epoch). The epoch counter starts at the number of epochs already done, so a resumed
//! run continues the same sequence of batches and never replays one it already saw.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::Dataset;
use burn::prelude::*;
use data::{Chunk, Corpus, LmBatch, LmBatcher, Split, mix_seed};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A batch and the split it was drawn from.
#[derive(Debug, Clone)]
pub struct SplitBatch<B: Backend> {
    pub split: Split,
    pub batch: LmBatch<B>,
}

/// Which pass a loader serves; also separates their random streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// `eval_interval` batches of train per epoch.
    Train,
    /// `eval_iters` batches of train, then of val, per epoch.
    Eval,
}

#[derive(Clone)]
pub struct EpochLoader<B: Backend> {
    pass: Pass,
    corpus: Corpus,
    block_size: usize,
    batch_size: usize,
    /// Batches per split in each epoch, given the epoch index.
    batches: Arc<dyn Fn(usize) -> usize + Send + Sync>,
    seed: u64,
    /// Data-parallel training: (this rank, ranks). Each training batch is this rank's
    /// share of a batch `ranks` times as large, drawn the same on every rank.
    shard: (usize, usize),
    /// burn-train's DDP over this many devices slices the training loader once per
    /// device: each slice is that device's shard, as a rank's (see [`Self::sharded`]).
    devices: usize,
    /// The next epoch to serve; shared by clones so `to_device` copies stay in step.
    epoch: Arc<AtomicUsize>,
    device: B::Device,
}

impl<B: Backend> EpochLoader<B> {
    /// `start_epoch` is the number of epochs already trained (0 for a new run).
    pub fn new(
        pass: Pass,
        corpus: Corpus,
        config: &crate::RunConfig,
        start_epoch: usize,
        device: &B::Device,
    ) -> Self {
        let t = config.train.clone();
        let batches: Arc<dyn Fn(usize) -> usize + Send + Sync> = match pass {
            Pass::Train => Arc::new(move |epoch| {
                t.max_iters
                    .saturating_sub(epoch * t.eval_interval)
                    .min(t.eval_interval)
            }),
            Pass::Eval => Arc::new(move |_| t.eval_iters),
        };
        // A training batch holds the k micro-batches of one optimizer step (the step
        // splits them); evaluation batches are batch_size rows.
        let batch_size = match pass {
            Pass::Train => config.train.batch_size * config.train.gradient_accumulation_steps,
            Pass::Eval => config.train.batch_size,
        };
        Self {
            pass,
            corpus,
            block_size: config.model.block_size,
            batch_size,
            batches,
            seed: config.train.seed,
            shard: (0, 1),
            devices: 1,
            epoch: Arc::new(AtomicUsize::new(start_epoch)),
            device: device.clone(),
        }
    }

    /// Rank `rank` of `ranks`' share of the training batches: every rank draws the same
    /// batches of ranks × batch_size rows (× the micro-batches) and keeps rows
    /// rank·batch_size..(rank+1)·batch_size of each, so the ranks together see exactly
    /// the batch one process with `ranks` times the accumulation would. Evaluation
    /// batches are not shared out: every rank evaluates the same ones.
    pub fn sharded(self, rank: usize, ranks: usize) -> Self {
        debug_assert!(self.shard.1 == 1, "sharded once");
        match self.pass {
            Pass::Train => Self {
                shard: (rank, ranks),
                ..self
            },
            Pass::Eval => self,
        }
    }

    /// Training on `devices` devices of burn-train's DDP strategy, whose slices of this
    /// loader become the devices' shards.
    pub fn on_devices(self, devices: usize) -> Self {
        Self { devices, ..self }
    }

    fn splits(&self) -> &'static [Split] {
        match self.pass {
            Pass::Train => &[Split::Train],
            Pass::Eval => &[Split::Train, Split::Val],
        }
    }
}

impl<B: Backend> DataLoader<B, SplitBatch<B>> for EpochLoader<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<SplitBatch<B>> + 'a> {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst);
        let n = (self.batches)(epoch);
        let stream = mix_seed(self.seed, self.pass as u64);
        let parts = self
            .splits()
            .iter()
            .map(|&split| {
                let seed = mix_seed(mix_seed(stream, epoch as u64), split as u64);
                let global = n * self.batch_size * self.shard.1;
                let chunks = self.corpus.random_chunks(
                    split,
                    self.block_size,
                    self.batch_size,
                    global,
                    seed,
                );
                (split, chunks)
            })
            .collect();
        Box::new(EpochIter {
            parts,
            batch_size: self.batch_size,
            shard: self.shard,
            batches_per_part: n,
            next: 0,
            device: self.device.clone(),
        })
    }

    fn num_items(&self) -> usize {
        let n = (self.batches)(self.epoch.load(Ordering::SeqCst));
        n * self.batch_size * self.splits().len()
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, SplitBatch<B>>> {
        Arc::new(Self {
            device: device.clone(),
            ..self.clone()
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, SplitBatch<B>>> {
        if self.pass == Pass::Train && self.devices > 1 {
            // burn-core's `split_dataloader` cuts num_items into `devices` slices of
            // ⌊n/devices⌋ items: slice i starts at i·⌊n/devices⌋, so i = ⌈start·devices/n⌉.
            // Each device's loader counts its own epochs (all from the same one).
            let device = (start * self.devices).div_ceil(self.num_items().max(1));
            let own = Self {
                epoch: Arc::new(AtomicUsize::new(self.epoch.load(Ordering::SeqCst))),
                devices: 1,
                ..self.clone()
            };
            return Arc::new(own.sharded(device, self.devices));
        }
        // Random batches have no order to cut: a slice is a loader of the same kind with
        // a share of the batches and its own seed.
        let share = (end - start).div_ceil(self.batch_size);
        let whole = self.num_items().div_ceil(self.batch_size).max(1);
        let batches = self.batches.clone();
        Arc::new(Self {
            batches: Arc::new(move |epoch| batches(epoch) * share / whole),
            seed: mix_seed(self.seed, start as u64),
            ..self.clone()
        })
    }
}

struct EpochIter<B: Backend> {
    parts: Vec<(Split, Arc<dyn Dataset<Chunk>>)>,
    batch_size: usize,
    shard: (usize, usize),
    batches_per_part: usize,
    next: usize,
    device: B::Device,
}

impl<B: Backend> Iterator for EpochIter<B> {
    type Item = SplitBatch<B>;

    fn next(&mut self) -> Option<SplitBatch<B>> {
        let (part, i) = (
            self.next / self.batches_per_part.max(1),
            self.next % self.batches_per_part.max(1),
        );
        let (split, chunks) = self.parts.get(part).filter(|_| self.batches_per_part > 0)?;
        self.next += 1;
        let (rank, ranks) = self.shard;
        let first = (i * ranks + rank) * self.batch_size;
        let items = (first..first + self.batch_size)
            .map(|j| chunks.get(j).expect("index within the epoch's chunks"))
            .collect();
        Some(SplitBatch {
            split: *split,
            batch: LmBatcher.batch(items, &self.device),
        })
    }
}

impl<B: Backend> DataLoaderIterator<SplitBatch<B>> for EpochIter<B> {
    fn progress(&self) -> Progress {
        Progress {
            items_processed: self.next * self.batch_size,
            items_total: self.parts.len() * self.batches_per_part * self.batch_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunConfig;
    use burn::backend::Flex;
    use data::TokenStore;

    fn loader(pass: Pass, start_epoch: usize) -> EpochLoader<Flex> {
        let ids: Vec<u32> = (0..5000).map(|i| i % 97).collect();
        let mut config = RunConfig::default();
        config.model.block_size = 8;
        config.train.batch_size = 4;
        config.train.max_iters = 25;
        config.train.eval_interval = 10;
        config.train.eval_iters = 3;
        EpochLoader::new(
            pass,
            Corpus::Text(TokenStore::new(&ids, 97)),
            &config,
            start_epoch,
            &Default::default(),
        )
    }

    fn epoch_inputs(l: &EpochLoader<Flex>) -> Vec<Vec<i64>> {
        l.iter()
            .map(|b| b.batch.inputs.into_data().iter::<i64>().collect())
            .collect()
    }

    /// Two ranks of batch 4 see, between them, exactly the batches of 8 rows one process
    /// draws with twice the accumulation (the same rows, in the same order); evaluation
    /// is not shared out.
    #[test]
    fn ranks_share_out_the_batch_of_one_process() {
        let one = {
            let ids: Vec<u32> = (0..5000).map(|i| i % 97).collect();
            let mut config = RunConfig::default();
            config.model.block_size = 8;
            config.train.batch_size = 4;
            config.train.gradient_accumulation_steps = 2;
            config.train.max_iters = 25;
            config.train.eval_interval = 10;
            let l = EpochLoader::<Flex>::new(
                Pass::Train,
                Corpus::Text(TokenStore::new(&ids, 97)),
                &config,
                0,
                &Default::default(),
            );
            epoch_inputs(&l)
        };
        let ranks: Vec<_> = (0..2)
            .map(|r| epoch_inputs(&loader(Pass::Train, 0).sharded(r, 2)))
            .collect();
        assert_eq!(one.len(), 10);
        for (i, batch) in one.iter().enumerate() {
            let joined: Vec<i64> = [ranks[0][i].clone(), ranks[1][i].clone()].concat();
            assert_eq!(batch, &joined, "batch {i}");
        }
        assert_ne!(ranks[0], ranks[1]);
        let eval = |r| epoch_inputs(&loader(Pass::Eval, 0).sharded(r, 2));
        assert_eq!(eval(0), eval(1));
        assert_eq!(eval(0), epoch_inputs(&loader(Pass::Eval, 0)));
    }

    /// Under burn-train's DDP, the slices burn-core cuts the training loader into are the
    /// devices' shards: the same batches as ranks would get.
    #[test]
    fn ddp_slices_are_the_devices_shards() {
        use burn::data::dataloader::split::split_dataloader;
        for devices in [2, 3] {
            let l: Arc<dyn DataLoader<Flex, SplitBatch<Flex>>> =
                Arc::new(loader(Pass::Train, 0).on_devices(devices));
            let slices = split_dataloader(l, &vec![Default::default(); devices]);
            for (i, slice) in slices.iter().enumerate() {
                let got: Vec<Vec<i64>> = slice
                    .iter()
                    .map(|b| b.batch.inputs.into_data().iter::<i64>().collect())
                    .collect();
                let want = epoch_inputs(&loader(Pass::Train, 0).sharded(i, devices));
                assert_eq!(got, want, "device {i} of {devices}");
            }
        }
    }

    #[test]
    fn epochs_follow_eval_interval_and_max_iters() {
        let l = loader(Pass::Train, 0);
        let sizes: Vec<usize> = (0..4).map(|_| l.iter().count()).collect();
        assert_eq!(sizes, vec![10, 10, 5, 0]);
    }

    #[test]
    fn eval_pass_is_eval_iters_of_each_split() {
        let l = loader(Pass::Eval, 0);
        let splits: Vec<Split> = l.iter().map(|b| b.split).collect();
        assert_eq!(splits, [[Split::Train; 3], [Split::Val; 3]].concat());
    }

    #[test]
    fn problems_are_served_scored_on_their_answers() {
        let mut config = RunConfig::default();
        config.model.block_size = 11;
        config.train.batch_size = 4;
        config.train.eval_iters = 2;
        let task = data::TaskConfig::default(); // 3-digit sums: 4 answer digits each
        let l = EpochLoader::<Flex>::new(
            Pass::Eval,
            Corpus::Problems(task),
            &config,
            0,
            &Default::default(),
        );
        for b in l.iter() {
            let scored: i64 = b.batch.scored.unwrap().int().sum().into_scalar().elem();
            assert_eq!(scored, 4 * 4);
        }
    }

    #[test]
    fn resuming_continues_the_batch_sequence() {
        let fresh = loader(Pass::Train, 0);
        let _first = epoch_inputs(&fresh);
        let second = epoch_inputs(&fresh);
        let resumed = loader(Pass::Train, 1);
        assert_eq!(epoch_inputs(&resumed), second);
        assert_ne!(epoch_inputs(&loader(Pass::Train, 0)), second);
    }
}
