//! One training step and one evaluation step, as burn-train's Learner calls them.

use crate::clip::clip_global_norm;
use crate::loader::SplitBatch;
use crate::metrics::StepOutput;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use model::{LanguageModel, Model, cross_entropy};

/// The model as the Learner sees it: the network plus how its gradients are clipped.
#[derive(Module, Debug)]
pub struct Trainee<B: Backend> {
    pub model: Model<B>,
    /// Global gradient-norm limit; 0 disables clipping.
    grad_clip: f64,
}

impl<B: Backend> Trainee<B> {
    pub fn new(model: Model<B>, grad_clip: f64) -> Self {
        Self { model, grad_clip }
    }

    /// Forward pass and mean cross-entropy of a batch.
    fn loss(&self, batch: SplitBatch<B>) -> StepOutput<B> {
        let [b, t] = batch.batch.inputs.dims();
        let logits = self
            .model
            .logits(batch.batch.inputs)
            .expect("the loaders cut batches to block_size");
        StepOutput {
            loss: cross_entropy(logits, batch.batch.targets),
            tokens: b * t,
            split: batch.split,
        }
    }
}

impl<B: AutodiffBackend> TrainStep for Trainee<B> {
    type Input = SplitBatch<B>;
    type Output = StepOutput<B>;

    fn step(&self, batch: SplitBatch<B>) -> TrainOutput<StepOutput<B>> {
        let output = self.loss(batch);
        let mut grads = GradientsParams::from_grads(output.loss.backward(), self);
        if self.grad_clip > 0.0 {
            clip_global_norm(self, &mut grads, self.grad_clip);
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
        self.loss(batch)
    }
}

/// Loads `record` into `fresh`, refusing a record whose parameter shapes differ from the
/// run's config (another architecture or vocabulary): Burn would load it silently and
/// fail later, mid-forward.
pub(crate) fn load_checked<B: Backend>(
    fresh: Trainee<B>,
    record: TraineeRecord<B>,
    path: &std::path::Path,
) -> Result<Trainee<B>, crate::TrainError> {
    let mismatch = || {
        crate::TrainError::Checkpoint(format!(
            "{} does not match this run's config.toml (different architecture or vocabulary)",
            path.display()
        ))
    };
    let expected = shapes(&fresh);
    // A record of another model kind makes Burn panic; report it as the mismatch it is.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let loaded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fresh.load_record(record)));
    std::panic::set_hook(hook);
    let loaded = loaded.map_err(|_| mismatch())?;
    if shapes(&loaded) != expected {
        return Err(mismatch());
    }
    Ok(loaded)
}

/// The shape of every float parameter, in visiting order.
fn shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<usize>> {
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
