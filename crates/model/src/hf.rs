//! Hugging Face GPT-2 checkpoints in and out: a directory holding `config.json` and
//! `model.safetensors`, as `transformers`' `GPT2LMHeadModel.save_pretrained` writes it.
//!
//! GPT-2 is this crate's [`Gpt`] with its switches on (`bias`, `qkv_bias`, `tie_weights`,
//! `activation = "gelu_tanh"`), so import is a renaming of tensors, done by Burn's own
//! safetensors store (`burn::store`) with key remapping:
//!
//! | Hugging Face                      | here                           |
//! |-----------------------------------|--------------------------------|
//! | `[transformer.]wte.weight`, `wpe` | `wte.weight`, `wpe.weight`     |
//! | `[transformer.]h.N.…`             | `blocks.N.…`                   |
//! | `ln_1/ln_2/ln_f.weight`, `.bias`  | `….gamma`, `….beta`            |
//! | `attn.c_attn`, `attn.c_proj`, `mlp.c_fc`, `mlp.c_proj` | same names |
//! | `lm_head.weight` (untied only)    | `lm_head.weight`, transposed   |
//!
//! GPT-2's `Conv1D` layers store their weights as (in, out), which is Burn's `Linear`
//! layout already; only the untied `lm_head` (a PyTorch `nn.Linear`, (out, in)) is
//! transposed. The published checkpoints also hold `h.N.attn.bias` (and in older files
//! `attn.masked_bias`): causal-mask buffers, not weights, which are skipped. Files written
//! by `transformers` itself prefix every key with `transformer.`; both layouts load.
//!
//! Export writes the same layout back. Everything a [`Gpt`] can be is expressible in
//! GPT-2's architecture except a separate `lm_head` with a bias (`bias = true` with
//! `tie_weights = false`, the lecture's head): GPT-2's head has none. Biases switched off
//! (`bias = false`, `qkv_bias = false`) are written as zeros, which computes the same.

use crate::{Activation, Gpt, GptConfig, ModelError, ModelKind, SWITCHES};
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{ModuleAdapter, ModuleSnapshot, SafetensorsStore, TensorSnapshot};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The weights file of a Hugging Face model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Its config.
pub const CONFIG_FILE: &str = "config.json";

/// What can go wrong reading a Hugging Face GPT-2 directory or making one's files.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("cannot read {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path} is not a GPT-2 config.json: {reason}")]
    Config { path: String, reason: String },
    #[error("{path}: {reason}")]
    Weights { path: String, reason: String },
    #[error("this model cannot be written as GPT-2: {0}")]
    NotExportable(String),
    #[error(transparent)]
    Model(#[from] ModelError),
}

pub type Result<T> = std::result::Result<T, HfError>;

/// The fields of a GPT-2 `config.json` this crate reads and writes. Others (task heads,
/// generation defaults) are ignored on import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HfGpt2Config {
    #[serde(default = "gpt2_model_type")]
    pub model_type: String,
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// The MLP's width; `null` means 4 × n_embd.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "gelu_new")]
    pub activation_function: String,
    #[serde(default = "eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub add_cross_attention: bool,
}

fn gpt2_model_type() -> String {
    "gpt2".into()
}
fn gelu_new() -> String {
    "gelu_new".into()
}
fn eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}

impl HfGpt2Config {
    /// The published checkpoints' shapes (`gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl`),
    /// as nanoGPT's `from_pretrained` hard-codes them.
    pub fn named(name: &str) -> Option<Self> {
        let (n_layer, n_head, n_embd) = match name {
            "gpt2" => (12, 12, 768),         // 124M
            "gpt2-medium" => (24, 16, 1024), // 350M
            "gpt2-large" => (36, 20, 1280),  // 774M
            "gpt2-xl" => (48, 25, 1600),     // 1558M
            _ => return None,
        };
        Some(Self {
            model_type: gpt2_model_type(),
            vocab_size: 50257,
            n_positions: 1024,
            n_embd,
            n_layer,
            n_head,
            n_inner: None,
            activation_function: gelu_new(),
            layer_norm_epsilon: 1e-5,
            tie_word_embeddings: true,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            add_cross_attention: false,
        })
    }

    /// This crate's config for the same network: GPT-2's switches on, no dropout (a run's
    /// config sets its own).
    pub fn to_gpt_config(&self) -> std::result::Result<GptConfig, String> {
        if self.model_type != "gpt2" {
            return Err(format!(
                "model_type is {:?}; only \"gpt2\" is supported",
                self.model_type
            ));
        }
        let activation = Activation::from_hf_name(&self.activation_function).ok_or_else(|| {
            format!(
                "activation_function {:?} is not supported (relu, gelu, gelu_new are)",
                self.activation_function
            )
        })?;
        if let Some(n) = self.n_inner.filter(|&n| n != 4 * self.n_embd) {
            return Err(format!(
                "n_inner {n} is not 4 × n_embd ({}); only GPT-2's 4× MLP is supported",
                4 * self.n_embd
            ));
        }
        if !self.scale_attn_weights || self.scale_attn_by_inverse_layer_idx {
            return Err("only attention scaled by 1/sqrt(head_dim) is supported".into());
        }
        if self.add_cross_attention {
            return Err("cross-attention is not supported".into());
        }
        let config = GptConfig {
            model: ModelKind::Gpt,
            vocab_size: self.vocab_size,
            block_size: self.n_positions,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_embd: self.n_embd,
            dropout: 0.0,
            bias: true,
            qkv_bias: true,
            tie_weights: self.tie_word_embeddings,
            activation,
            layer_norm_eps: self.layer_norm_epsilon,
            scaled_init: true,
            ..GptConfig::default()
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// The GPT-2 config of `config`, or why GPT-2 cannot express it (naming the switch).
    pub fn from_gpt_config(config: &GptConfig) -> std::result::Result<Self, HfError> {
        exportable(config)?;
        let activation = config.activation.hf_name().expect("exportable");
        Ok(Self {
            model_type: gpt2_model_type(),
            vocab_size: config.vocab_size,
            n_positions: config.block_size,
            n_embd: config.n_embd,
            n_layer: config.n_layer,
            n_head: config.n_head,
            n_inner: None,
            activation_function: activation.into(),
            layer_norm_epsilon: config.layer_norm_eps,
            tie_word_embeddings: config.tie_weights,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            add_cross_attention: false,
        })
    }

    /// The whole `config.json` `transformers` expects, with `extra` (e.g. token ids)
    /// merged in.
    pub fn to_json(&self, dropout: f64, extra: serde_json::Value) -> serde_json::Value {
        let mut json = serde_json::json!({
            "architectures": ["GPT2LMHeadModel"],
            "n_ctx": self.n_positions,
            "resid_pdrop": dropout,
            "embd_pdrop": dropout,
            "attn_pdrop": dropout,
            "initializer_range": 0.02,
            "reorder_and_upcast_attn": false,
            "use_cache": true,
            "torch_dtype": "float32",
        });
        let map = json.as_object_mut().expect("an object");
        if let serde_json::Value::Object(ours) =
            serde_json::to_value(self).expect("the config serialises")
        {
            map.extend(ours);
        }
        if let serde_json::Value::Object(extra) = extra {
            map.extend(extra);
        }
        json
    }
}

/// Refuses a config GPT-2's architecture cannot express, naming the switch.
pub fn exportable(config: &GptConfig) -> std::result::Result<(), HfError> {
    if config.model != ModelKind::Gpt {
        return Err(HfError::NotExportable(
            "model = \"bigram\": GPT-2 is a transformer; only model = \"gpt\" exports".into(),
        ));
    }
    if let Some(switch) = SWITCHES.iter().find(|s| (s.is_on)(config)) {
        return Err(HfError::NotExportable(format!(
            "GPT-2's architecture cannot express {}: {}",
            switch.setting(config),
            switch.not_in_gpt2
        )));
    }
    if config.bias && !config.tie_weights {
        return Err(HfError::NotExportable(
            "its lm_head has a bias (bias = true with tie_weights = false, the lecture's head), \
             and GPT-2's lm_head has none: train with tie_weights = true or bias = false"
                .into(),
        ));
    }
    config.validate()?;
    Ok(())
}

/// Reads `dir/config.json`.
pub fn read_config(dir: &Path) -> Result<HfGpt2Config> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|err| HfError::Read {
        path: path.display().to_string(),
        err,
    })?;
    serde_json::from_str(&text).map_err(|e| HfError::Config {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Loads the GPT-2 in `dir` (`config.json` + `model.safetensors`, either key layout),
/// returning it with its config. Every weight of the model must be in the file, and the
/// file may hold nothing else but GPT-2's causal-mask buffers.
pub fn load_gpt2<B: Backend>(dir: &Path, device: &B::Device) -> Result<(Gpt<B>, GptConfig)> {
    let hf = read_config(dir)?;
    let config = hf.to_gpt_config().map_err(|reason| HfError::Config {
        path: dir.join(CONFIG_FILE).display().to_string(),
        reason,
    })?;
    let model = load_weights(&config, &dir.join(WEIGHTS_FILE), device)?;
    Ok((model, config))
}

/// The GPT-2 in `dir` as a model of shape `shape`, which must be the checkpoint's
/// except for `dropout` (a training choice) and a `block_size` that may be smaller (the
/// position table is cropped, as nanoGPT's `from_pretrained` + `crop_block_size`).
pub fn load_gpt2_as<B: Backend>(
    dir: &Path,
    shape: &GptConfig,
    device: &B::Device,
) -> Result<Gpt<B>> {
    let theirs = read_config(dir)?
        .to_gpt_config()
        .map_err(|reason| HfError::Config {
            path: dir.join(CONFIG_FILE).display().to_string(),
            reason,
        })?;
    let differs = architecture_differences(&theirs, shape);
    if !differs.is_empty() {
        return Err(HfError::Config {
            path: dir.join(CONFIG_FILE).display().to_string(),
            reason: format!(
                "the checkpoint's architecture differs from the run's: {}",
                differs.join(", ")
            ),
        });
    }
    let full = GptConfig {
        dropout: shape.dropout,
        scaled_init: shape.scaled_init,
        ..theirs.clone()
    };
    let model = load_weights(&full, &dir.join(WEIGHTS_FILE), device)?;
    if shape.block_size < theirs.block_size {
        return Ok(model.crop_block_size(shape.block_size)?);
    }
    Ok(model)
}

/// What keeps a model of shape `ours` from starting from a checkpoint of shape `theirs`
/// ("key = theirs there, ours here"); dropout and the init never do, and a smaller
/// block_size crops.
pub fn architecture_differences(theirs: &GptConfig, ours: &GptConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |key: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{key} = {a} there, {b} here"));
        }
    };
    check(
        "model",
        format!("{:?}", theirs.model),
        format!("{:?}", ours.model),
    );
    check(
        "vocab_size",
        theirs.vocab_size.to_string(),
        ours.vocab_size.to_string(),
    );
    check(
        "n_layer",
        theirs.n_layer.to_string(),
        ours.n_layer.to_string(),
    );
    check("n_head", theirs.n_head.to_string(), ours.n_head.to_string());
    check("n_embd", theirs.n_embd.to_string(), ours.n_embd.to_string());
    check("bias", theirs.bias.to_string(), ours.bias.to_string());
    check(
        "qkv_bias",
        theirs.qkv_bias.to_string(),
        ours.qkv_bias.to_string(),
    );
    check(
        "tie_weights",
        theirs.tie_weights.to_string(),
        ours.tie_weights.to_string(),
    );
    check(
        "activation",
        format!("{:?}", theirs.activation),
        format!("{:?}", ours.activation),
    );
    check(
        "layer_norm_eps",
        theirs.layer_norm_eps.to_string(),
        ours.layer_norm_eps.to_string(),
    );
    if ours.block_size > theirs.block_size {
        out.push(format!(
            "block_size = {} there, {} here (a checkpoint's block_size can only shrink)",
            theirs.block_size, ours.block_size
        ));
    }
    out
}

/// Whether `dir` is a Hugging Face model directory (`config.json` + `model.safetensors`).
pub fn is_hf_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file() && dir.join(WEIGHTS_FILE).is_file()
}

/// A [`Gpt`] of shape `config` with the weights of the GPT-2 safetensors file `path`.
pub fn load_weights<B: Backend>(
    config: &GptConfig,
    path: &Path,
    device: &B::Device,
) -> Result<Gpt<B>> {
    let bad = |reason: String| HfError::Weights {
        path: path.display().to_string(),
        reason,
    };
    // The store maps the file; make a missing file an error of ours, not a panic of its.
    std::fs::metadata(path).map_err(|err| HfError::Read {
        path: path.display().to_string(),
        err,
    })?;
    let mut model = Gpt::<B>::new(config, device)?;
    // GPT-2's names have no norm or MLP kind in them: `ln_1.weight`, not
    // `ln_1.LayerNorm.weight` (see `crate::norm::NormLayer`, `crate::mlp::Up`).
    let mut store = SafetensorsStore::from_file(PathBuf::from(path))
        .skip_enum_variants(true)
        .with_key_remapping(r"^transformer\.", "")
        .with_key_remapping(r"^h\.([0-9]+)\.", "blocks.$1.")
        .with_key_remapping(r"(ln_[12f])\.weight$", "$1.gamma")
        .with_key_remapping(r"(ln_[12f])\.bias$", "$1.beta")
        .with_from_adapter(Gpt2Adapter)
        .allow_partial(true)
        .validate(false);
    let result = model
        .load_from(&mut store)
        .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(bad(format!(
            "does not fit the config.json beside it: {}",
            errors.join("; ")
        )));
    }
    // An untied checkpoint's lm_head has no bias; ours (bias = true) starts at zero.
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(path, _)| path.as_str())
        .filter(|p| *p != "lm_head.bias")
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!("lacks {}", missing.join(", "))));
    }
    let unused: Vec<&str> = result
        .unused
        .iter()
        .map(String::as_str)
        .filter(|k| !(k.ends_with(".attn.bias") || k.ends_with(".attn.masked_bias")))
        // Some files store the tied head too: it is wte again.
        .filter(|k| !(config.tie_weights && *k == "lm_head.weight"))
        .collect();
    if !unused.is_empty() {
        return Err(bad(format!(
            "holds tensors GPT-2 does not have: {}",
            unused.join(", ")
        )));
    }
    Ok(model)
}

/// `model` (of shape `config`) as the two files of a Hugging Face GPT-2 directory, by
/// name: `config.json` (with `extra` merged in, e.g. token ids) and `model.safetensors`
/// (keys without the `transformer.` prefix, as the published checkpoints; f32). The
/// caller writes them (atomically: the cli's `gpt export`).
pub fn gpt2_files<B: Backend>(
    model: &Gpt<B>,
    config: &GptConfig,
    extra: serde_json::Value,
) -> Result<[(&'static str, Vec<u8>); 2]> {
    let hf = HfGpt2Config::from_gpt_config(config)?;
    // GPT-2 has every bias: a model without some gets them as zeros. Its weights go into
    // a twin with all biases (freshly zero), through an in-memory store.
    let full = GptConfig {
        bias: true,
        qkv_bias: true,
        ..config.clone()
    };
    let device = model.devices().into_iter().next().unwrap_or_default();
    let twin = if full == *config {
        model.clone()
    } else {
        let mut memory = SafetensorsStore::from_bytes(None);
        model
            .save_into(&mut memory)
            .map_err(|e| HfError::NotExportable(e.to_string()))?;
        let mut memory = memory.allow_partial(true);
        let mut twin = Gpt::<B>::new(&full, &device)?;
        let result = twin
            .load_from(&mut memory)
            .map_err(|e| HfError::NotExportable(e.to_string()))?;
        let lost = result
            .missing
            .iter()
            .map(|(p, _)| p)
            .filter(|p| !(p.ends_with(".bias") || p.ends_with(".beta")))
            .chain(&result.unused)
            .next();
        if let Some(p) = lost {
            return Err(HfError::NotExportable(format!("{p} did not carry over")));
        }
        twin
    };
    let mut store = SafetensorsStore::from_bytes(None)
        .skip_enum_variants(true)
        .with_key_remapping(r"^blocks\.([0-9]+)\.", "h.$1.")
        .with_key_remapping(r"(ln_[12f])\.gamma$", "$1.weight")
        .with_key_remapping(r"(ln_[12f])\.beta$", "$1.bias")
        .with_to_adapter(Gpt2Adapter)
        // `transformers` accepts only PyTorch-style metadata.
        .metadata("format", "pt");
    let not_written = |e: &dyn std::fmt::Display| HfError::NotExportable(e.to_string());
    twin.save_into(&mut store).map_err(|e| not_written(&e))?;
    let weights = store.get_bytes().map_err(|e| not_written(&e))?;
    let json = serde_json::to_string_pretty(&hf.to_json(config.dropout, extra))
        .expect("the config serialises");
    // The weights first: a failure to write them leaves the old config in place too.
    Ok([
        (WEIGHTS_FILE, weights),
        (CONFIG_FILE, (json + "\n").into_bytes()),
    ])
}

/// Between GPT-2's tensors and ours, both ways: the untied `lm_head` is (out, in) in
/// PyTorch and (in, out) here, so it is transposed; a half-precision file is read as f32.
#[derive(Debug, Clone)]
struct Gpt2Adapter;

impl ModuleAdapter for Gpt2Adapter {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let transpose = snapshot.full_path() == "lm_head.weight" && snapshot.shape.len() == 2;
        let widen = matches!(snapshot.dtype, DType::F16 | DType::BF16);
        if !transpose && !widen {
            return snapshot.clone();
        }
        let data_fn = snapshot.clone_data_fn();
        let mut shape = snapshot.shape.clone();
        if transpose {
            shape = [shape[1], shape[0]].into();
        }
        let new_shape = shape.clone();
        let adapted = Rc::new(move || {
            let data = data_fn()?.convert_dtype(DType::F32);
            if !transpose {
                return Ok(data);
            }
            let (rows, cols) = (data.shape[0], data.shape[1]);
            let values = data.to_vec::<f32>().expect("converted to f32");
            let mut out = vec![0f32; values.len()];
            for r in 0..rows {
                for c in 0..cols {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
            Ok(TensorData::new(out, new_shape.clone()))
        });
        TensorSnapshot::from_closure(
            adapted,
            if widen { DType::F32 } else { snapshot.dtype },
            shape,
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// Where the tests find the tiny GPT-2 fixture (a random GPT-2 in Hugging Face's format with
/// the logits `transformers` computed): `$BURNGPT_GPT2_FIXTURE`, else the shared copy beside
/// the checkout (`../shared/fixtures/gpt2-tiny`, what CI has), else the byte-identical copy
/// committed under `crates/model/tests/fixtures/` so a clone's tests run too. A missing
/// fixture is the caller's assertion failure, never a skip.
#[doc(hidden)]
pub fn gpt2_fixture_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(dir) = std::env::var_os("BURNGPT_GPT2_FIXTURE") {
        return PathBuf::from(dir);
    }
    let shared = manifest.join("../../../shared/fixtures/gpt2-tiny");
    if shared.is_dir() {
        shared
    } else {
        manifest.join("tests/fixtures/gpt2-tiny")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestBackend as B, random_ids, small_config};
    use burn_store::ModuleStore;

    /// The shared fixture (`BURNGPT_GPT2_FIXTURE` overrides it): a tiny random GPT-2 in
    /// Hugging Face's format, with the logits `transformers` computed for its input ids.
    fn fixture() -> PathBuf {
        let dir = gpt2_fixture_dir();
        assert!(
            dir.join(WEIGHTS_FILE).is_file() && dir.join("expected.safetensors").is_file(),
            "the GPT-2 fixture is missing: {} (set BURNGPT_GPT2_FIXTURE to its directory)",
            dir.display()
        );
        dir
    }

    /// The fixture's `input_ids` (B, T) and Hugging Face's `logits` (B, T, V).
    fn expected(dir: &Path) -> (Tensor<B, 2, Int>, TensorData) {
        let mut store = SafetensorsStore::from_file(dir.join("expected.safetensors"));
        let mut read = |name: &str| {
            store
                .get_snapshot(name)
                .unwrap()
                .unwrap_or_else(|| panic!("expected.safetensors has no {name}"))
                .to_data()
                .unwrap()
        };
        let ids = read("input_ids").convert::<i64>();
        let logits = read("logits");
        let device = Default::default();
        let ids = Tensor::<B, 2, Int>::from_data(ids.convert::<i32>(), &device);
        (ids, logits)
    }

    fn max_abs_diff(a: &TensorData, b: &TensorData) -> f32 {
        assert_eq!(a.shape, b.shape);
        let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn hf_gpt2_logits_match() {
        let dir = fixture();
        let device = Default::default();
        let (model, config) = load_gpt2::<B>(&dir, &device).unwrap();
        assert!(config.tie_weights && config.qkv_bias && config.bias);
        assert_eq!(config.activation, Activation::GeluTanh);
        let (ids, expected) = expected(&dir);
        let logits = model.forward(ids.clone()).unwrap().into_data();
        let diff = max_abs_diff(&logits, &expected);
        assert!(diff <= 1e-4, "max |ours - Hugging Face's| = {diff}");
        // The KV cache, one token at a time, gives the same logits.
        let [b, t] = ids.dims();
        let mut cache = crate::KvCache::new();
        let steps: Vec<Tensor<B, 3>> = (0..t)
            .map(|i| {
                model
                    .forward_cached(ids.clone().slice([0..b, i..i + 1]), &mut cache)
                    .unwrap()
            })
            .collect();
        let cached = Tensor::cat(steps, 1).into_data();
        let diff = max_abs_diff(&cached, &expected);
        assert!(diff <= 1e-4, "cached: max |ours - Hugging Face's| = {diff}");
    }

    /// The published checkpoints' layout: no `transformer.` prefix, and `attn.bias` mask
    /// buffers beside the weights. Written here from the fixture with the safetensors
    /// crate, then loaded: the same logits.
    #[test]
    fn published_layout_with_mask_buffers_loads() {
        let dir = fixture();
        let out = std::env::temp_dir().join(format!("burngpt-hf-published-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::copy(dir.join(CONFIG_FILE), out.join(CONFIG_FILE)).unwrap();
        let bytes = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let n_positions = read_config(&dir).unwrap().n_positions;
        let mask: Vec<u8> = (0..n_positions * n_positions)
            .flat_map(|i| [(i % n_positions <= i / n_positions) as u8; 4])
            .collect();
        let mut tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = file
            .tensors()
            .into_iter()
            .map(|(k, v)| (k.trim_start_matches("transformer.").to_string(), v))
            .collect();
        for layer in 0..2 {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                vec![1, 1, n_positions, n_positions],
                &mask,
            )
            .unwrap();
            tensors.push((format!("h.{layer}.attn.bias"), view));
        }
        assert!(tensors.iter().all(|(k, _)| !k.starts_with("transformer.")));
        safetensors::serialize_to_file(tensors, None, &out.join(WEIGHTS_FILE)).unwrap();
        let device = Default::default();
        let (model, _) = load_gpt2::<B>(&out, &device).unwrap();
        let (ids, expected) = expected(&dir);
        let diff = max_abs_diff(&model.forward(ids).unwrap().into_data(), &expected);
        assert!(diff <= 1e-4, "{diff}");
        // A tensor GPT-2 does not have is refused, named.
        let bytes = std::fs::read(out.join(WEIGHTS_FILE)).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<_> = file.tensors();
        let extra =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &mask[..4])
                .unwrap();
        tensors.push(("h.0.attn.rotary.weight".into(), extra));
        safetensors::serialize_to_file(tensors, None, &out.join(WEIGHTS_FILE)).unwrap();
        let err = load_gpt2::<B>(&out, &device).unwrap_err().to_string();
        assert!(err.contains("0.attn.rotary.weight"), "{err}");
        let _ = std::fs::remove_dir_all(&out);
    }

    /// A config.json that does not fit the weights, and one GPT-2 cannot be: clear errors.
    #[test]
    fn mismatched_or_unsupported_configs_are_refused() {
        let dir = fixture();
        let out = std::env::temp_dir().join(format!("burngpt-hf-bad-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::copy(dir.join(WEIGHTS_FILE), out.join(WEIGHTS_FILE)).unwrap();
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap()).unwrap();
        json["n_embd"] = 32.into();
        json["n_head"] = 1.into();
        std::fs::write(out.join(CONFIG_FILE), json.to_string()).unwrap();
        let device = Default::default();
        let err = load_gpt2::<B>(&out, &device).unwrap_err().to_string();
        assert!(
            err.contains("does not fit") && err.contains("wte.weight"),
            "{err}"
        );
        json["activation_function"] = "swish".into();
        std::fs::write(out.join(CONFIG_FILE), json.to_string()).unwrap();
        let err = load_gpt2::<B>(&out, &device).unwrap_err().to_string();
        assert!(err.contains("swish"), "{err}");
        std::fs::remove_file(out.join(WEIGHTS_FILE)).unwrap();
        std::fs::copy(dir.join(CONFIG_FILE), out.join(CONFIG_FILE)).unwrap();
        let err = load_gpt2::<B>(&out, &device).unwrap_err().to_string();
        assert!(err.contains("model.safetensors"), "{err}");
        let _ = std::fs::remove_dir_all(&out);
    }

    /// Export then import: bit-identical logits, for GPT-2's own switches, for a model
    /// without biases (written as zeros) and for an untied head (transposed both ways).
    #[test]
    fn export_import_gives_bit_identical_logits() {
        let device = Default::default();
        let base = small_config();
        let configs = [
            HfGpt2Config::named("gpt2")
                .unwrap()
                .to_gpt_config()
                .unwrap(),
            GptConfig {
                bias: false,
                tie_weights: true,
                scaled_init: true,
                activation: Activation::Gelu,
                ..base.clone()
            },
            GptConfig {
                bias: false,
                tie_weights: false,
                layer_norm_eps: 1e-3,
                ..base.clone()
            },
        ];
        for (i, config) in configs.into_iter().enumerate() {
            let config = GptConfig {
                vocab_size: 65,
                block_size: 16,
                n_layer: 2,
                n_head: 4,
                n_embd: 32,
                ..config
            };
            let model = Gpt::<B>::new(&config, &device).unwrap();
            let dir =
                std::env::temp_dir().join(format!("burngpt-hf-rt-{}-{i}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in
                gpt2_files(&model, &config, serde_json::json!({"eos_token_id": null})).unwrap()
            {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
            let (back, back_config) = load_gpt2::<B>(&dir, &device).unwrap();
            assert_eq!(back_config.tie_weights, config.tie_weights);
            assert_eq!(back_config.activation, config.activation);
            assert_eq!(back_config.layer_norm_eps, config.layer_norm_eps);
            let ids = random_ids::<B>([2, 16], 65, 40 + i as u64, &device);
            let ours = model.forward(ids.clone()).unwrap().into_data();
            let theirs = back.forward(ids).unwrap().into_data();
            assert_eq!(
                ours.to_vec::<f32>().unwrap(),
                theirs.to_vec::<f32>().unwrap(),
                "{config:?}"
            );
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap())
                    .unwrap();
            assert_eq!(json["architectures"][0], "GPT2LMHeadModel");
            assert_eq!(json["vocab_size"], 65);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// Loaded for a run with less context: wpe cropped, the logits of the first positions
    /// unchanged; a different architecture is refused, naming the key.
    #[test]
    fn load_as_crops_block_size_and_names_differences() {
        let dir = fixture();
        let device = Default::default();
        let (full, config) = load_gpt2::<B>(&dir, &device).unwrap();
        let shape = GptConfig {
            block_size: 8,
            dropout: 0.1,
            ..config.clone()
        };
        let cropped = load_gpt2_as::<B>(&dir, &shape, &device).unwrap();
        assert_eq!(cropped.block_size(), 8);
        let (ids, _) = expected(&dir);
        let ids = ids.slice([0..2, 0..8]);
        let a = full.forward(ids.clone()).unwrap().into_data();
        let b = cropped.forward(ids).unwrap().into_data();
        assert!(max_abs_diff(&a, &b) == 0.0);
        let wrong = GptConfig {
            n_layer: 3,
            block_size: 64,
            ..config
        };
        let err = load_gpt2_as::<B>(&dir, &wrong, &device)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("n_layer = 2 there, 3 here") && err.contains("block_size"),
            "{err}"
        );
    }

    #[test]
    fn models_gpt2_cannot_express_are_refused_naming_the_switch() {
        let lecture = GptConfig::default();
        let err = exportable(&lecture).unwrap_err().to_string();
        assert!(err.contains("tie_weights") && err.contains("bias"), "{err}");
        let bigram = GptConfig {
            model: ModelKind::Bigram,
            ..GptConfig::default()
        };
        let err = exportable(&bigram).unwrap_err().to_string();
        assert!(err.contains("bigram"), "{err}");
        let tied = GptConfig {
            tie_weights: true,
            ..GptConfig::default()
        };
        assert!(exportable(&tied).is_ok());
        for switch in SWITCHES {
            let mut modern = tied.clone();
            (switch.turn_on)(&mut modern);
            let err = exportable(&modern).unwrap_err().to_string();
            assert!(
                err.contains(&switch.setting(&modern)),
                "{}: {err}",
                switch.key
            );
        }
    }
}
