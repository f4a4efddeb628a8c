//! The run's optimizer (`optimizer` in `[train]`): nanoGPT's AdamW groups, or Muon for
//! the hidden matrices with AdamW for everything else.
//!
//! nanoGPT decays every parameter with two or more dimensions (linear weights, embedding
//! tables) and leaves vectors alone (biases, LayerNorm gains and shifts): shrinking a
//! LayerNorm gain towards zero fights the normalisation it exists for. Burn's AdamW has one
//! decay for all parameters, so [`MatrixDecayAdamW`] wraps two of them and picks by the
//! tensor's rank.
//!
//! With `optimizer = "muon"`, [`Optim`] hands the gradients of the blocks' matrices to
//! [`Muon`] (see [`crate::muon`]) at `muon_lr` and the rest to AdamW at `learning_rate`;
//! the schedule scales both rates alike.

use crate::RunConfig;
use crate::muon::{Muon, is_hidden};
use crate::step::TrainingModel;
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, GradientsParams, LearningRate, MultiGradientsParams, Optimizer,
    SimpleOptimizer,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// Which optimizer a run trains with (`optimizer` in `[train]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// AdamW for every parameter, decaying matrices only (nanoGPT's).
    #[default]
    AdamW,
    /// Muon for the blocks' matrices, AdamW for the rest (modded-nanogpt's).
    Muon,
}

impl OptimizerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerKind::AdamW => "adamw",
            OptimizerKind::Muon => "muon",
        }
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The optimizer burn-train's Learner drives: AdamW, and with `optimizer = "muon"` Muon
/// for the hidden matrices. Each group keeps its state by parameter id, as Burn's
/// adaptor does; a step hands each group its own gradients.
#[derive(Clone)]
pub struct Optim<M: AutodiffModule<B>, B: AutodiffBackend> {
    adamw: OptimizerAdaptor<MatrixDecayAdamW, M, B>,
    muon: Option<MuonGroup<M, B>>,
}

#[derive(Clone)]
struct MuonGroup<M: AutodiffModule<B>, B: AutodiffBackend> {
    muon: OptimizerAdaptor<Muon<B::InnerBackend>, M, B>,
    /// muon_lr / learning_rate: the schedule's rate, scaled for Muon.
    lr_ratio: f64,
}

/// What the optimizer's checkpoint (`optim-E.mpk`) holds: AdamW's state by parameter id,
/// then Muon's (empty with AdamW alone).
pub type OptimizerRecord<B> =
    <Optim<TrainingModel<B>, B> as Optimizer<TrainingModel<B>, B>>::Record;

/// The run's optimizer, for a model of type `M`.
pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(config: &RunConfig) -> Optim<M, B> {
    let t = &config.train;
    Optim {
        adamw: OptimizerAdaptor::from(MatrixDecayAdamW::new(config)),
        muon: (t.optimizer == OptimizerKind::Muon).then(|| MuonGroup {
            muon: OptimizerAdaptor::from(Muon::new(t)),
            lr_ratio: t.muon_lr / t.learning_rate,
        }),
    }
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> Optimizer<M, B> for Optim<M, B> {
    type Record = (
        <OptimizerAdaptor<MatrixDecayAdamW, M, B> as Optimizer<M, B>>::Record,
        <OptimizerAdaptor<Muon<B::InnerBackend>, M, B> as Optimizer<M, B>>::Record,
    );

    fn step(&mut self, lr: LearningRate, module: M, mut grads: GradientsParams) -> M {
        let module = match &mut self.muon {
            Some(group) => {
                let hidden = take_hidden::<B, M>(&module, &mut grads);
                group.muon.step(lr * group.lr_ratio, module, hidden)
            }
            None => module,
        };
        self.adamw.step(lr, module, grads)
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, mut grads: MultiGradientsParams) -> M {
        let module = match &mut self.muon {
            Some(group) => {
                let hidden = MultiGradientsParams {
                    grads: grads
                        .grads
                        .iter_mut()
                        .map(|(g, device)| (take_hidden::<B, M>(&module, g), *device))
                        .collect(),
                };
                group.muon.step_multi(lr * group.lr_ratio, module, hidden)
            }
            None => module,
        };
        self.adamw.step_multi(lr, module, grads)
    }

    fn to_record(&self) -> Self::Record {
        let muon = self.muon.as_ref().map(|g| g.muon.to_record());
        (self.adamw.to_record(), muon.unwrap_or_default())
    }

    fn load_record(self, (adamw, muon): Self::Record) -> Self {
        Self {
            adamw: self.adamw.load_record(adamw),
            muon: self.muon.map(|g| MuonGroup {
                muon: g.muon.load_record(muon),
                ..g
            }),
        }
    }
}

/// Moves the hidden matrices' gradients ([`is_hidden`]) out of `grads` into a set of
/// their own, finding them by their path in the module's tree of fields.
fn take_hidden<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
) -> GradientsParams {
    struct Take<'a> {
        path: Vec<String>,
        from: &'a mut GradientsParams,
        to: GradientsParams,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }

        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }

        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if is_hidden(&self.path, D)
                && let Some(g) = self.from.remove::<B::InnerBackend, D>(p.id)
            {
                self.to.register::<B::InnerBackend, D>(p.id, g);
            }
        }
    }
    let mut take = Take {
        path: Vec::new(),
        from: grads,
        to: GradientsParams::new(),
    };
    module.visit(&mut take);
    take.to
}

/// nanoGPT's AdamW: decay on matrices, none on vectors.
#[derive(Clone)]
pub struct MatrixDecayAdamW {
    /// For parameters of rank ≥ 2.
    decayed: AdamW,
    /// For biases and LayerNorm parameters.
    plain: AdamW,
}

impl MatrixDecayAdamW {
    pub fn new(config: &RunConfig) -> Self {
        let t = &config.train;
        let base = AdamWConfig::new()
            .with_beta_1(t.beta1 as f32)
            .with_beta_2(t.beta2 as f32)
            .with_epsilon(t.eps as f32);
        Self {
            decayed: base
                .clone()
                .with_weight_decay(t.weight_decay as f32)
                .build(),
            plain: base.with_weight_decay(0.0).build(),
        }
    }
}

impl<B: Backend> SimpleOptimizer<B> for MatrixDecayAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let adamw = if D >= 2 { &self.decayed } else { &self.plain };
        adamw.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// With a zero gradient AdamW's update is zero, so only the decay moves a parameter.
    #[test]
    fn decays_matrices_but_not_vectors() {
        let mut config = RunConfig::default();
        config.train.weight_decay = 0.5;
        let opt = MatrixDecayAdamW::new(&config);
        let device = Default::default();
        let m = Tensor::<Flex, 2>::ones([2, 2], &device);
        let v = Tensor::<Flex, 1>::ones([3], &device);
        let (m2, _) = opt.step(0.1, m.clone(), m.zeros_like(), None);
        let (v2, _) = opt.step(0.1, v.clone(), v.zeros_like(), None);
        let m2: f32 = m2.mean().into_scalar();
        let v2: f32 = v2.mean().into_scalar();
        assert!((m2 - 0.95).abs() < 1e-6, "{m2}"); // 1 - lr * wd
        assert!((v2 - 1.0).abs() < 1e-6, "{v2}");
    }

    type AB = burn::backend::Autodiff<Flex>;
    type Values = Vec<(burn::module::ParamId, Vec<usize>, Vec<f32>)>;

    fn small(optimizer: OptimizerKind) -> RunConfig {
        let mut config = RunConfig::default();
        config.model.n_layer = 2;
        config.model.n_head = 2;
        config.model.n_embd = 8;
        config.model.block_size = 4;
        config.model.dropout = 0.0;
        config.train.optimizer = optimizer;
        config
    }

    /// A small GPT.
    fn model(config: &RunConfig) -> model::Model<AB> {
        let device = Default::default();
        AB::seed(&device, 3);
        model::Model::<AB>::new(&config.model, &device).unwrap()
    }

    /// The gradients of one batch's loss.
    fn grads_of(model: &model::Model<AB>) -> GradientsParams {
        use model::LanguageModel;
        let ids = |offset: i64| {
            let data: Vec<i64> = (0..2 * 4).map(|i| (i * 7 + offset) % 65).collect();
            Tensor::<AB, 2, Int>::from_data(TensorData::new(data, [2, 4]), &Default::default())
        };
        let loss = model::loss::cross_entropy(model.logits(ids(0)).unwrap(), ids(1));
        GradientsParams::from_grads(loss.backward(), model)
    }

    /// Every parameter's id, shape and values, in the module's order.
    fn values(model: &model::Model<AB>) -> Values {
        struct All(Values);
        impl ModuleVisitor<AB> for All {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<AB, D>>) {
                let v = p.val();
                self.0
                    .push((p.id, v.dims().to_vec(), v.into_data().to_vec().unwrap()));
            }
        }
        let mut all = All(Vec::new());
        model.visit(&mut all);
        all.0
    }

    /// Which parameters, in the module's order, Muon gets.
    fn hidden(model: &model::Model<AB>) -> Vec<bool> {
        let hidden = take_hidden::<AB, _>(model, &mut grads_of(model));
        values(model)
            .iter()
            .map(|(id, shape, _)| shape.len() == 2 && hidden.get::<Flex, 2>(*id).is_some())
            .collect()
    }

    /// Muon gets the blocks' attention and MLP projections, nothing else: not `wte`,
    /// `wpe` or `lm_head`, though they are matrices too, nor any vector.
    #[test]
    fn the_hidden_matrices_are_the_blocks_projections() {
        let model = model(&small(OptimizerKind::Muon));
        let mut grads = grads_of(&model);
        let all = grads.len();
        let hidden = take_hidden::<AB, _>(&model, &mut grads);
        assert_eq!(hidden.len() + grads.len(), all);
        let shapes: Vec<Vec<usize>> = values(&model)
            .into_iter()
            .filter(|(id, shape, _)| shape.len() == 2 && hidden.get::<Flex, 2>(*id).is_some())
            .map(|(_, shape, _)| shape)
            .collect();
        // Per block: c_attn, attn.c_proj, c_fc, mlp.c_proj (Burn's (in, out)).
        let block = [vec![8, 24], vec![8, 8], vec![8, 32], vec![32, 8]];
        assert_eq!(hidden.len(), 8);
        assert_eq!(shapes, [block.clone(), block].concat());
        let matrices = values(&model)
            .iter()
            .filter(|(_, shape, _)| shape.len() == 2)
            .count();
        assert_eq!(matrices, 8 + 3, "wte, wpe and lm_head stay with AdamW");
    }

    /// With Muon every other parameter takes exactly AdamW's step and the hidden matrices
    /// another; with AdamW alone [`Optim`] steps as Burn's adaptor around
    /// [`MatrixDecayAdamW`] does.
    #[test]
    fn muon_steps_the_hidden_matrices_and_adamw_the_rest() {
        // One model, cloned for each optimizer: the global seed is shared with the tests
        // running beside this one, so two initialisations need not agree.
        let config = small(OptimizerKind::AdamW);
        let start = model(&config);
        let step = |optimizer| {
            let grads = grads_of(&start);
            values(&init::<AB, _>(&small(optimizer)).step(1e-2, start.clone(), grads))
        };
        let (adamw, muon) = (step(OptimizerKind::AdamW), step(OptimizerKind::Muon));
        let mut plain: OptimizerAdaptor<MatrixDecayAdamW, _, AB> =
            OptimizerAdaptor::from(MatrixDecayAdamW::new(&config));
        let plain = values(&plain.step(1e-2, start.clone(), grads_of(&start)));
        let hidden = hidden(&start);
        assert_eq!(hidden.iter().filter(|h| **h).count(), 8);
        for (i, is_hidden) in hidden.into_iter().enumerate() {
            assert_eq!(adamw[i].2, plain[i].2, "parameter {i}");
            assert_eq!(adamw[i].2 == muon[i].2, !is_hidden, "parameter {i}");
        }
    }

    /// The record carries both groups' state: an optimizer loaded from it takes the next
    /// step exactly as the one it was taken from, and a fresh one (no Muon momentum) does
    /// not.
    #[test]
    fn the_record_resumes_muon_and_adamw_exactly() {
        let config = small(OptimizerKind::Muon);
        let mut first = init::<AB, _>(&config);
        let start = model(&config);
        let grads = grads_of(&start);
        let stepped = first.step(1e-2, start, grads);
        let mut loaded = init::<AB, _>(&config).load_record(first.to_record());
        let next = |optim: &mut Optim<model::Model<AB>, AB>| {
            let grads = grads_of(&stepped);
            values(&optim.step(1e-2, stepped.clone(), grads))
        };
        let (a, b) = (next(&mut first), next(&mut loaded));
        assert_eq!(a, b);
        let fresh = next(&mut init::<AB, _>(&config));
        let hidden = hidden(&stepped);
        for (i, is_hidden) in hidden.into_iter().enumerate() {
            if is_hidden {
                assert_ne!(a[i].2, fresh[i].2, "parameter {i}: momentum must matter");
            }
        }
    }
}
