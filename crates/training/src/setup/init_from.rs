//! `--init-from`: a new run starts from another run's weights, or Hugging Face's GPT-2
//! (fresh optimizer and schedule), as nanoGPT's `init_from`; checked against the new
//! run's architecture and tokenizer, and recorded in `run.json` so that a resume before
//! the first checkpoint starts from the same file.
//!
//! A run on conversations from a base without chat tokens is a chat run of the base: its
//! tokenizer is the base's followed by the chat tokens, and the base's weights grow to
//! that vocabulary when they are loaded ([`model::Gpt::grow_vocab`]).

use crate::run::marker::InitRecord;
use crate::run::{RunDir, RunMarker};
use crate::train::InitFrom;
use crate::{RunConfig, TrainError};
use burn::tensor::backend::AutodiffBackend;
use data::tokenizer::GPT2_VOCAB_SIZE;
use data::{BaseTokenizer, TextTokenizer, Tokenizer};
use model::Model;
use sha2::Digest;
use std::path::{Path, PathBuf};

/// The tokenizer of a chat run that starts from `init`: the base's, with the chat tokens
/// (which a base that has them already keeps).
pub(super) fn chat_tokenizer(init: &InitFrom) -> Result<TextTokenizer, TrainError> {
    let base = if model::hf::is_hf_dir(&init.run) {
        TextTokenizer::gpt2()
    } else {
        RunDir::open(&init.run)?.tokenizer()?
    };
    Ok(base.with_chat())
}

/// The weights at `path` (checked by [`init_weights`]) as a model of `config`: loaded in
/// the shape they were saved in, then grown to this run's vocabulary when it adds the
/// chat tokens.
pub(crate) fn load_init_weights<B: burn::prelude::Backend>(
    path: &Path,
    config: &RunConfig,
    device: &B::Device,
) -> Result<Model<B>, TrainError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let hf = path.extension().is_some_and(|e| e == "safetensors");
    let vocab_size = if hf {
        model::hf::read_config(dir)
            .map_err(|e| TrainError::Config(format!("--init-from {}: {e}", dir.display())))?
            .vocab_size
    } else {
        RunDir::new(dir).config()?.model.vocab_size
    };
    let shape = model::GptConfig {
        vocab_size,
        ..config.model.clone()
    };
    let model = if hf {
        let gpt = model::hf::load_gpt2_as::<B>(dir, &shape, device)
            .map_err(|e| TrainError::Config(format!("--init-from {}: {e}", dir.display())))?;
        Model::Gpt(gpt)
    } else {
        RunDir::new(dir).load_model_file_as::<B>(path, &shape, device)?
    };
    if vocab_size == config.model.vocab_size {
        return Ok(model);
    }
    model
        .grow_vocab(config.model.vocab_size)
        .map_err(|e| TrainError::Config(format!("--init-from {}: {e}", dir.display())))
}

/// The weights file of `--init-from`, checked: the architecture (all of `[model]` but
/// dropout and dtype) and the tokenizer must match, and the file must hold exactly the model's
/// tensors. Returns the file and what run.json records about it.
pub(super) fn init_weights<B: AutodiffBackend>(
    init: &InitFrom,
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    device: &B::Device,
) -> Result<(PathBuf, InitRecord), TrainError> {
    if model::hf::is_hf_dir(&init.run) {
        return init_hf_weights::<B>(init, config, tokenizer, device);
    }
    let source = RunDir::open(&init.run)?;
    let name = source.path().display().to_string();
    let theirs = source.tokenizer()?;
    let grows = !theirs.is_chat() && theirs.clone().with_chat() == *tokenizer;
    if theirs != *tokenizer && !grows {
        let detail = match (theirs.base(), tokenizer.base()) {
            (BaseTokenizer::Char(a), BaseTokenizer::Char(b)) => format!(
                "character vocabularies differ ({} characters there, {} here{})",
                a.vocab_size(),
                b.vocab_size(),
                a.chars()
                    .iter()
                    .find(|c| !b.chars().contains(c))
                    .or_else(|| b.chars().iter().find(|c| !a.chars().contains(c)))
                    .map(|c| format!("; {c:?} is in only one"))
                    .unwrap_or_default()
            ),
            _ => format!(
                "{name} uses {}, this run's data {}",
                theirs.describe(),
                tokenizer.describe()
            ),
        };
        return Err(TrainError::Config(format!(
            "--init-from {name}: the tokenizer differs: {detail}"
        )));
    }
    // The weights are compared in the shape they were saved in: a chat run's vocabulary
    // grows from the base's.
    let shape = model::GptConfig {
        vocab_size: theirs.vocab_size(),
        ..config.model.clone()
    };
    let mut theirs = toml::Table::try_from(&source.config()?.model).expect("configs serialise");
    let mut ours = toml::Table::try_from(&shape).expect("configs serialise");
    // Dropout is a training choice, not part of the weights (nanoGPT overrides it too);
    // so is the dtype of the matmuls: the weights are float32 in every dtype.
    for key in ["dropout", "dtype"] {
        theirs.remove(key);
        ours.remove(key);
    }
    let mut keys: Vec<&String> = theirs.keys().chain(ours.keys()).collect();
    keys.sort();
    keys.dedup();
    let differs: Vec<String> = keys
        .into_iter()
        .filter(|k| theirs.get(*k) != ours.get(*k))
        .map(|k| {
            let show = |v: Option<&toml::Value>| v.map_or("unset".into(), |v| v.to_string());
            format!(
                "{k} = {} there, {} here",
                show(theirs.get(k)),
                show(ours.get(k))
            )
        })
        .collect();
    if !differs.is_empty() {
        return Err(TrainError::Config(format!(
            "--init-from {name}: the architecture differs: {}",
            differs.join(", ")
        )));
    }
    // Arithmetic shares one character set whatever the layout: the layout itself (the
    // operands' width, the trace) must be the base's, or its answers mean something else.
    let base = source.config()?;
    if let (Some(there), Some(here)) = (base.task(), config.task())
        && (there.n_digits, there.trace) != (here.n_digits, here.trace)
    {
        return Err(TrainError::Config(format!(
            "--init-from {name}: the task's layout differs: n_digits = {}, trace = {} there, n_digits = {}, trace = {} here",
            there.n_digits, there.trace, here.n_digits, here.trace
        )));
    }
    let (path, weights) = if init.best {
        (source.best_path(), "best")
    } else {
        (source.model_path(), "final")
    };
    if !path.exists() {
        return Err(TrainError::Run(format!(
            "--init-from {name}: {} does not exist ({})",
            path.display(),
            if init.best {
                "no evaluation has finished"
            } else {
                "the run has not finished or been stopped; --init-weights best takes its best checkpoint"
            }
        )));
    }
    source.load_model_file_as::<B::InnerBackend>(&path, &shape, device)?;
    let bytes = std::fs::read(&path).map_err(|e| crate::run::io(&path, e))?;
    let rows = source.rows()?;
    let iter = if init.best {
        rows.iter()
            .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
            .map_or(0, |r| r.iter)
    } else {
        rows.last().map_or(0, |r| r.iter)
    };
    let record = InitRecord {
        run: std::path::absolute(source.path())
            .unwrap_or_else(|_| source.path().to_path_buf())
            .display()
            .to_string(),
        weights: weights.into(),
        iter,
        sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
    };
    Ok((path, record))
}

/// `--init-from` a Hugging Face GPT-2 directory (`config.json` + `model.safetensors`,
/// which the CLI finds or downloads for `gpt2` … `gpt2-xl`): its tokens must be this run's
/// (GPT-2's BPE for GPT-2's 50,257), its architecture this config's (dropout aside; a
/// smaller block_size crops the position table). Checked by loading it.
fn init_hf_weights<B: AutodiffBackend>(
    init: &InitFrom,
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    device: &B::Device,
) -> Result<(PathBuf, InitRecord), TrainError> {
    let name = init.run.display().to_string();
    let gpt2_tokens = *tokenizer.base() == BaseTokenizer::Gpt2;
    let theirs = model::hf::read_config(&init.run)
        .map_err(|e| TrainError::Config(format!("--init-from {name}: {e}")))?;
    // GPT-2's tokens, or a chat export's (GPT-2's and the chat tokens), are this run's
    // or grow into them.
    let fits = [tokenizer.base_vocab_size(), tokenizer.vocab_size()].contains(&theirs.vocab_size);
    if theirs.vocab_size == GPT2_VOCAB_SIZE + data::Special::ALL.len() && !tokenizer.is_chat() {
        return Err(TrainError::Config(format!(
            "--init-from {name}: these weights have GPT-2's and the chat tokens, and this run's data is text: finetune it on conversations (a .jsonl file)"
        )));
    }
    if !(gpt2_tokens && fits) {
        return Err(TrainError::Config(format!(
            "--init-from {name}: GPT-2's weights need GPT-2's BPE tokens, and this run's data uses {} (prepare the text with `gpt prepare --tokenizer gpt2`)",
            tokenizer.describe()
        )));
    }
    let shape = model::GptConfig {
        vocab_size: theirs.vocab_size,
        ..config.model.clone()
    };
    model::hf::load_gpt2_as::<B::InnerBackend>(&init.run, &shape, device)
        .map_err(|e| TrainError::Config(format!("--init-from {name}: {e}")))?;
    let path = init.run.join(model::hf::WEIGHTS_FILE);
    let bytes = std::fs::read(&path).map_err(|e| crate::run::io(&path, e))?;
    let record = InitRecord {
        run: std::path::absolute(&init.run)
            .unwrap_or_else(|_| init.run.clone())
            .display()
            .to_string(),
        weights: HF_WEIGHTS.into(),
        iter: 0,
        sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
    };
    Ok((path, record))
}

/// `InitRecord::weights` of a run that started from Hugging Face weights.
const HF_WEIGHTS: &str = "hugging-face";

/// The weights file a run started from, for a resume before its first checkpoint; it
/// must still be the file the run recorded.
fn recorded_init_weights(record: &InitRecord) -> Result<PathBuf, TrainError> {
    let run = RunDir::new(&record.run);
    let path = match record.weights.as_str() {
        HF_WEIGHTS => run.path().join(model::hf::WEIGHTS_FILE),
        "best" => run.best_path(),
        _ => run.model_path(),
    };
    let bytes = std::fs::read(&path).map_err(|e| crate::run::io(&path, e))?;
    if format!("{:x}", sha2::Sha256::digest(&bytes)) != record.sha256 {
        return Err(TrainError::Run(format!(
            "this run starts from {}, which changed since the run began; start a new run",
            path.display()
        )));
    }
    Ok(path)
}

/// The `--init-from` weights a run must start from again: those it recorded, when it was
/// killed before its first checkpoint.
pub(super) fn pending_init_weights(
    marker: &RunMarker,
    start_epoch: usize,
) -> Result<Option<PathBuf>, TrainError> {
    match (&marker.init_from, start_epoch) {
        (Some(record), 0) => Ok(Some(recorded_init_weights(record)?)),
        _ => Ok(None),
    }
}
