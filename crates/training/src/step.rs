//! One training step and one evaluation step, as burn-train's Learner calls them.

use crate::clip::{clip_to_norm, global_norm, scale};
use crate::distributed::DataParallel;
use crate::exact::solved_fraction;
use crate::loader::SplitBatch;
use crate::logged::GRAD_NORM;
use crate::loss_scale::LossScaler;
use crate::metrics::StepOutput;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, Interrupter, TrainOutput, TrainStep};
use data::{LmBatch, Split};
use model::loss::masked_cross_entropy;
use model::{LanguageModel, Model};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The model as the Learner sees it (burn-train's `TrainingModel`): the network plus the
/// rules of a training step.
#[derive(Module, Debug)]
pub struct TrainingModel<B: Backend> {
    pub model: Model<B>,
    #[module(skip)]
    pub(crate) policy: StepPolicy,
}

/// What a training step does besides forward/backward: accumulate micro-batches, clip
/// gradients, and react to a loss that is no longer a finite number.
#[derive(Debug, Clone, Default)]
pub struct StepPolicy {
    /// Micro-batches per optimizer step (`gradient_accumulation_steps`; 0 counts as 1).
    /// The step receives all of them as one batch of `k × batch_size` rows.
    pub accumulation: usize,
    /// Global gradient-norm limit; 0 disables clipping.
    pub grad_clip: f64,
    pub on_nonfinite: OnNonFinite,
    /// Shared with the caller, who reads it after training.
    pub watch: Arc<NonFiniteWatch>,
    /// Under an MPI launcher: the job whose ranks average their gradients every step.
    pub data_parallel: Option<Arc<DataParallel>>,
    /// float16's dynamic loss scale (`dtype = "float16"`); `None` in float32 and bfloat16.
    pub loss_scale: Option<Arc<LossScaler>>,
    /// The iterations that read the loss back to the host.
    pub host_reads: HostReads,
    /// Reinforcement learning: the step trains on answers it samples (see [`crate::rl`])
    /// instead of the batch's.
    pub rl: Option<Arc<crate::rl::Rl>>,
}

/// Which training iterations read the loss back to the host, for the metrics and the
/// non-finite check.
///
/// A GPU runs the kernels the host queued; reading a value back waits until all of them
/// have run, and the GPU then idles while the host prepares the next step. nanoGPT reads
/// the loss every `log_interval` iterations; so do we on the GPU backends: each
/// `log_interval`-th iteration and the last of each evaluation interval (before its
/// checkpoint, so a NaN found there still never reaches a checkpoint: the run stops
/// and keeps the previous one). `every` = 1 reads every step: the CPU backends compute
/// eagerly (a read costs nothing), and `on_nonfinite_loss = "skip"` must look at each
/// step's loss before its update.
#[derive(Debug, Clone, Copy)]
pub struct HostReads {
    pub every: usize,
    pub eval_interval: usize,
}

impl HostReads {
    /// A read at every step.
    pub const EVERY_STEP: Self = Self {
        every: 1,
        eval_interval: 1,
    };

    /// Whether iteration `iter` (1-based, counted from the run's start) reads its loss.
    pub fn at(&self, iter: usize) -> bool {
        self.every <= 1
            || iter.is_multiple_of(self.every)
            || iter.is_multiple_of(self.eval_interval.max(1))
    }
}

impl Default for HostReads {
    fn default() -> Self {
        Self::EVERY_STEP
    }
}

/// What to do when a training loss is NaN or infinite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNonFinite {
    /// Skip the update and stop the run; the last checkpoint (all finite) is kept.
    #[default]
    Stop,
    /// Skip the update and carry on.
    Skip,
}

/// Counts iterations and remembers the first non-finite loss.
#[derive(Default)]
pub struct NonFiniteWatch {
    /// Iterations stepped, starting from the resumed iteration.
    iter: AtomicUsize,
    /// 1-based iteration of the first non-finite loss; 0 while all were finite.
    first: AtomicUsize,
    skipped: AtomicUsize,
    interrupter: Option<Interrupter>,
}

impl std::fmt::Debug for NonFiniteWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonFiniteWatch")
            .field("iter", &self.iter)
            .field("first", &self.first)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl NonFiniteWatch {
    /// `start_iter`: iterations already done; `interrupter` stops the Learner.
    pub fn new(start_iter: usize, interrupter: Interrupter) -> Self {
        Self {
            iter: AtomicUsize::new(start_iter),
            interrupter: Some(interrupter),
            ..Self::default()
        }
    }

    /// The iteration (1-based) whose loss first was NaN or infinite.
    pub fn first_nonfinite(&self) -> Option<usize> {
        Some(self.first.load(Ordering::SeqCst)).filter(|&i| i > 0)
    }

    /// Updates skipped because of a non-finite loss.
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::SeqCst)
    }
}

impl<B: Backend> TrainingModel<B> {
    pub fn new(model: Model<B>, policy: StepPolicy) -> Self {
        Self { model, policy }
    }

    /// Forward pass and mean cross-entropy of a batch's scored targets; with `exact`, also
    /// the share of its problems answered exactly.
    fn loss(&self, batch: SplitBatch<B>, exact: bool) -> StepOutput<B> {
        let SplitBatch {
            split,
            batch:
                LmBatch {
                    inputs,
                    targets,
                    scored,
                },
        } = batch;
        let [b, t] = inputs.dims();
        let logits = self
            .model
            .logits(inputs)
            .expect("the loaders cut batches to block_size");
        let exact_match = scored
            .clone()
            .filter(|_| exact)
            .map(|s| solved_fraction(logits.clone(), targets.clone(), s));
        StepOutput {
            loss: masked_cross_entropy(logits, targets, scored),
            tokens: b * t,
            split,
            exact_match,
            read: true,
            measured: Default::default(),
        }
    }
}

impl<B: AutodiffBackend> TrainStep for TrainingModel<B> {
    type Input = SplitBatch<B>;
    type Output = StepOutput<B>;

    /// One iteration of nanoGPT's training loop (`train.py`), in its order:
    ///
    /// 1. forward and backward over the step's micro-batches (gradient accumulation);
    /// 2. data parallel: the ranks average their gradients (DDP's all-reduce);
    /// 3. a NaN or infinite loss: no update;
    /// 4. float16: the gradients are unscaled, and an overflow skips the update (the
    ///    loss scaler's `unscale_` and `step`);
    /// 5. the global gradient norm is clipped to `grad_clip`;
    /// 6. the optimizer step at the schedule's learning rate: burn-train's Learner takes
    ///    it with the gradients returned here ([`Optim`](crate::optim::Optim) at
    ///    [`NanoGptSchedule`](crate::schedule)'s `get_lr`), once per iteration. Its own
    ///    `grads_accumulation` is not used: it would step the schedule per micro-batch
    ///    and clip each micro-batch on its own.
    fn step(&self, batch: SplitBatch<B>) -> TrainOutput<StepOutput<B>> {
        let policy = &self.policy;
        let iter = policy.watch.iter.fetch_add(1, Ordering::SeqCst) + 1;
        // 1. Gradient accumulation (and float16's loss scaling).
        let loss_scale = policy.loss_scale.as_ref().map_or(1.0, |s| s.scale());
        let (mut output, mut grads) = match &policy.rl {
            Some(rl) => self.rl_step(rl, batch, iter, loss_scale),
            None => self.micro_batches(batch, loss_scale),
        };

        // Reading the loss waits for the step's work (see `HostReads`); data-parallel
        // steps move their gradients through the host anyway.
        output.read = policy.host_reads.at(iter) || policy.data_parallel.is_some();
        if output.read {
            let mut loss: f64 = output.loss.clone().into_scalar().elem();
            // 2. All-reduce.
            if let Some(dp) = &policy.data_parallel {
                // Every rank averages every step, even on a NaN (which then reaches all
                // ranks, so all of them skip this update together). The mean is what
                // rank 0 logs; the step trained on every rank's tokens.
                loss = dp.average(self, &mut grads, loss);
                output.loss = Tensor::from_data([loss as f32], &output.loss.device());
                output.tokens *= dp.ranks();
            }
            // 3. A NaN must never reach the weights (or, read every log_interval, a
            // checkpoint): the update is skipped before it is applied.
            if !loss.is_finite() {
                self.nonfinite(iter, loss);
                return no_update(output);
            }
        }

        // 4. float16: the gradients back to their true size (GradScaler's `unscale_`).
        if policy.loss_scale.is_some() {
            let device = self.model.devices()[0].clone();
            let unscale = Tensor::<B::InnerBackend, 1>::from_data([1.0 / loss_scale], &device);
            scale::<B, _>(self, &mut grads, unscale);
        }
        // The norm of all gradients together, before clipping: logged (`grad_norm`, read
        // with the loss), float16's overflow check, and the clipping's measure. A step
        // that needs none of them (no read, no clipping, no loss scale) skips it.
        let needed = output.read || policy.grad_clip > 0.0 || policy.loss_scale.is_some();
        let norm = needed.then(|| global_norm::<B, _>(self, &grads)).flatten();
        if let Some(norm) = &norm {
            output.measure(&GRAD_NORM, Tensor::from_inner(norm.clone()));
        }
        if let Some(scaler) = &policy.loss_scale {
            // One host read per step, as PyTorch's GradScaler's: the optimizer must not
            // see an infinite gradient; an overflow lowers the scale (`scaler.update`).
            let value: Option<f64> = norm.clone().map(|n| n.into_scalar().elem());
            if !scaler.update(value.is_none_or(f64::is_finite)) {
                return no_update(output);
            }
        }
        // 5. Clipping.
        if let (Some(norm), true) = (norm, policy.grad_clip > 0.0) {
            clip_to_norm::<B, _>(self, &mut grads, norm, policy.grad_clip);
        }
        // 6. To the Learner, for the optimizer step at the schedule's learning rate.
        TrainOutput {
            grads,
            item: output,
        }
    }
}

/// A step whose update is skipped: no gradients, so the optimizer leaves the weights.
fn no_update<B: AutodiffBackend>(output: StepOutput<B>) -> TrainOutput<StepOutput<B>> {
    TrainOutput {
        grads: GradientsParams::new(),
        item: output,
    }
}

/// `loss` × the loss scale (float16's, see [`LossScaler`]), for `backward`.
pub(crate) fn scaled<B: Backend>(loss: Tensor<B, 1>, loss_scale: f64) -> Tensor<B, 1> {
    if loss_scale == 1.0 {
        loss
    } else {
        loss.mul_scalar(loss_scale)
    }
}

impl<B: AutodiffBackend> TrainingModel<B> {
    /// Records a non-finite loss at `iter`, and stops the run unless told to skip on.
    fn nonfinite(&self, iter: usize, loss: f64) {
        let watch = &self.policy.watch;
        let _ = watch
            .first
            .compare_exchange(0, iter, Ordering::SeqCst, Ordering::SeqCst);
        watch.skipped.fetch_add(1, Ordering::SeqCst);
        if let (OnNonFinite::Stop, Some(i)) = (self.policy.on_nonfinite, &watch.interrupter) {
            i.stop(Some(&format!("the loss became {loss} at iteration {iter}")));
        }
    }

    /// Forward and backward over the k micro-batches of `batch` (`accumulation`), one at
    /// a time, so only one micro-batch's activations are alive at once: each loss is
    /// scaled by 1/k (and × the loss scale) and the gradients are summed, so they are
    /// those of the mean loss over the whole batch. The mean loss (detached), and the
    /// summed gradients.
    fn micro_batches(
        &self,
        batch: SplitBatch<B>,
        loss_scale: f64,
    ) -> (StepOutput<B>, GradientsParams) {
        let k = self.policy.accumulation.max(1);
        let SplitBatch { split, batch } = batch;
        let rows = batch.inputs.dims()[0];
        assert_eq!(rows % k, 0, "the loader serves k micro-batches per step");
        let b = rows / k;
        let mut accumulator = GradientsAccumulator::<TrainingModel<B>>::new();
        let mut losses = Vec::with_capacity(k);
        let mut tokens = 0;
        for i in 0..k {
            let rows = |t: Tensor<B, 2, Int>| t.narrow(0, i * b, b);
            let micro = SplitBatch {
                split,
                batch: LmBatch {
                    inputs: rows(batch.inputs.clone()),
                    targets: rows(batch.targets.clone()),
                    scored: batch.scored.clone().map(|s| s.narrow(0, i * b, b)),
                },
            };
            let output = self.loss(micro, false);
            tokens += output.tokens;
            let grads = scaled(output.loss.clone().div_scalar(k as f64), loss_scale).backward();
            accumulator.accumulate(self, GradientsParams::from_grads(grads, self));
            losses.push(output.loss.detach());
        }
        let output = StepOutput {
            loss: Tensor::cat(losses, 0).mean(),
            tokens,
            split,
            exact_match: None,
            read: true,
            measured: Default::default(),
        };
        (output, accumulator.grads())
    }
}

impl<B: Backend> InferenceStep for TrainingModel<B> {
    type Input = SplitBatch<B>;
    type Output = StepOutput<B>;

    fn step(&self, batch: SplitBatch<B>) -> StepOutput<B> {
        // Exact match is a held-out measure: only val batches are scored.
        let exact = batch.split == Split::Val;
        self.loss(batch, exact)
    }
}

/// The shape of every float parameter, in visiting order.
pub(crate) fn shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            self.0.push(param.val().dims().to_vec());
        }
    }
    let mut visitor = Shapes(Vec::new());
    module.visit(&mut visitor);
    visitor.0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::RunConfig;
    use crate::clip::global_norm;
    use burn::backend::{Autodiff, Flex};
    use burn::data::dataloader::batcher::Batcher;
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::Optimizer;
    use burn::train::metric::ItemLazy;
    use data::{Chunk, LmBatcher};
    use model::Precision;

    type B = Autodiff<Flex>;

    /// Every parameter's gradient (zeros where it has none), flattened, in visiting order.
    fn grad_values(module: &TrainingModel<B>, grads: &GradientsParams) -> Vec<f32> {
        struct Grads<'a>(&'a GradientsParams, Vec<f32>);
        impl ModuleVisitor<B> for Grads<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let g = self
                    .0
                    .get::<Flex, D>(p.id)
                    .expect("every parameter has a gradient");
                self.1.extend(g.into_data().to_vec::<f32>().unwrap());
            }
        }
        let mut v = Grads(grads, Vec::new());
        module.visit(&mut v);
        v.1
    }

    /// Every parameter's values, in the module's order.
    pub(crate) fn param_values(module: &TrainingModel<B>) -> Vec<f32> {
        struct Values(Vec<f32>);
        impl ModuleVisitor<B> for Values {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                self.0.extend(p.val().into_data().to_vec::<f32>().unwrap());
            }
        }
        let mut v = Values(Vec::new());
        module.visit(&mut v);
        v.0
    }

    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len());
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * scale.max(1.0),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// A tiny model, its batch maker, with parameters made real (they are lazy).
    fn tiny() -> (Model<B>, impl Fn() -> SplitBatch<B>) {
        tiny_in(Precision::Float32)
    }

    /// `tiny()` with its matmuls in `dtype`.
    fn tiny_in(dtype: Precision) -> (Model<B>, impl Fn() -> SplitBatch<B>) {
        let mut config = RunConfig::default();
        config.model.dtype = dtype;
        config.model.vocab_size = 13;
        config.model.block_size = 8;
        config.model.n_layer = 1;
        config.model.n_head = 2;
        config.model.n_embd = 16;
        config.model.dropout = 0.0;
        let device = Default::default();
        let model = Model::<B>::new(&config.model, &device).unwrap();
        shapes(&model);
        let chunks: Vec<Chunk> = (0..4u32)
            .map(|r| Chunk::text((0..9).map(|t| (r * 5 + t * 3) % 13).collect()))
            .collect();
        let batch = move || SplitBatch {
            split: Split::Train,
            batch: LmBatcher.batch(chunks.clone(), &Default::default()),
        };
        (model, batch)
    }

    #[test]
    fn host_reads_every_log_interval_and_before_each_checkpoint() {
        let reads = HostReads {
            every: 10,
            eval_interval: 25,
        };
        let at: Vec<usize> = (1..=50).filter(|&i| reads.at(i)).collect();
        assert_eq!(at, [10, 20, 25, 30, 40, 50]);
        assert!((1..=50).all(|i| HostReads::EVERY_STEP.at(i)));
        // A step between reads leaves its loss on the device but still updates.
        let (model, batch) = tiny();
        let training_model = TrainingModel::new(
            model,
            StepPolicy {
                host_reads: reads,
                ..StepPolicy::default()
            },
        );
        let first = TrainStep::step(&training_model, batch());
        assert!(!first.item.read);
        assert!(!grad_values(&training_model, &first.grads).is_empty());
    }

    /// The logged gradient norm is the global norm before clipping, with or without it.
    #[test]
    fn grad_norm_is_logged_before_clipping() {
        let (model, batch) = tiny();
        let step = |grad_clip: f64| {
            let training_model = TrainingModel::new(
                model.clone(),
                StepPolicy {
                    grad_clip,
                    ..StepPolicy::default()
                },
            );
            let out = TrainStep::step(&training_model, batch());
            let g = grad_values(&training_model, &out.grads);
            let norm = g.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            (out.item.sync().value(&GRAD_NORM).unwrap(), norm)
        };
        let (logged, norm) = step(0.0);
        assert!((logged - norm).abs() < 1e-5 * norm, "{logged} vs {norm}");
        let (clipped_logged, clipped) = step(norm / 4.0);
        assert!(
            (clipped_logged - norm).abs() < 1e-5 * norm,
            "{clipped_logged}"
        );
        assert!((clipped - norm / 4.0).abs() < 1e-3 * norm, "{clipped}");
    }

    /// float16's loss scale leaves the update unchanged (scaled, then unscaled), and an
    /// overflowing step is skipped with the scale halved.
    #[test]
    fn loss_scale_is_undone_and_overflow_skips_the_step() {
        let (model, batch) = tiny();
        let plain = TrainingModel::new(model.clone(), StepPolicy::default());
        let scaler = Arc::new(LossScaler::new());
        let scaled = TrainingModel::new(
            model,
            StepPolicy {
                loss_scale: Some(scaler.clone()),
                ..StepPolicy::default()
            },
        );
        let (a, b) = (
            TrainStep::step(&plain, batch()),
            TrainStep::step(&scaled, batch()),
        );
        let (va, vb) = (
            grad_values(&plain, &a.grads),
            grad_values(&scaled, &b.grads),
        );
        let norm = va.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (x, y) in va.iter().zip(&vb) {
            assert!((x - y).abs() <= 1e-4 * norm, "{x} vs {y}");
        }
        assert_eq!(scaler.skipped(), 0);
        // A float16 backward pass with a scale far too large: the logits' gradient alone
        // (about 1e10 · 0.9 / 32 per position) is past float16's largest value, 65504, so
        // it overflows whatever the random weights are: no update, half the scale.
        let (half, batch) = tiny_in(Precision::Float16);
        let huge = Arc::new(LossScaler::starting_at(1e10));
        let overflowing = TrainingModel::new(
            half,
            StepPolicy {
                loss_scale: Some(huge.clone()),
                ..StepPolicy::default()
            },
        );
        let out = TrainStep::step(&overflowing, batch());
        assert!(out.grads.is_empty(), "an overflowing step has no update");
        assert_eq!((huge.skipped(), huge.scale()), (1, 5e9));
    }

    /// With dropout 0, k micro-batches of size b give the gradient of one batch of k·b,
    /// clipped as a whole, and so the same weights after an AdamW step.
    #[test]
    fn k_micro_batches_step_like_one_batch_of_k_times_b() {
        let mut config = RunConfig::default();
        config.model.vocab_size = 13;
        config.model.block_size = 8;
        config.model.n_layer = 2;
        config.model.n_head = 2;
        config.model.n_embd = 16;
        config.model.dropout = 0.0;
        config.train.weight_decay = 0.1;
        let device = Default::default();
        let model = Model::<B>::new(&config.model, &device).unwrap();
        // Parameters are initialised lazily: read them once so every clone shares them.
        shapes(&model);
        let chunks: Vec<Chunk> = (0..8u32)
            .map(|r| Chunk::text((0..9).map(|t| (r * 7 + t * t * 3 + r * t) % 13).collect()))
            .collect();
        let batch = || SplitBatch {
            split: Split::Train,
            batch: LmBatcher.batch(chunks.clone(), &device),
        };
        let training_model = |k: usize, grad_clip: f64| {
            TrainingModel::new(
                model.clone(),
                StepPolicy {
                    accumulation: k,
                    grad_clip,
                    ..StepPolicy::default()
                },
            )
        };
        // Unclipped: the gradient of the mean loss over all 8 rows, either way.
        let (one, four) = (training_model(1, 0.0), training_model(4, 0.0));
        let (g1, g4) = (
            TrainStep::step(&one, batch()),
            TrainStep::step(&four, batch()),
        );
        let (l1, l4): (f32, f32) = (
            g1.item.loss.clone().into_scalar().elem(),
            g4.item.loss.clone().into_scalar().elem(),
        );
        assert!((l1 - l4).abs() < 1e-5, "loss {l1} vs {l4}");
        assert_eq!(g4.item.tokens, 8 * 8);
        let (v1, v4) = (grad_values(&one, &g1.grads), grad_values(&four, &g4.grads));
        assert_close(&v1, &v4, "gradient");
        // Clipped below the gradient's norm: clipping must see the accumulated gradient
        // (clipping each micro-batch would give another one).
        let norm = v1.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt();
        let clip = norm / 4.0;
        let (one, four) = (training_model(1, clip), training_model(4, clip));
        let (c1, c4) = (
            TrainStep::step(&one, batch()),
            TrainStep::step(&four, batch()),
        );
        let (v1, v4) = (grad_values(&one, &c1.grads), grad_values(&four, &c4.grads));
        assert_close(&v1, &v4, "clipped gradient");
        let again = c4.grads;
        let clipped: f64 = global_norm(&four, &again).unwrap().into_scalar().elem();
        assert!((clipped - clip).abs() < 1e-3 * clip, "{clipped} vs {clip}");
        // One AdamW step (with weight decay) from each: the same weights.
        let step = |t: TrainingModel<B>, g: GradientsParams| {
            let mut optim = crate::optim::init::<B, TrainingModel<B>>(&config);
            param_values(&optim.step(1e-2, t, g))
        };
        let (w1, w4) = (step(one, c1.grads), step(four, again));
        // Adam's first step moves each weight by ≈ lr · sign(g): where a gradient is
        // rounding noise (|g| ~ 1e-7 of the largest), its sign, and so the step, is not
        // defined by the math. Compare the weights whose gradient means something.
        let scale = v1.iter().fold(0f32, |m, g| m.max(g.abs()));
        let meaningful: Vec<usize> = (0..v1.len())
            .filter(|&i| v1[i].abs() > 1e-4 * scale)
            .collect();
        assert!(
            meaningful.len() > v1.len() / 2,
            "most gradients are not noise"
        );
        let pick = |w: &[f32]| meaningful.iter().map(|&i| w[i]).collect::<Vec<_>>();
        assert_close(&pick(&w1), &pick(&w4), "weights");
        assert!(
            w1.iter()
                .zip(param_values(&training_model(1, 0.0)))
                .any(|(a, b)| a != &b),
            "the step moved the weights"
        );
    }
}
