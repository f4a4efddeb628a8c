//! The run directory: everything a run needs to be inspected, sampled or resumed.
//!
//! ```text
//! runs/NAME/
//!   config.toml          resolved config (vocab_size filled in)
//!   tokenizer.json       the vocabulary the model was trained with
//!   metrics.csv          one row per evaluation (see `log`)
//!   checkpoint/          model-E.mpk, optim-E.mpk, scheduler-E.mpk after evaluation E
//!   model.mpk            the model when training ended (or was stopped)
//!   best.mpk             the checkpointed model with the lowest val loss
//! ```

use crate::log::{EvalRow, read_rows};
use crate::recorder::{AtomicRecorder, write_atomically};
use crate::step::{StepPolicy, Trainee, TraineeRecord};
use crate::{RunConfig, TrainError};
use burn::prelude::*;
use burn::record::Recorder;
use data::CharTokenizer;
use model::Model;
use std::path::{Path, PathBuf};

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
                "{} holds no run (no config.toml); train one with `gpt train --out-dir {}`",
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

    pub fn has_run(&self) -> bool {
        self.config_path().exists()
    }

    pub fn config(&self) -> Result<RunConfig, TrainError> {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        RunConfig::from_toml(&text).map_err(|e| TrainError::Run(format!("{}: {e}", path.display())))
    }

    pub fn save_config(&self, config: &RunConfig) -> Result<(), TrainError> {
        let path = self.config_path();
        write_atomically(&path, config.to_toml().as_bytes()).map_err(|e| io(&path, e))
    }

    pub fn tokenizer(&self) -> Result<CharTokenizer, TrainError> {
        let path = self.tokenizer_path();
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| TrainError::Run(format!("{} is corrupt: {e}", path.display())))
    }

    pub fn save_tokenizer(&self, tokenizer: &CharTokenizer) -> Result<(), TrainError> {
        let path = self.tokenizer_path();
        let json = serde_json::to_string(tokenizer).expect("a tokenizer always serialises");
        write_atomically(&path, json.as_bytes()).map_err(|e| io(&path, e))
    }

    /// The evaluations logged so far.
    pub fn rows(&self) -> Vec<EvalRow> {
        read_rows(&self.metrics_path())
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

    /// The trained model: `model.mpk`, else the newest checkpoint.
    pub fn load_model<B: Backend>(&self, device: &B::Device) -> Result<Model<B>, TrainError> {
        let path = if self.model_path().exists() {
            self.model_path()
        } else {
            let epoch = self.checkpoint_epochs().pop().ok_or_else(|| {
                TrainError::Run(format!(
                    "{} holds no trained model yet (no model.mpk, no checkpoint)",
                    self.root.display()
                ))
            })?;
            self.checkpoint_model_path(epoch)
        };
        self.load_model_file(&path, device)
    }

    /// Loads a model file of this run, checking it matches the run's config.
    pub fn load_model_file<B: Backend>(
        &self,
        path: &Path,
        device: &B::Device,
    ) -> Result<Model<B>, TrainError> {
        let config = self.config()?;
        let fresh = Trainee::new(Model::new(&config.model, device)?, StepPolicy::default());
        let record: TraineeRecord<B> = AtomicRecorder
            .load(path.to_path_buf(), device)
            .map_err(|e| TrainError::Checkpoint(format!("cannot load {}: {e}", path.display())))?;
        Ok(crate::step::load_checked(fresh, record, path)?.model)
    }

    /// Saves the model atomically as `path`.
    pub fn save_model<B: Backend>(
        &self,
        trainee: Trainee<B>,
        path: &Path,
    ) -> Result<(), TrainError> {
        AtomicRecorder
            .record(trainee.into_record(), path.to_path_buf())
            .map_err(|e| TrainError::Checkpoint(format!("cannot save {}: {e}", path.display())))
    }
}

pub(crate) fn io(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::Run(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::module::Module;
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

    #[test]
    fn checkpoint_round_trips_bit_exactly() {
        let dir = std::env::temp_dir().join(format!("burngpt-run-{}", std::process::id()));
        let run = RunDir::new(&dir);
        let config = RunConfig {
            model: GptConfig {
                n_layer: 2,
                n_head: 2,
                n_embd: 16,
                block_size: 8,
                ..GptConfig::default()
            },
            ..RunConfig::default()
        };
        run.save_config(&config).unwrap();
        let device = Default::default();
        let model = Model::<Flex>::new(&config.model, &device).unwrap();
        let before = params(&model);
        run.save_model(
            Trainee::new(model, StepPolicy::default()),
            &run.model_path(),
        )
        .unwrap();
        let loaded = run.load_model::<Flex>(&device).unwrap();
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

    fn tiny_run(tag: &str) -> RunDir {
        let dir = std::env::temp_dir().join(format!("burngpt-fuzz-{tag}-{}", std::process::id()));
        let run = RunDir::new(&dir);
        let mut config = RunConfig::default();
        config.model.n_layer = 1;
        config.model.n_embd = 8;
        config.model.n_head = 2;
        config.model.block_size = 4;
        run.save_config(&config).unwrap();
        run
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
            run.save_model(Trainee::new(model, StepPolicy::default()), &path).unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            for (at, b) in edits {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            bytes.truncate(cut % (bytes.len() + 1) + 1);
            std::fs::write(&path, &bytes).unwrap();
            let _ = run.load_model_file::<Flex>(&path, &device);
        }
    }
}
