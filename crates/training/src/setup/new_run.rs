//! A new run: its data opened (and pinned in `run.json`), its vocabulary filled into the
//! config, the `--init-from` weights checked, and the run directory created.

use super::RunSetup;
use super::init_from::{chat_tokenizer, init_weights};
use super::run_data::{open_dataset, use_data_path};
use crate::log::History;
use crate::run::{RunMarker, RunWriter};
use crate::train::TrainOptions;
use crate::{RunConfig, TrainError};
use burn::tensor::backend::AutodiffBackend;
use data::{OpenDataset, Tokenizer};

/// Sets up a new run of `config` in `opts.out_dir` (replacing a run there when
/// `overwrite`).
pub(super) fn set_up<B: AutodiffBackend>(
    opts: &TrainOptions,
    config: &RunConfig,
    overwrite: bool,
    device: &B::Device,
) -> Result<RunSetup, TrainError> {
    let mut config = config.clone();
    if let Some(path) = &opts.data {
        use_data_path(&mut config, path)?;
    }
    let dataset = &config.train.dataset;
    config.train.dataset = dataset
        .resolved()
        .map_err(|e| TrainError::Config(format!("dataset {dataset}: {e}")))?;
    // Conversations from a base run: the base's tokens and the chat tokens.
    let saved = match &opts.init_from {
        Some(init) if config.train.dataset.is_conversations() => Some(chat_tokenizer(init)?),
        _ => None,
    };
    let OpenDataset {
        corpus,
        tokenizer,
        record,
        notes,
    } = open_dataset(&config, saved)?;
    for note in notes {
        eprintln!("note: {note}");
    }
    config.model.vocab_size = tokenizer.vocab_size();
    config.model.validate()?;
    let init = opts
        .init_from
        .as_ref()
        .map(|init| init_weights::<B>(init, &config, &tokenizer, device))
        .transpose()?;
    super::check_memory(opts, &config)?;
    let writer = RunWriter::create(&opts.out_dir, overwrite)?;
    let mut marker = RunMarker::new(record);
    marker.tokenizer = Some(tokenizer.kind());
    marker.chat_tokens = tokenizer.is_chat();
    marker.tokenizer_sha256 = tokenizer.bpe_sha256();
    let (init_weights, init_record) = init.unzip();
    marker.init_from = init_record;
    writer.begin(&marker, &config, &tokenizer)?;
    Ok(RunSetup {
        writer,
        config,
        corpus,
        start_epoch: 0,
        history: History::default(),
        init_weights,
    })
}
