//! Data-parallel training: several processes train one model, as PyTorch's DDP under
//! `torchrun`, here under an MPI launcher (`mpirun -n N gpt train …`, feature `mpi`).
//!
//! Every process (rank) holds the whole model and the same optimizer state. Each
//! optimizer step, each rank takes its own share of the step's batch (rank r of R takes
//! micro-batches r·k..(r+1)·k of the R·k the step draws, so R ranks with k micro-batches
//! each see exactly what one process with R·k would), computes its gradients, and the
//! gradients are then *averaged* over all ranks ([`DataParallel::average`]) before
//! clipping and the optimizer: every rank applies the same update and the weights stay
//! identical without ever being sent. Only rank 0 writes the run directory.
//!
//! The averaging moves each gradient to the host, packs them into a few large buffers
//! (at most [`BUCKET`] numbers each) and sums each buffer over the ranks with one MPI
//! all-reduce, as DDP buckets its gradients: one call per tensor would pay MPI's
//! per-message latency dozens of times per step. The step's loss rides along in the last
//! buffer, so every rank logs and checks the same mean loss: a NaN on one rank makes all
//! of them skip the update together, never only some.
//!
//! What is not here: overlapping communication with the backward pass (DDP's hooks),
//! and GPU-direct transfers; the gradients go through host memory.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Numbers per all-reduce call: 4 Mi f32, 16 MiB (DDP's default bucket is 25 MB).
pub const BUCKET: usize = 4 << 20;

/// The processes of a data-parallel job, as the training step needs them.
pub trait Collective: Send + Sync {
    /// This process's rank, 0..ranks.
    fn rank(&self) -> usize;
    fn ranks(&self) -> usize;
    /// Sums `buffer` elementwise over all ranks, in place: every rank ends with the same
    /// numbers.
    fn sum(&self, buffer: &mut [f32]);
    /// Every rank's `value`, in rank order.
    fn gather(&self, value: u64) -> Vec<u64>;
    /// Returns when every rank has called it.
    fn barrier(&self);
    /// Ends every rank of the job at once, with exit status `code`: a rank that fails
    /// must not leave the others waiting for it in a collective call.
    fn abort(&self, code: i32) -> !;
}

/// A data-parallel job as a run sees it: the ranks and the time spent averaging.
pub struct DataParallel {
    collective: Box<dyn Collective>,
    stats: Mutex<Stats>,
}

/// Accumulated over a session's optimizer steps.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub steps: usize,
    /// In the all-reduce calls alone.
    pub reduce: Duration,
    /// All of [`DataParallel::average`]: host copies, packing, the calls.
    pub total: Duration,
    /// All-reduce calls made.
    pub calls: usize,
    /// Bytes each rank contributed per step.
    pub bytes_per_step: usize,
}

impl std::fmt::Debug for DataParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataParallel(rank {} of {})", self.rank(), self.ranks())
    }
}

impl DataParallel {
    pub fn new(collective: Box<dyn Collective>) -> Self {
        Self {
            collective,
            stats: Mutex::new(Stats::default()),
        }
    }

    pub fn rank(&self) -> usize {
        self.collective.rank()
    }

    pub fn ranks(&self) -> usize {
        self.collective.ranks()
    }

    pub fn is_leader(&self) -> bool {
        self.rank() == 0
    }

    pub fn barrier(&self) {
        self.collective.barrier();
    }

    /// See [`Collective::abort`].
    pub fn abort(&self, code: i32) -> ! {
        self.collective.abort(code)
    }

    pub fn stats(&self) -> Stats {
        *self.stats.lock().expect("stats lock")
    }

    /// Replaces `grads` (of `module`'s parameters) and `loss` by their means over all
    /// ranks; returns the mean loss. Every rank must call it once per optimizer step.
    pub fn average<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        grads: &mut GradientsParams,
        loss: f64,
    ) -> f64 {
        let start = Instant::now();
        let mut pack = Pack::<B> {
            grads,
            flat: Vec::new(),
            at: HashMap::new(),
            device: None,
        };
        module.visit(&mut pack);
        let Pack {
            mut flat,
            at,
            device,
            ..
        } = pack;
        flat.push(loss as f32);
        let reduce = Instant::now();
        let mut calls = 0;
        for bucket in flat.chunks_mut(BUCKET) {
            self.collective.sum(bucket);
            calls += 1;
        }
        let reduce = reduce.elapsed();
        let ranks = self.ranks() as f32;
        flat.iter_mut().for_each(|x| *x /= ranks);
        let mean_loss = f64::from(flat.pop().expect("the loss"));
        if let Some(device) = device {
            module.visit(&mut Unpack::<B> {
                grads,
                flat: &flat,
                at: &at,
                device,
            });
        }
        let mut stats = self.stats.lock().expect("stats lock");
        stats.steps += 1;
        stats.reduce += reduce;
        stats.total += start.elapsed();
        stats.calls += calls;
        stats.bytes_per_step = (flat.len() + 1) * 4;
        mean_loss
    }

    /// Whether every rank holds exactly the weights of `module`: a hash of every
    /// parameter's bits, compared across ranks. `Err` names the ranks that differ.
    pub fn check_identical<B: Backend, M: Module<B>>(&self, module: &M) -> Result<u64, String> {
        let hash = weights_hash(module);
        let all = self.collective.gather(hash);
        let differ: Vec<usize> = (0..all.len()).filter(|&r| all[r] != all[0]).collect();
        if differ.is_empty() {
            Ok(hash)
        } else {
            Err(format!(
                "the weights of rank(s) {differ:?} differ from rank 0's: the ranks diverged"
            ))
        }
    }
}

/// A hash (FNV-1a) of the bits of every float parameter of `module`, in visiting order.
pub fn weights_hash<B: Backend, M: Module<B>>(module: &M) -> u64 {
    struct Hash(u64);
    impl<B: Backend> ModuleVisitor<B> for Hash {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let data = param.val().into_data().convert::<f32>();
            for x in data.as_slice::<f32>().expect("f32 data") {
                for byte in x.to_bits().to_le_bytes() {
                    self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
    }
    let mut hash = Hash(0xcbf2_9ce4_8422_2325);
    module.visit(&mut hash);
    hash.0
}

/// Moves every gradient into one flat host buffer, remembering where each one went.
struct Pack<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    flat: Vec<f32>,
    /// Parameter → (offset in `flat`, shape).
    at: HashMap<ParamId, (usize, Vec<usize>)>,
    device: Option<B::Device>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Pack<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        // Every rank runs the same model on the same kind of batch, so every rank has
        // gradients for the same parameters, visited in the same order.
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.device.get_or_insert_with(|| g.device());
            let shape = g.dims().to_vec();
            let data = g.into_data().convert::<f32>();
            self.at.insert(param.id, (self.flat.len(), shape));
            self.flat
                .extend_from_slice(data.as_slice::<f32>().expect("f32 data"));
        }
    }
}

/// Puts the averaged gradients back, each as the tensor it came from.
struct Unpack<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    flat: &'a [f32],
    at: &'a HashMap<ParamId, (usize, Vec<usize>)>,
    device: B::Device,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unpack<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some((offset, shape)) = self.at.get(&param.id) {
            let n: usize = shape.iter().product();
            let data = TensorData::new(self.flat[*offset..offset + n].to_vec(), shape.clone());
            let g = Tensor::<B::InnerBackend, D>::from_data(data, &self.device);
            self.grads.register::<B::InnerBackend, D>(param.id, g);
        }
    }
}

/// MPI: the job `mpirun` (or any MPI launcher) started this process in.
#[cfg(feature = "mpi")]
pub mod mpi_job {
    use super::{Collective, DataParallel};
    use crate::TrainError;
    use mpi::collective::SystemOperation;
    use mpi::environment::Universe;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;
    use std::sync::Mutex;

    /// MPI stays initialised while this lives (dropping it finalises MPI).
    pub struct Job {
        _universe: Universe,
    }

    /// The world communicator, one call at a time.
    struct World(Mutex<SimpleCommunicator>, usize, usize);

    // SAFETY: MPI was initialised with `Threading::Serialized`: any thread may call MPI as
    // long as no two calls overlap, which the mutex guarantees. The communicator handle is
    // only used through it.
    unsafe impl Send for World {}
    unsafe impl Sync for World {}

    impl Collective for World {
        fn rank(&self) -> usize {
            self.1
        }
        fn ranks(&self) -> usize {
            self.2
        }
        fn sum(&self, buffer: &mut [f32]) {
            let world = self.0.lock().expect("MPI lock");
            let send = buffer.to_vec();
            world.all_reduce_into(&send[..], buffer, SystemOperation::sum());
        }
        fn gather(&self, value: u64) -> Vec<u64> {
            let world = self.0.lock().expect("MPI lock");
            let mut all = vec![0u64; self.2];
            world.all_gather_into(&value, &mut all[..]);
            all
        }
        fn barrier(&self) {
            self.0.lock().expect("MPI lock").barrier();
        }
        fn abort(&self, code: i32) -> ! {
            // Not through the lock: a failing rank may be anywhere, even inside a call.
            mpi::topology::SimpleCommunicator::world().abort(code)
        }
    }

    /// Whether an MPI launcher started this process (Open MPI, MPICH and Slurm's PMI set
    /// these).
    pub fn launched() -> bool {
        ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
    }

    /// Joins the MPI job this process was launched in; `None` when it was not launched
    /// by an MPI launcher (a plain `gpt train`).
    pub fn join() -> Result<Option<(Job, DataParallel)>, TrainError> {
        if !launched() {
            return Ok(None);
        }
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| TrainError::Run("MPI was already initialised".into()))?;
        if threading < mpi::Threading::Serialized {
            return Err(TrainError::Run(format!(
                "this MPI library offers threading level {threading:?}; data-parallel training needs Serialized"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let collective = World(Mutex::new(world), rank, size);
        Ok(Some((
            Job {
                _universe: universe,
            },
            DataParallel::new(Box::new(collective)),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use model::{GptConfig, LanguageModel, Model};

    type B = Autodiff<Flex>;

    /// One rank standing for `ranks`: `sum` multiplies by the rank count, as if every
    /// rank held the same numbers, and counts the calls and their sizes.
    struct Echo {
        ranks: usize,
        calls: Mutex<Vec<usize>>,
    }

    impl Collective for Echo {
        fn rank(&self) -> usize {
            0
        }
        fn ranks(&self) -> usize {
            self.ranks
        }
        fn sum(&self, buffer: &mut [f32]) {
            self.calls.lock().unwrap().push(buffer.len());
            buffer.iter_mut().for_each(|x| *x *= self.ranks as f32);
        }
        fn gather(&self, value: u64) -> Vec<u64> {
            vec![value; self.ranks]
        }
        fn barrier(&self) {}
        fn abort(&self, code: i32) -> ! {
            panic!("abort({code})")
        }
    }

    /// Averaging identical gradients gives them back unchanged, bit for bit, and the
    /// loss too; all of a model's gradients travel in one call per BUCKET numbers, not
    /// one per tensor.
    #[test]
    fn gradients_travel_in_few_buckets_and_come_back_averaged() {
        let device = Default::default();
        let config = GptConfig {
            vocab_size: 65,
            block_size: 8,
            n_layer: 2,
            n_head: 2,
            n_embd: 16,
            ..GptConfig::default()
        };
        let model = Model::<B>::new(&config, &device).unwrap();
        let x = Tensor::<B, 2, Int>::zeros([2, 8], &device);
        let loss = model::cross_entropy(model.logits(x.clone()).unwrap(), x);
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let before = flatten(&model, &grads);
        let echo = Echo {
            ranks: 4,
            calls: Mutex::new(Vec::new()),
        };
        let dp = DataParallel::new(Box::new(echo));
        let mean = dp.average(&model, &mut grads, 2.5);
        assert_eq!(mean, 2.5);
        assert_eq!(flatten(&model, &grads), before);
        let stats = dp.stats();
        let n_params = burn::module::Module::num_params(&model);
        assert_eq!(stats.calls, 1, "{n_params} numbers fit one bucket");
        assert_eq!(stats.bytes_per_step, (n_params + 1) * 4);
    }

    /// Every gradient's bits, in visiting order.
    fn flatten(model: &Model<B>, grads: &GradientsParams) -> Vec<u32> {
        struct Flat<'a>(&'a GradientsParams, Vec<u32>);
        impl ModuleVisitor<B> for Flat<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let g = self.0.get::<Flex, D>(p.id).expect("a gradient");
                let v = g.into_data().to_vec::<f32>().unwrap();
                self.1.extend(v.iter().map(|x| x.to_bits()));
            }
        }
        let mut flat = Flat(grads, Vec::new());
        model.visit(&mut flat);
        flat.1
    }

    #[test]
    fn the_weights_hash_sees_every_bit() {
        let device = Default::default();
        let config = GptConfig {
            vocab_size: 5,
            block_size: 4,
            n_layer: 1,
            n_head: 1,
            n_embd: 4,
            ..GptConfig::default()
        };
        let a = Model::<Flex>::new(&config, &device).unwrap();
        let h = weights_hash(&a);
        assert_eq!(h, weights_hash(&a.clone()));
        let Model::Gpt(gpt) = a else { unreachable!() };
        let nudged = gpt.map(&mut NudgeOne(false));
        assert_ne!(h, weights_hash(&Model::Gpt(nudged)));
    }

    /// Flips the lowest bit of the first number of the first parameter.
    struct NudgeOne(bool);
    impl burn::module::ModuleMapper<Flex> for NudgeOne {
        fn map_float<const D: usize>(
            &mut self,
            p: Param<Tensor<Flex, D>>,
        ) -> Param<Tensor<Flex, D>> {
            if self.0 {
                return p;
            }
            self.0 = true;
            p.map(|t| {
                let shape = t.shape();
                let mut v = t.into_data().to_vec::<f32>().unwrap();
                v[0] = f32::from_bits(v[0].to_bits() ^ 1);
                Tensor::from_data(TensorData::new(v, shape), &Default::default())
            })
        }
    }
}
