//! The run directory: everything a run needs to be inspected, sampled or resumed.
//!
//! ```text
//! runs/NAME/
//!   run.json             the marker: format, creation time, the data and its sha256,
//!                        each resume (see `marker`)
//!   run.lock             the writer's lock, holding its pid (see `writer`)
//!   config.toml          resolved config (vocab_size filled in)
//!   tokenizer.json       the tokenizer the model was trained with: a character
//!                        vocabulary, or `{"kind": "gpt2"}` (GPT-2's BPE)
//!   metrics.csv          one row per evaluation (see `log`)
//!   train_log.csv        the training loss every `log_interval` iterations
//!   checkpoint/          model-E.mpk, optim-E.mpk, scheduler-E.mpk after evaluation E
//!   model.mpk            the model when training ended (or was stopped)
//!   best.mpk             the checkpointed model with the lowest val loss
//! ```
//!
//! [`RunDir`] reads a run (anything may read while a run trains: every file is replaced
//! atomically) and validates what it reads; [`RunWriter`] is the one process that writes
//! it.

pub mod checkpoint;
pub mod marker;
pub mod writer;

use crate::host_record::HostRecord;
use crate::log::{EvalRow, TRAIN_LOG, TrainPoint, read_rows, read_train_log};
use crate::optim::OptimizerRecord;
use crate::recorder::AtomicRecorder;
use crate::schedule::NanoGptSchedule;
use crate::step::{StepPolicy, TrainingModel, TrainingModelRecord, shapes};
use crate::{RunConfig, TrainError};
use burn::lr_scheduler::LrScheduler;
use burn::prelude::*;
use burn::record::Recorder;
use burn::tensor::backend::AutodiffBackend;
use data::files::write_atomically;
use data::{TextTokenizer, Tokenizer};
pub use marker::RunMarker;
use model::Model;
use std::path::{Path, PathBuf};
pub use writer::RunWriter;

/// The largest run file (config, tokenizer, marker) read back; checkpoints are bounded
/// by the model's own size.
const MAX_RUN_FILE: u64 = 16 << 20;

/// The files that make a folder a run: the marker, or `config.toml` (a run directory
/// may hold no marker).
const RUN_MARKS: &[&str] = &["run.json", "config.toml"];

#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// An existing run, or a clear error saying what is missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, TrainError> {
        let run = Self::new(root);
        if !run.root.is_dir() {
            return Err(TrainError::Run(format!(
                "run directory {} does not exist",
                run.root.display()
            )));
        }
        if !run.has_run() {
            return Err(TrainError::Run(format!(
                "{} holds no run (no run.json or config.toml); train one with `gpt train --out-dir {}`",
                run.root.display(),
                run.root.display()
            )));
        }
        Ok(run)
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }

    pub fn checkpoint_dir(&self) -> PathBuf {
        self.root.join("checkpoint")
    }

    pub fn model_path(&self) -> PathBuf {
        self.root.join("model.mpk")
    }

    pub fn best_path(&self) -> PathBuf {
        self.root.join("best.mpk")
    }

    pub fn marker_path(&self) -> PathBuf {
        self.root.join("run.json")
    }

    /// A run is a folder holding one of [`RUN_MARKS`].
    pub fn has_run(&self) -> bool {
        RUN_MARKS.iter().any(|m| self.root.join(m).exists())
    }

    /// The most recently trained run under `root` (by its last metrics or config write).
    pub fn latest(root: &Path) -> Result<RunDir, TrainError> {
        let newest = std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| RunDir::new(e.path()))
            .filter(|r| r.path().is_dir() && r.has_run())
            .filter_map(|r| {
                let touched = [r.metrics_path(), r.config_path(), r.marker_path()]
                    .iter()
                    .filter_map(|p| p.metadata().and_then(|m| m.modified()).ok())
                    .max()?;
                Some((touched, r))
            })
            .max_by_key(|(t, _)| *t);
        newest.map(|(_, r)| r).ok_or_else(|| {
            TrainError::Run(format!(
                "no run found under {}/: train one with `cargo xtask train`, or pass --run DIR",
                root.display()
            ))
        })
    }

    /// Reads a run file of at most [`MAX_RUN_FILE`] bytes.
    fn read_small(&self, path: &Path) -> Result<String, TrainError> {
        data::source::check_regular_file(path, MAX_RUN_FILE)?;
        std::fs::read_to_string(path).map_err(|e| io(path, e))
    }

    /// The run's config, validated, with a known vocabulary.
    pub fn config(&self) -> Result<RunConfig, TrainError> {
        let path = self.config_path();
        let bad = |e: String| TrainError::Run(format!("{}: {e}", path.display()));
        let config =
            RunConfig::from_toml(&self.read_small(&path)?).map_err(|e| bad(e.to_string()))?;
        config.model.validate().map_err(|e| bad(e.to_string()))?;
        Ok(config)
    }

    /// The marker (`None` for a run directory without one).
    pub fn marker(&self) -> Result<Option<RunMarker>, TrainError> {
        let path = self.marker_path();
        if !path.exists() {
            return Ok(None);
        }
        let marker: RunMarker = serde_json::from_str(&self.read_small(&path)?)
            .map_err(|e| TrainError::Run(format!("{} is corrupt: {e}", path.display())))?;
        if marker.format > marker::FORMAT {
            return Err(TrainError::Run(format!(
                "{} has format {}, newer than this gpt understands ({}); update burngpt",
                path.display(),
                marker.format,
                marker::FORMAT
            )));
        }
        Ok(Some(marker))
    }

    pub fn save_marker(&self, marker: &RunMarker) -> Result<(), TrainError> {
        let path = self.marker_path();
        let json = serde_json::to_string_pretty(marker).expect("a marker always serialises");
        write_atomically(&path, json.as_bytes()).map_err(|e| io(&path, e))
    }

    pub fn save_config(&self, config: &RunConfig) -> Result<(), TrainError> {
        let path = self.config_path();
        write_atomically(&path, config.to_toml().as_bytes()).map_err(|e| io(&path, e))
    }

    /// The run's tokenizer, checked against the config's `vocab_size`.
    pub fn tokenizer(&self) -> Result<TextTokenizer, TrainError> {
        let path = self.tokenizer_path();
        let tokenizer: TextTokenizer = serde_json::from_str(&self.read_small(&path)?)
            .map_err(|e| TrainError::Run(format!("{} is corrupt: {e}", path.display())))?;
        let vocab_size = self.config()?.model.vocab_size;
        if tokenizer.vocab_size() != vocab_size {
            return Err(TrainError::Run(format!(
                "{} has {} tokens but config.toml says vocab_size = {vocab_size}: the run's files disagree (edited?)",
                path.display(),
                tokenizer.vocab_size()
            )));
        }
        if let Some(pinned) = self.marker()?.and_then(|m| m.tokenizer_sha256)
            && tokenizer.bpe_sha256().as_ref() != Some(&pinned)
        {
            return Err(TrainError::Run(format!(
                "{} holds {}, but run.json pins the tokenizer file with sha256 {}: the run's files disagree (edited?)",
                path.display(),
                tokenizer.describe(),
                &pinned[..pinned.len().min(12)]
            )));
        }
        Ok(tokenizer)
    }

    pub fn save_tokenizer(&self, tokenizer: &TextTokenizer) -> Result<(), TrainError> {
        let path = self.tokenizer_path();
        let json = serde_json::to_string(tokenizer).expect("a tokenizer always serialises");
        write_atomically(&path, json.as_bytes()).map_err(|e| io(&path, e))
    }

    /// The evaluations logged so far (an error names a line that cannot be read).
    pub fn rows(&self) -> Result<Vec<EvalRow>, TrainError> {
        read_rows(&self.metrics_path())
    }

    /// The training loss logged every `log_interval` iterations.
    pub fn train_log(&self) -> Result<Vec<TrainPoint>, TrainError> {
        read_train_log(&self.root.join(TRAIN_LOG))
    }

    /// Epochs with a complete checkpoint (model, optimizer and scheduler all present).
    pub fn checkpoint_epochs(&self) -> Vec<usize> {
        let dir = self.checkpoint_dir();
        let mut epochs: Vec<usize> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("model-")?
                    .strip_suffix(".mpk")?
                    .parse()
                    .ok()
            })
            .filter(|e| {
                ["optim", "scheduler"]
                    .iter()
                    .all(|k| dir.join(format!("{k}-{e}.mpk")).exists())
            })
            .collect();
        epochs.sort_unstable();
        epochs
    }

    pub fn checkpoint_model_path(&self, epoch: usize) -> PathBuf {
        self.checkpoint_dir().join(format!("model-{epoch}.mpk"))
    }

    /// The trained model: `model.mpk`, else the newest checkpoint. (A run in training
    /// may delete an old checkpoint between listing and reading: then the next newest.)
    pub fn load_model<B: Backend>(&self, device: &B::Device) -> Result<Model<B>, TrainError> {
        if self.model_path().exists() {
            return self.load_model_file(&self.model_path(), device);
        }
        let mut epochs = self.checkpoint_epochs();
        let none = || {
            TrainError::Run(format!(
                "{} holds no trained model yet (no model.mpk, no checkpoint)",
                self.root.display()
            ))
        };
        let newest = epochs.pop().ok_or_else(none)?;
        let path = self.checkpoint_model_path(newest);
        match self.load_model_file(&path, device) {
            Err(_) if !path.exists() => match epochs.pop() {
                Some(e) => self.load_model_file(&self.checkpoint_model_path(e), device),
                None => Err(none()),
            },
            loaded => loaded,
        }
    }

    /// Loads a model file of this run, after checking that it holds exactly the f32
    /// tensors of the run's config (see `checkpoint`).
    pub fn load_model_file<B: Backend>(
        &self,
        path: &Path,
        device: &B::Device,
    ) -> Result<Model<B>, TrainError> {
        self.load_model_file_as(path, &self.config()?.model, device)
    }

    /// Loads a model file into a model built from `model` (a run that starts from this
    /// one's weights may differ in dropout), after checking that the file holds exactly
    /// that model's f32 tensors.
    pub fn load_model_file_as<B: Backend>(
        &self,
        path: &Path,
        shape: &model::GptConfig,
        device: &B::Device,
    ) -> Result<Model<B>, TrainError> {
        let fresh = TrainingModel::new(Model::new(shape, device)?, StepPolicy::default());
        let expected = shapes(&fresh);
        let cannot =
            |e: String| TrainError::Checkpoint(format!("cannot load {}: {e}", path.display()));
        // Four bytes per parameter, plus generous room for names and the optimizer-free
        // record's framing: a larger file is not this run's.
        let params: u64 = expected
            .iter()
            .map(|s| s.iter().product::<usize>() as u64)
            .sum();
        data::source::check_regular_file(path, params * 4 + (1 << 20) + params)
            .map_err(|e| cannot(e.to_string()))?;
        let bytes = std::fs::read(path).map_err(|e| cannot(e.to_string()))?;
        checkpoint::check_tensors(&bytes, &expected).map_err(|refused| match refused {
            checkpoint::Refused::Unreadable(e) => cannot(e),
            checkpoint::Refused::Mismatch(e) => TrainError::Checkpoint(format!(
                "{} does not match this run's config.toml: {e}",
                path.display()
            )),
        })?;
        let record: TrainingModelRecord<B> = AtomicRecorder
            .load(path.to_path_buf(), device)
            .map_err(|e| cannot(e.to_string()))?;
        Ok(fresh.load_record(record).model)
    }

    /// Checks that checkpoint `epoch`'s optimizer and scheduler files load as this run's
    /// training state, for its model file (checked by [`Self::load_model_file`]): burn-train
    /// reads them itself when it resumes, and panics on any error.
    pub fn check_training_state<B: AutodiffBackend>(
        &self,
        epoch: usize,
        device: &B::Device,
    ) -> Result<(), TrainError> {
        let cannot = |path: &Path, e: String| {
            TrainError::Checkpoint(format!("cannot resume from {}: {e}", path.display()))
        };
        let model_path = self.checkpoint_model_path(epoch);
        let model = std::fs::read(&model_path).map_err(|e| cannot(&model_path, e.to_string()))?;
        let path = self.checkpoint_dir().join(format!("optim-{epoch}.mpk"));
        // Two moments per parameter: twice the model's bytes, and room for the ids.
        data::source::check_regular_file(&path, 2 * model.len() as u64 + (1 << 20))
            .map_err(|e| cannot(&path, e.to_string()))?;
        let optim = std::fs::read(&path).map_err(|e| cannot(&path, e.to_string()))?;
        checkpoint::check_optimizer(&optim, &model).map_err(|refused| match refused {
            checkpoint::Refused::Unreadable(e) => cannot(&path, e),
            checkpoint::Refused::Mismatch(e) => TrainError::Checkpoint(format!(
                "{} does not match {}: {e}",
                path.display(),
                model_path.display()
            )),
        })?;
        drop((model, optim));
        // Read as burn-train will (host data only, no tensors made): any other damage.
        Recorder::<B>::load::<HostRecord<B, OptimizerRecord<B>>>(
            &AtomicRecorder,
            path.clone(),
            device,
        )
        .map_err(|e| cannot(&path, e.to_string()))?;
        let path = self.checkpoint_dir().join(format!("scheduler-{epoch}.mpk"));
        data::source::check_regular_file(&path, MAX_RUN_FILE)
            .map_err(|e| cannot(&path, e.to_string()))?;
        Recorder::<B>::load::<<NanoGptSchedule as LrScheduler>::Record<B>>(
            &AtomicRecorder,
            path.clone(),
            device,
        )
        .map_err(|e| cannot(&path, e.to_string()))?;
        Ok(())
    }

    /// Saves the model atomically as `path`.
    pub fn save_model<B: Backend>(
        &self,
        training_model: TrainingModel<B>,
        path: &Path,
    ) -> Result<(), TrainError> {
        AtomicRecorder
            .record(training_model.into_record(), path.to_path_buf())
            .map_err(|e| TrainError::Checkpoint(format!("cannot save {}: {e}", path.display())))
    }
}

pub(crate) fn io(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::Run(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::SplitBatch;
    use burn::backend::Flex;
    use burn::module::{AutodiffModule, Module};
    use burn::train::TrainStep;
    use model::GptConfig;

    fn params(model: &Model<Flex>) -> Vec<Vec<f32>> {
        struct All(Vec<Vec<f32>>);
        impl burn::module::ModuleVisitor<Flex> for All {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<Flex, D>>) {
                self.0
                    .push(p.val().into_data().convert::<f32>().to_vec().unwrap());
            }
        }
        let mut all = All(Vec::new());
        model.visit(&mut all);
        all.0
    }

    /// A run in a fresh temporary directory holding a new model of `model` as its final
    /// checkpoint; the run and the model's weights.
    fn saved_run(tag: &str, model: GptConfig) -> (RunDir, Vec<Vec<f32>>) {
        let dir = std::env::temp_dir().join(format!("burngpt-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = RunDir::new(&dir);
        let config = RunConfig {
            model,
            ..RunConfig::default()
        };
        run.save_config(&config).unwrap();
        let model = Model::<Flex>::new(&config.model, &Default::default()).unwrap();
        let weights = params(&model);
        run.save_model(
            TrainingModel::new(model, StepPolicy::default()),
            &run.model_path(),
        )
        .unwrap();
        (run, weights)
    }

    fn small() -> GptConfig {
        GptConfig {
            n_layer: 2,
            n_head: 2,
            n_embd: 16,
            block_size: 8,
            ..GptConfig::default()
        }
    }

    #[test]
    fn checkpoint_round_trips_bit_exactly() {
        let (run, before) = saved_run("run", small());
        let dir = run.path().to_path_buf();
        let loaded = run.load_model::<Flex>(&Default::default()).unwrap();
        let after = params(&loaded);
        assert_eq!(before.len(), after.len());
        for (a, b) in before.iter().zip(&after) {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a), bits(b));
        }
        // No temporary file is left beside the checkpoint.
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
    }

    /// A model file that writes each either/or layer as two optional fields (`ln_1` and
    /// `rms_1`, …, `c_fc` and `swiglu`; absent ones as nil or not at all) loads bit for
    /// bit, for the lecture's model and with every switch on. Simulated by untagging a
    /// checkpoint of today's model.
    #[test]
    fn either_or_layers_written_as_two_optional_fields_still_load() {
        use rmpv::Value;
        /// `ln_1: {RmsNorm: R}` → `ln_1: nil, rms_1: R`; `ln_1: {LayerNorm: L}` →
        /// `ln_1: L` and, with `nil_fields`, `rms_1: nil`; `c_fc`/`swiglu` likewise.
        /// Without `nil_fields` the optional layers and constants of the modern switches
        /// go too, as in a file of a model without them.
        fn untag(value: &mut Value, nil_fields: bool) {
            const SWITCHES_ONLY: [&str; 5] =
                ["q_norm", "k_norm", "rope", "n_kv_head", "logit_softcap"];
            const PAIRS: [(&str, &str, &str); 4] = [
                ("ln_1", "LayerNorm", "rms_1"),
                ("ln_2", "LayerNorm", "rms_2"),
                ("ln_f", "LayerNorm", "rms_f"),
                ("c_fc", "Linear", "swiglu"),
            ];
            match value {
                Value::Map(entries) => {
                    if !nil_fields {
                        entries.retain(|(k, _)| {
                            !k.as_str().is_some_and(|k| SWITCHES_ONLY.contains(&k))
                        });
                    }
                    for (first, first_tag, second) in PAIRS {
                        let Some(i) = entries.iter().position(|(k, _)| k.as_str() == Some(first))
                        else {
                            continue;
                        };
                        let Value::Map(tagged) = std::mem::replace(&mut entries[i].1, Value::Nil)
                        else {
                            panic!("{first} is not tagged");
                        };
                        let (tag, layer) = tagged.into_iter().next().unwrap();
                        if tag.as_str() == Some(first_tag) {
                            entries[i].1 = layer;
                            if nil_fields {
                                entries.insert(i + 1, (Value::from(second), Value::Nil));
                            }
                        } else {
                            entries.insert(i + 1, (Value::from(second), layer));
                        }
                    }
                    entries.iter_mut().for_each(|(_, v)| untag(v, nil_fields));
                }
                Value::Array(items) => items.iter_mut().for_each(|v| untag(v, nil_fields)),
                _ => {}
            }
        }
        let modern = GptConfig {
            n_head: 4,
            ..small()
        }
        .with_every_switch();
        for (tag, config, nil_fields) in [
            ("plain-run", small(), false),
            ("optional-run", small(), true),
            ("optional-modern-run", modern, true),
        ] {
            let (run, before) = saved_run(tag, config);
            let bytes = std::fs::read(run.model_path()).unwrap();
            let mut value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
            untag(&mut value, nil_fields);
            let mut old = Vec::new();
            rmpv::encode::write_value(&mut old, &value).unwrap();
            assert_ne!(old, bytes, "{tag}: nothing was untagged");
            std::fs::write(run.model_path(), old).unwrap();
            let loaded = run.load_model::<Flex>(&Default::default()).unwrap();
            assert_eq!(before, params(&loaded), "{tag}");
            std::fs::remove_dir_all(run.path()).unwrap();
        }
    }

    /// Every modern switch round-trips through a checkpoint too (RoPE's tables are
    /// rebuilt from the config, not stored).
    #[test]
    fn modern_checkpoint_round_trips() {
        let modern = GptConfig {
            n_head: 4,
            ..small()
        }
        .with_every_switch();
        let (run, before) = saved_run("modern-run", modern);
        let loaded = run.load_model::<Flex>(&Default::default()).unwrap();
        assert_eq!(before, params(&loaded));
        std::fs::remove_dir_all(run.path()).unwrap();
    }

    fn tiny_run(tag: &str) -> RunDir {
        tiny_run_with(tag, crate::optim::OptimizerKind::AdamW)
    }

    fn tiny_run_with(tag: &str, optimizer: crate::optim::OptimizerKind) -> RunDir {
        let dir = std::env::temp_dir().join(format!("burngpt-fuzz-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = RunDir::new(&dir);
        let mut config = RunConfig::default();
        config.train.optimizer = optimizer;
        config.model.dropout = 0.0;
        config.model.n_layer = 1;
        config.model.n_embd = 8;
        config.model.n_head = 2;
        config.model.block_size = 4;
        run.save_config(&config).unwrap();
        run
    }

    type AB = burn::backend::Autodiff<Flex>;

    /// [`tiny_run`] holding checkpoint 1 after one AdamW step (model, optimizer and
    /// scheduler files, as burn-train writes them); the model and a batch to step with.
    fn checkpointed_run(tag: &str) -> (RunDir, TrainingModel<AB>, impl Fn() -> SplitBatch<AB>) {
        checkpointed_run_with(tag, crate::optim::OptimizerKind::AdamW)
    }

    /// [`checkpointed_run`] with `optimizer`.
    fn checkpointed_run_with(
        tag: &str,
        optimizer: crate::optim::OptimizerKind,
    ) -> (RunDir, TrainingModel<AB>, impl Fn() -> SplitBatch<AB>) {
        use burn::data::dataloader::batcher::Batcher;
        use burn::optim::Optimizer;
        let run = tiny_run_with(tag, optimizer);
        let config = run.config().unwrap();
        let device = Default::default();
        let training_model = TrainingModel::new(
            Model::<AB>::new(&config.model, &device).unwrap(),
            StepPolicy::default(),
        );
        let chunks: Vec<data::Chunk> = (0..2u32)
            .map(|r| data::Chunk::text((0..5).map(|t| (r * 5 + t * 3) % 13).collect()))
            .collect();
        let batch = move || SplitBatch {
            split: data::Split::Train,
            batch: data::LmBatcher.batch(chunks.clone(), &Default::default()),
        };
        let mut optim = crate::optim::init::<AB, TrainingModel<AB>>(&config);
        let grads = TrainStep::step(&training_model, batch()).grads;
        let training_model = optim.step(1e-3, training_model, grads);
        std::fs::create_dir_all(run.checkpoint_dir()).unwrap();
        run.save_model(training_model.clone(), &run.checkpoint_model_path(1))
            .unwrap();
        let dir = run.checkpoint_dir();
        Recorder::<AB>::record(&AtomicRecorder, optim.to_record(), dir.join("optim-1.mpk"))
            .unwrap();
        Recorder::<AB>::record(&AtomicRecorder, 1usize, dir.join("scheduler-1.mpk")).unwrap();
        (run, training_model, batch)
    }

    #[test]
    fn training_state_is_checked_against_the_model() {
        let (run, _, _) = checkpointed_run("state");
        let device = Default::default();
        run.check_training_state::<AB>(1, &device).unwrap();
        // Another model's optimizer state (other parameter ids) is refused by name.
        let (other, _, _) = checkpointed_run("state-other");
        let optim = |run: &RunDir| run.checkpoint_dir().join("optim-1.mpk");
        std::fs::copy(optim(&other), optim(&run)).unwrap();
        let err = run.check_training_state::<AB>(1, &device).unwrap_err();
        assert!(err.to_string().contains("the model lacks"), "{err}");
        for run in [run, other] {
            std::fs::remove_dir_all(run.path()).unwrap();
        }
    }

    /// With Muon the checkpoint holds both groups' state: it passes the check, and an
    /// optimizer loaded from it takes the next step exactly as the one that wrote it.
    /// Muon's state under a vector's id, or AdamW's states alone (a file from before
    /// Muon, for an AdamW run), are told apart.
    #[test]
    fn muon_training_state_round_trips_and_is_checked() {
        use crate::optim::OptimizerKind;
        use burn::optim::Optimizer;
        let (run, model, batch) = checkpointed_run_with("muon-state", OptimizerKind::Muon);
        let device = Default::default();
        run.check_training_state::<AB>(1, &device).unwrap();
        let config = run.config().unwrap();
        let path = run.checkpoint_dir().join("optim-1.mpk");
        let record: OptimizerRecord<AB> =
            Recorder::<AB>::load(&AtomicRecorder, path.clone(), &device).unwrap();
        assert_eq!(record.1.len(), 4, "c_attn, attn.c_proj, c_fc, mlp.c_proj");
        let step = |record: OptimizerRecord<AB>| {
            let mut optim =
                crate::optim::init::<AB, TrainingModel<AB>>(&config).load_record(record);
            let grads = TrainStep::step(&model, batch()).grads;
            params(&optim.step(1e-3, model.clone(), grads).model.valid())
        };
        let again: OptimizerRecord<AB> =
            Recorder::<AB>::load(&AtomicRecorder, path.clone(), &device).unwrap();
        assert_eq!(step(record), step(again));

        // AdamW's group alone, as written before Muon: checked and loaded as the pair.
        let (adamw_run, _, _) = checkpointed_run("adamw-alone");
        let adamw_path = adamw_run.checkpoint_dir().join("optim-1.mpk");
        let pair: OptimizerRecord<AB> =
            Recorder::<AB>::load(&AtomicRecorder, adamw_path.clone(), &device).unwrap();
        let (adamw, muon) = pair;
        assert!(muon.is_empty());
        Recorder::<AB>::record(&AtomicRecorder, adamw, adamw_path.clone()).unwrap();
        adamw_run.check_training_state::<AB>(1, &device).unwrap();
        let old: OptimizerRecord<AB> =
            Recorder::<AB>::load(&AtomicRecorder, adamw_path, &device).unwrap();
        assert!(!old.0.is_empty() && old.1.is_empty());

        // Muon's group holding a state of rank 1 (a vector's) is refused.
        let bytes = std::fs::read(&path).unwrap();
        let mut value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        let rmpv::Value::Map(root) = &mut value else {
            panic!("a map")
        };
        let item = root.iter_mut().find(|(k, _)| k.as_str() == Some("item"));
        let Some((_, rmpv::Value::Array(groups))) = item else {
            panic!("a pair")
        };
        let vector = groups[0]
            .as_map()
            .unwrap()
            .iter()
            .find(|(_, state)| format!("{state}").contains("Rank1"))
            .unwrap()
            .clone();
        let rmpv::Value::Map(muon) = &mut groups[1] else {
            panic!("Muon's states")
        };
        muon.push(vector);
        let mut edited = Vec::new();
        rmpv::encode::write_value(&mut edited, &value).unwrap();
        std::fs::write(&path, edited).unwrap();
        let err = run.check_training_state::<AB>(1, &device).unwrap_err();
        assert!(err.to_string().contains("rank"), "{err}");
        for run in [run, adamw_run] {
            std::fs::remove_dir_all(run.path()).unwrap();
        }
    }

    // Fuzzing the checkpoint loader: random bytes, and a real checkpoint with random
    // bytes overwritten or cut short, load or fail cleanly — never panic.
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn random_bytes_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let run = tiny_run("random");
            let path = run.path().join("random.mpk");
            std::fs::write(&path, &bytes).unwrap();
            proptest::prop_assert!(run.load_model_file::<Flex>(&path, &Default::default()).is_err());
        }

        #[test]
        fn damaged_checkpoints_never_panic(
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..16),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let run = tiny_run("damaged");
            let device = Default::default();
            let config = run.config().unwrap();
            let model = Model::<Flex>::new(&config.model, &device).unwrap();
            let path = run.model_path();
            run.save_model(TrainingModel::new(model, StepPolicy::default()), &path).unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            for (at, b) in edits {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            bytes.truncate(cut % (bytes.len() + 1) + 1);
            std::fs::write(&path, &bytes).unwrap();
            let _ = run.load_model_file::<Flex>(&path, &device);
        }

        /// A damaged optimizer checkpoint is refused, or resumes: it loads as burn-train
        /// loads it and the optimizer steps with it (moments of any value) — never a panic.
        #[test]
        fn damaged_optimizer_states_never_panic(
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..16),
            cut in proptest::prelude::any::<usize>(),
        ) {
            use burn::optim::Optimizer;
            let (run, training_model, batch) = checkpointed_run("damaged-optim");
            let device = Default::default();
            let path = run.checkpoint_dir().join("optim-1.mpk");
            let mut bytes = std::fs::read(&path).unwrap();
            for (at, b) in edits {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            bytes.truncate(cut % (bytes.len() + 1) + 1);
            std::fs::write(&path, &bytes).unwrap();
            if run.check_training_state::<AB>(1, &device).is_ok() {
                let record: OptimizerRecord<AB> =
                    Recorder::<AB>::load(&AtomicRecorder, path, &device).unwrap();
                let config = run.config().unwrap();
                let mut optim =
                    crate::optim::init::<AB, TrainingModel<AB>>(&config).load_record(record);
                let grads = TrainStep::step(&training_model, batch()).grads;
                optim.step(1e-3, training_model, grads);
            }
            std::fs::remove_dir_all(run.path()).unwrap();
        }
    }
}
