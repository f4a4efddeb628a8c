//! One training step and one evaluation step, as burn-train's Learner calls them.

use crate::clip::clip_global_norm;
use crate::exact::solved_fraction;
use crate::loader::SplitBatch;
use crate::metrics::StepOutput;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, Interrupter, TrainOutput, TrainStep};
use data::{LmBatch, Split};
use model::loss::masked_cross_entropy;
use model::{LanguageModel, Model};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The model as the Learner sees it: the network plus the rules of a training step.
#[derive(Module, Debug)]
pub struct Trainee<B: Backend> {
    pub model: Model<B>,
    #[module(skip)]
    policy: StepPolicy,
}

/// What a training step does besides forward/backward: clip gradients, and react to a
/// loss that is no longer a finite number.
#[derive(Debug, Clone, Default)]
pub struct StepPolicy {
    /// Global gradient-norm limit; 0 disables clipping.
    pub grad_clip: f64,
    pub on_nonfinite: OnNonFinite,
    /// Shared with the caller, who reads it after training.
    pub watch: Arc<NonFiniteWatch>,
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

impl<B: Backend> Trainee<B> {
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
        }
    }
}

impl<B: AutodiffBackend> TrainStep for Trainee<B> {
    type Input = SplitBatch<B>;
    type Output = StepOutput<B>;

    fn step(&self, batch: SplitBatch<B>) -> TrainOutput<StepOutput<B>> {
        let output = self.loss(batch, false);
        let watch = &self.policy.watch;
        let iter = watch.iter.fetch_add(1, Ordering::SeqCst) + 1;
        // One scalar read per step (the metrics read it anyway): a NaN must never reach
        // the weights, so the update is skipped before it is applied.
        let loss: f64 = output.loss.clone().into_scalar().elem();
        if !loss.is_finite() {
            let _ = watch
                .first
                .compare_exchange(0, iter, Ordering::SeqCst, Ordering::SeqCst);
            watch.skipped.fetch_add(1, Ordering::SeqCst);
            if let (OnNonFinite::Stop, Some(i)) = (self.policy.on_nonfinite, &watch.interrupter) {
                i.stop(Some(&format!("the loss became {loss} at iteration {iter}")));
            }
            return TrainOutput {
                grads: GradientsParams::new(),
                item: output,
            };
        }
        let mut grads = GradientsParams::from_grads(output.loss.backward(), self);
        if self.policy.grad_clip > 0.0 {
            clip_global_norm(self, &mut grads, self.policy.grad_clip);
        }
        TrainOutput {
            grads,
            item: output,
        }
    }
}

impl<B: Backend> InferenceStep for Trainee<B> {
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
