//! A run's data: `--data PATH` in place of the config's dataset, and the dataset opened
//! for a new run, a resumed one, a data-parallel follower or `gpt eval`.

use crate::run::RunDir;
use crate::{RunConfig, TrainError};
use data::{Dataset, OpenDataset, TextTokenizer};
use std::path::Path;

/// Points `config` at `--data PATH` (made absolute, so the run finds it from anywhere):
/// a text file, or a directory `gpt prepare` made.
pub fn use_data_path(config: &mut RunConfig, path: &Path) -> Result<(), TrainError> {
    if config.task().is_some() {
        return Err(TrainError::Config(
            "--data gives a text, but this run's dataset is generated arithmetic; drop one of them"
                .into(),
        ));
    }
    let path = std::path::absolute(path)
        .map_err(|e| TrainError::Config(format!("--data {}: {e}", path.display())))?;
    config.train.dataset = Dataset::from_path(path);
    Ok(())
}

/// Opens `config`'s dataset, with `saved` as its tokenizer when given.
pub(super) fn open_dataset(
    config: &RunConfig,
    saved: Option<TextTokenizer>,
) -> Result<OpenDataset, TrainError> {
    let block_size = config.model.block_size;
    Ok(config.train.dataset.open(&config.task, block_size, saved)?)
}

/// The data of an existing run: its own, or `--data` when `allow_change` (or when it
/// names the same data). Data that changed since the run recorded it is refused unless
/// `allow_change`. Returns the config pointing at the data used, and the data opened
/// with the run's tokenizer.
pub fn open_run_data(
    run: &RunDir,
    mut config: RunConfig,
    data: Option<&Path>,
    allow_change: bool,
) -> Result<(RunConfig, OpenDataset), TrainError> {
    let recorded = run.marker()?.and_then(|m| m.data);
    if let Some(path) = data {
        let before = config.train.dataset.clone();
        use_data_path(&mut config, path)?;
        if config.train.dataset != before && !allow_change {
            return Err(TrainError::Run(format!(
                "this run was trained on {before}; --data names another text: add --allow-data-change to use it"
            )));
        }
    }
    let opened = open_dataset(&config, Some(run.tokenizer()?))?;
    if let (Some(was), Some(now)) = (&recorded, &opened.record)
        && was.sha256 != now.sha256
        && !allow_change
    {
        return Err(TrainError::Run(format!(
            "the text {} is not the one this run was trained on (sha256 {}…, recorded {}…); add --allow-data-change to use it anyway",
            now.dataset,
            &now.sha256[..12],
            &was.sha256[..12]
        )));
    }
    Ok((config, opened))
}
