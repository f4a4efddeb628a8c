//! A run's configuration: the model's shape and the training recipe, read from a TOML
//! preset in `experiments/` and overridden key by key from the command line.
//!
//! ```toml
//! [model]            # model::GptConfig
//! n_layer = 4
//! [train]            # TrainConfig
//! max_iters = 2000
//! [task]             # data::TaskConfig, read when dataset = "arithmetic"
//! ops = ["+"]
//! [rl]               # rl::RlConfig: learn from the model's own sampled answers
//! samples = 16
//! ```
//! `--set max_iters=3000` or `--set train.max_iters=3000` changes one key; a bare key is
//! looked up in whichever section has it.

use crate::TrainError;
use crate::optim::OptimizerKind;
use crate::rl::RlConfig;
use crate::schedule::LrSchedule;
use crate::step::OnNonFinite;
use data::{Dataset, TaskConfig};
use model::GptConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

mod legacy;

/// The training recipe, named as in nanoGPT's `train.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// A named dataset (`"tinyshakespeare"`), a text file (`"file:path/to/input.txt"`), a
    /// `gpt prepare` directory (`"prepared:path/to/dir"`, memory-mapped) or
    /// `"arithmetic"`: problems generated as `[task]` says, instead of a text.
    pub dataset: Dataset,
    pub batch_size: usize,
    /// Micro-batches of `batch_size` per optimizer step (nanoGPT's name): their gradients
    /// are averaged, so one iteration sees batch_size × block_size × k tokens.
    pub gradient_accumulation_steps: usize,
    pub max_iters: usize,
    /// Evaluate (and checkpoint) every this many iterations.
    pub eval_interval: usize,
    /// Batches per split in each evaluation (the lecture's `estimate_loss`).
    pub eval_iters: usize,
    /// Log the training loss every this many iterations (`train_log.csv` in the run
    /// directory, nanoGPT's name), for `gpt plot`'s thin line between evaluations.
    pub log_interval: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Warmup then decay to `min_lr` as `lr_schedule` says; false = constant lr.
    pub decay_lr: bool,
    /// After the warmup: `cosine` (nanoGPT's `get_lr`), or `wsd`, warmup–stable–decay
    /// (trapezoidal): the peak rate held, then a straight line down to `min_lr` over the
    /// last `warmdown_iters` (see `schedule`).
    pub lr_schedule: LrSchedule,
    pub warmup_iters: usize,
    /// With `lr_schedule = "wsd"`: the iterations of the final straight decay.
    pub warmdown_iters: usize,
    /// Iterations over which the schedule decays; 0 means `max_iters`.
    pub lr_decay_iters: usize,
    pub min_lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// AdamW's decoupled weight decay, on matrices only (see `optim`).
    pub weight_decay: f64,
    /// `adamw` (nanoGPT's), or `muon`: Muon for the blocks' matrices, AdamW (with the
    /// settings above) for embeddings, head, gains and biases (see `muon`).
    pub optimizer: OptimizerKind,
    /// Muon's peak learning rate; the schedule scales it as it scales `learning_rate`.
    pub muon_lr: f64,
    /// Muon's (Nesterov) momentum.
    pub muon_momentum: f64,
    /// Newton–Schulz iterations that orthogonalise each Muon update.
    pub muon_ns_steps: usize,
    /// Muon's decoupled weight decay (at `muon_lr`).
    pub muon_weight_decay: f64,
    /// Clip the global gradient norm to this; 0 disables clipping.
    pub grad_clip: f64,
    /// A NaN or infinite training loss: `stop` the run (keeping the last checkpoint) or
    /// `skip` that update and go on.
    pub on_nonfinite_loss: OnNonFinite,
    pub seed: u64,
    /// Checkpoints kept in the run directory (the newest ones, plus the best by val loss).
    pub keep_checkpoints: usize,
}

impl Default for TrainConfig {
    /// The lecture's `gpt.py` recipe with PyTorch's AdamW defaults.
    fn default() -> Self {
        Self {
            dataset: Dataset::Named("tinyshakespeare".into()),
            batch_size: 64,
            gradient_accumulation_steps: 1,
            max_iters: 5000,
            eval_interval: 500,
            eval_iters: 200,
            log_interval: 10,
            learning_rate: 3e-4,
            decay_lr: false,
            lr_schedule: LrSchedule::Cosine,
            warmup_iters: 0,
            warmdown_iters: 0,
            lr_decay_iters: 0,
            min_lr: 3e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            optimizer: OptimizerKind::AdamW,
            // Keller Jordan's defaults.
            muon_lr: 0.02,
            muon_momentum: 0.95,
            muon_ns_steps: 5,
            muon_weight_decay: 0.0,
            grad_clip: 0.0,
            on_nonfinite_loss: OnNonFinite::Stop,
            seed: 1337,
            keep_checkpoints: 2,
        }
    }
}

/// The largest config file read (presets are a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Everything a run needs to be reproduced, saved as `config.toml` in its directory.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    pub model: GptConfig,
    pub train: TrainConfig,
    pub task: TaskConfig,
    pub rl: RlConfig,
}

impl RunConfig {
    /// Reads a preset (or the defaults when `path` is `None`) and applies `key=value`
    /// overrides, then validates the result.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self, TrainError> {
        let (text, what) = match path {
            Some(p) => (read_config_file(p)?, p.display().to_string()),
            None => (String::new(), "the defaults".to_string()),
        };
        Self::parse(&text, &what, overrides)
    }

    /// The keys a config file sets, as `section.key=value` overrides: what `--resume
    /// --config FILE` applies to the run's own config, under the rules of `--set`.
    pub fn file_as_overrides(path: &Path) -> Result<Vec<String>, TrainError> {
        let what = path.display();
        let mut table = read_config_file(path)?
            .parse::<toml::Table>()
            .map_err(|e| {
                TrainError::Config(format!("{what} is not valid TOML: {}", e.message()))
            })?;
        legacy::fold_data_dir(&mut table)?;
        let mut overrides = Vec::new();
        for (section, keys) in &table {
            let keys = keys.as_table().ok_or_else(|| {
                TrainError::Config(format!("{what}: {section} is not a [section]"))
            })?;
            for (key, value) in keys {
                overrides.push(format!("{section}.{key}={value}"));
            }
        }
        Ok(overrides)
    }

    /// Parses TOML `text` (named `what` in errors) and applies `key=value` overrides.
    pub fn parse(text: &str, what: &str, overrides: &[String]) -> Result<Self, TrainError> {
        let mut table = text.parse::<toml::Table>().map_err(|e| {
            TrainError::Config(format!("{what} is not valid TOML: {}", e.message()))
        })?;
        legacy::fold_data_dir(&mut table)?;
        for kv in overrides {
            set(&mut table, kv)?;
        }
        legacy::fold_data_dir(&mut table)?;
        finite(&table, "")?;
        let config: RunConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| TrainError::Config(format!("{what}: {}", e.message())))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a saved `config.toml` without overrides, and validates it.
    pub fn from_toml(text: &str) -> Result<Self, TrainError> {
        let mut table = text
            .parse::<toml::Table>()
            .map_err(|e| TrainError::Config(e.message().to_string()))?;
        legacy::fold_data_dir(&mut table)?;
        finite(&table, "")?;
        let config: RunConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| TrainError::Config(e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serialises")
    }

    /// Refuses recipes that cannot work. (The model's shape is checked by the model crate,
    /// once `vocab_size` is known.)
    pub fn validate(&self) -> Result<(), TrainError> {
        let t = &self.train;
        let bad = |m: String| Err(TrainError::Config(m));
        for (name, v) in [
            ("batch_size", t.batch_size),
            ("gradient_accumulation_steps", t.gradient_accumulation_steps),
            ("max_iters", t.max_iters),
            ("eval_interval", t.eval_interval),
            ("eval_iters", t.eval_iters),
            ("log_interval", t.log_interval),
            ("keep_checkpoints", t.keep_checkpoints),
        ] {
            if v == 0 {
                return bad(format!("{name} must be > 0"));
            }
        }
        // Sizes that are multiplied together must not overflow (an evaluation draws
        // eval_iters × batch_size chunks of block_size + 1 tokens).
        let too_big = || {
            TrainError::Config(format!(
                "eval_iters × batch_size × block_size ({} × {} × {}) is too large to count",
                t.eval_iters, t.batch_size, self.model.block_size
            ))
        };
        t.eval_iters
            .checked_mul(t.batch_size)
            .and_then(|n| n.checked_mul(self.model.block_size + 1))
            .ok_or_else(too_big)?;
        t.batch_size
            .checked_mul(t.gradient_accumulation_steps)
            .and_then(|n| n.checked_mul(self.model.block_size + 1))
            .ok_or_else(|| {
                TrainError::Config(format!(
                    "batch_size × gradient_accumulation_steps × block_size ({} × {} × {}) is too large to count",
                    t.batch_size, t.gradient_accumulation_steps, self.model.block_size
                ))
            })?;
        if t.max_iters.checked_add(t.eval_interval).is_none() {
            return bad(format!("max_iters {} is too large", t.max_iters));
        }
        if t.learning_rate <= 0.0 {
            return bad(format!(
                "learning_rate must be > 0, got {}",
                t.learning_rate
            ));
        }
        if t.decay_lr && !(0.0..=t.learning_rate).contains(&t.min_lr) {
            return bad(format!(
                "min_lr must be in [0, learning_rate], got {}",
                t.min_lr
            ));
        }
        if !(0.0..1.0).contains(&t.beta1) || !(0.0..1.0).contains(&t.beta2) {
            return bad("beta1 and beta2 must be in [0, 1)".into());
        }
        if t.weight_decay < 0.0 || t.grad_clip < 0.0 || t.eps <= 0.0 {
            return bad("weight_decay and grad_clip must be ≥ 0, eps > 0".into());
        }
        if t.decay_lr && t.lr_schedule == LrSchedule::Wsd {
            let decay = self.lr_decay_iters();
            if t.warmdown_iters == 0 || t.warmup_iters + t.warmdown_iters > decay {
                return bad(format!(
                    "lr_schedule = \"wsd\" needs warmdown_iters > 0 and warmup_iters + warmdown_iters ≤ lr_decay_iters ({decay}), got warmup_iters {} and warmdown_iters {}",
                    t.warmup_iters, t.warmdown_iters
                ));
            }
        }
        self.validate_muon()?;
        if let Some(task) = self.task() {
            task.validate()?;
            let needed = task.example_len() - 1;
            if self.model.block_size < needed {
                return bad(format!(
                    "block_size {} is too short for [task]: its longest problem and answer take {} characters, so block_size must be at least {needed}",
                    self.model.block_size,
                    task.example_len()
                ));
            }
        }
        self.rl.validate(self.task())?;
        let mut model = self.model.clone();
        model.vocab_size = model.vocab_size.max(1); // not known until the text is read
        model
            .validate()
            .map_err(|e| TrainError::Config(e.to_string()))
    }

    /// Muon's settings (checked whichever optimizer runs, so a resumed run cannot switch
    /// to a bad one).
    fn validate_muon(&self) -> Result<(), TrainError> {
        let t = &self.train;
        let bad = |m: String| Err(TrainError::Config(m));
        if t.muon_lr <= 0.0 {
            return bad(format!("muon_lr must be > 0, got {}", t.muon_lr));
        }
        if !(0.0..1.0).contains(&t.muon_momentum) {
            return bad(format!(
                "muon_momentum must be in [0, 1), got {}",
                t.muon_momentum
            ));
        }
        if !(1..=100).contains(&t.muon_ns_steps) {
            return bad(format!(
                "muon_ns_steps must be in 1..=100, got {}",
                t.muon_ns_steps
            ));
        }
        if !(0.0..1.0).contains(&(t.muon_lr * t.muon_weight_decay)) {
            return bad(format!(
                "muon_weight_decay must be ≥ 0 and muon_lr × muon_weight_decay < 1 (each step multiplies the matrices by 1 − their product), got {} × {}",
                t.muon_lr, t.muon_weight_decay
            ));
        }
        if t.optimizer == OptimizerKind::Muon && self.model.model == model::ModelKind::Bigram {
            return bad(
                "optimizer = \"muon\" updates the hidden matrices of a GPT's blocks; the bigram model has none: use optimizer = \"adamw\"".into(),
            );
        }
        Ok(())
    }

    /// The arithmetic task, when the run trains on generated problems.
    pub fn task(&self) -> Option<&TaskConfig> {
        (self.train.dataset == Dataset::Arithmetic).then_some(&self.task)
    }

    /// The cosine's length: `lr_decay_iters`, or `max_iters` when 0.
    pub fn lr_decay_iters(&self) -> usize {
        match self.train.lr_decay_iters {
            0 => self.train.max_iters,
            n => n,
        }
    }
}

/// A config file's text; a device or a huge file is refused before it is read.
fn read_config_file(p: &Path) -> Result<String, TrainError> {
    if std::fs::metadata(p).is_ok() {
        data::source::check_regular_file(p, MAX_CONFIG_BYTES)
            .map_err(|e| TrainError::Config(e.to_string()))?;
    }
    std::fs::read_to_string(p)
        .map_err(|e| TrainError::Config(format!("cannot read config {}: {e}", p.display())))
}

/// The one check of every number in a config, before any is used: TOML writes `inf` and
/// `nan`, and a recipe with either trains into a NaN loss (`learning_rate = inf`) or
/// silently stops doing its job (`grad_clip = nan` never clips). The ranges of each
/// setting are checked by `validate`, on finite numbers.
fn finite(table: &toml::Table, prefix: &str) -> Result<(), TrainError> {
    let refuse = |name: &str, x: f64| {
        Err(TrainError::Config(format!(
            "{name} must be a finite number, got {x}"
        )))
    };
    for (key, value) in table {
        let name = format!("{prefix}{key}");
        match value {
            toml::Value::Float(x) if !x.is_finite() => return refuse(&name, *x),
            toml::Value::Table(inner) => finite(inner, &format!("{name}."))?,
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Float(x) = item
                        && !x.is_finite()
                    {
                        return refuse(&name, *x);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Applies one `key=value` override. The value is parsed as TOML (`3e-4`, `true`,
/// `"text"`), falling back to a plain string so `dataset=file:path/to/input.txt` works.
fn set(table: &mut toml::Table, kv: &str) -> Result<(), TrainError> {
    let (key, raw) = kv
        .split_once('=')
        .ok_or_else(|| TrainError::Config(format!("--set expects key=value, got {kv:?}")))?;
    let key = key.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut defaults = toml::Table::try_from(RunConfig::default()).expect("defaults serialise");
    legacy::add_keys(&mut defaults);
    let (section, name) = match key.split_once('.') {
        Some((s, n)) => (s.to_string(), n.to_string()),
        None => (section_of(&defaults, key)?, key.to_string()),
    };
    let default = defaults
        .get(&section)
        .and_then(|s| s.as_table())
        .and_then(|s| s.get(&name))
        .ok_or_else(|| TrainError::Config(format!("unknown key {key:?} in --set {kv}")))?;
    let value = coerce(value, default, raw).ok_or_else(|| {
        TrainError::Config(format!("--set {kv}: {key} expects {}", default.type_str()))
    })?;
    let entry = table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let section = entry
        .as_table_mut()
        .ok_or_else(|| TrainError::Config(format!("{key:?} is not inside a table")))?;
    section.insert(name, value);
    Ok(())
}

/// Gives an override the type of the key's default: an integer where a float is expected
/// becomes a float, anything where a string is expected is the raw text; other
/// mismatches are refused (`None`).
fn coerce(value: toml::Value, default: &toml::Value, raw: &str) -> Option<toml::Value> {
    use toml::Value::{Float, Integer, String};
    match (default, value) {
        (String(_), String(s)) => Some(String(s)),
        (String(_), _) => Some(String(raw.trim().to_string())),
        (Float(_), Integer(i)) => Some(Float(i as f64)),
        (d, v) if d.same_type(&v) => Some(v),
        _ => None,
    }
}

/// The section (`model`, `train` or `task`) of `defaults` that holds a bare key.
fn section_of(defaults: &toml::Table, key: &str) -> Result<String, TrainError> {
    defaults
        .iter()
        .find(|(_, v)| v.as_table().is_some_and(|t| t.contains_key(key)))
        .map(|(s, _)| s.clone())
        .ok_or_else(|| TrainError::Config(format!("unknown key {key:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(overrides: &[&str]) -> Result<RunConfig, TrainError> {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        RunConfig::load(None, &o)
    }

    #[test]
    fn overrides_bare_and_dotted_keys() {
        let c = load(&[
            "max_iters=7",
            "model.n_layer=2",
            "learning_rate=1e-3",
            "dataset=file:a/b.txt",
        ])
        .unwrap();
        assert_eq!(c.train.max_iters, 7);
        assert_eq!(c.model.n_layer, 2);
        assert_eq!(c.train.learning_rate, 1e-3);
        assert_eq!(c.train.dataset, Dataset::File("a/b.txt".into()));
    }

    #[test]
    fn bad_overrides_are_clear_errors() {
        let msg = |o: &[&str]| load(o).unwrap_err().to_string();
        assert!(msg(&["max_itres=7"]).contains("unknown key \"max_itres\""));
        assert!(msg(&["max_iters"]).contains("key=value"));
        assert!(msg(&["max_iters=lots"]).contains("max_iters"));
        assert!(msg(&["n_head=5"]).contains("divisible by n_head"));
        assert!(msg(&["learning_rate=0"]).contains("learning_rate must be > 0"));
        assert!(msg(&["dropout=1.5"]).contains("dropout"));
        assert!(msg(&["max_iters=0"]).contains("max_iters must be > 0"));
        assert!(msg(&["log_interval=0"]).contains("log_interval must be > 0"));
        assert!(msg(&["eval_iters=9223372036854775807"]).contains("too large to count"));
        assert!(msg(&["dataset=a/b.txt"]).contains("file:a/b.txt"));
        assert!(msg(&["optimizer=sgd"]).contains("unknown variant"));
        assert!(msg(&["muon_lr=0"]).contains("muon_lr must be > 0"));
        assert!(msg(&["muon_momentum=1"]).contains("muon_momentum must be in [0, 1)"));
        assert!(msg(&["muon_ns_steps=0"]).contains("muon_ns_steps"));
        assert!(msg(&["muon_weight_decay=-1"]).contains("muon_weight_decay"));
        assert!(msg(&["muon_weight_decay=50"]).contains("muon_lr × muon_weight_decay"));
        let bigram = msg(&["optimizer=muon", "model=bigram"]);
        assert!(bigram.contains("bigram model has none"), "{bigram}");
        let wsd = msg(&["decay_lr=true", "lr_schedule=wsd"]);
        assert!(wsd.contains("warmdown_iters > 0"), "{wsd}");
        let c = load(&["optimizer=muon", "muon_lr=0.05", "lr_schedule=wsd"]).unwrap();
        assert_eq!(c.train.optimizer, OptimizerKind::Muon);
        assert_eq!(
            (c.train.muon_lr, c.train.lr_schedule),
            (0.05, LrSchedule::Wsd)
        );
    }

    #[test]
    fn unknown_keys_in_files_are_rejected() {
        let dir = std::env::temp_dir().join(format!("burngpt-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.toml");
        std::fs::write(&path, "[train]\nmax_iter = 5\n").unwrap();
        let msg = RunConfig::load(Some(&path), &[]).unwrap_err().to_string();
        assert!(msg.contains("max_iter"), "{msg}");
        std::fs::write(&path, "[train]\nmax_iters = \"five\"\n").unwrap();
        let msg = RunConfig::load(Some(&path), &[]).unwrap_err().to_string();
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn presets_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
        for name in [
            "bigram.toml",
            "shakespeare_char.toml",
            "shakespeare_char_cpu.toml",
            "shakespeare_char_speedrun.toml",
            "addition.toml",
            "calculator.toml",
            "pretrain_docs.toml",
            "finetune_shakespeare.toml",
        ] {
            RunConfig::load(Some(&dir.join(name)), &[]).unwrap();
        }
    }

    #[test]
    fn arithmetic_task_keys_and_checks() {
        let c = load(&[
            "dataset=arithmetic",
            "block_size=17",
            "n_digits=2",
            "ops=[\"+\", \"*\"]",
            "task.trace=true",
        ])
        .unwrap();
        let task = c.task().unwrap();
        assert_eq!(task.n_digits, 2);
        assert_eq!(task.ops, [data::Op::Add, data::Op::Mul]);
        assert!(task.trace);
        assert!(
            load(&[]).unwrap().task().is_none(),
            "text runs have no task"
        );
        let msg = |o: &[&str]| load(o).unwrap_err().to_string();
        let short = msg(&["dataset=arithmetic", "block_size=10"]);
        assert!(short.contains("block_size must be at least 11"), "{short}");
        let digits = msg(&["dataset=arithmetic", "block_size=64", "n_digits=0"]);
        assert!(digits.contains("n_digits"), "{digits}");
        let op = msg(&["ops=[\"%\"]"]);
        assert!(op.contains("unknown variant"), "{op}");
    }

    #[test]
    fn accumulation_and_prepared_keys() {
        let c = load(&["gradient_accumulation_steps=4", "dataset=prepared:data/x"]).unwrap();
        assert_eq!(c.train.gradient_accumulation_steps, 4);
        assert_eq!(c.train.dataset, Dataset::Prepared("data/x".into()));
        let msg = |o: &[&str]| load(o).unwrap_err().to_string();
        assert!(msg(&["gradient_accumulation_steps=0"]).contains("must be > 0"));
        assert!(msg(&["dataset=prepared:"]).contains("names no directory"));
    }

    #[test]
    fn round_trips_through_toml() {
        let c = load(&["n_layer=3"]).unwrap();
        assert_eq!(RunConfig::from_toml(&c.to_toml()).unwrap(), c);
    }

    // Fuzzing the parser: arbitrary files and overrides give a config or an error,
    // never a panic.
    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*", sets in proptest::collection::vec("\\PC*", 0..4)) {
            let _ = RunConfig::parse(&text, "fuzz", &sets);
        }

        #[test]
        fn toml_shaped_input_never_panics(
            lines in proptest::collection::vec("(\\[(model|train|x)\\])|([a-z_]{1,14} = [-+0-9a-z.e\"]{0,10})", 0..12),
            sets in proptest::collection::vec("[a-z_.]{1,20}=[-+0-9a-z.e\"]{0,10}", 0..4),
        ) {
            let _ = RunConfig::parse(&lines.join("\n"), "fuzz", &sets);
        }
    }
}
