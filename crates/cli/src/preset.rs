//! The config flags `gpt train` and `gpt bench` share: a preset file and `--set` overrides.

use std::path::PathBuf;
use training::{RunConfig, TrainError};

/// The CPU preset, compiled in so the commands work from any directory.
const DEFAULT_PRESET: &str = include_str!("../../../experiments/shakespeare_char_cpu.toml");
const DEFAULT_NAME: &str = "shakespeare_char_cpu";

#[derive(clap::Args)]
pub struct ConfigArgs {
    /// A preset from experiments/ (default: shakespeare_char_cpu.toml, compiled in).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. --set max_iters=500 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// The preset with the overrides applied.
    pub fn load(&self) -> Result<RunConfig, TrainError> {
        match &self.config {
            Some(path) => RunConfig::load(Some(path), &self.set),
            None => RunConfig::parse(DEFAULT_PRESET, DEFAULT_NAME, &self.set),
        }
    }

    /// The preset's name: its file stem.
    pub fn name(&self) -> String {
        self.config
            .as_ref()
            .and_then(|p| p.file_stem())
            .map_or(DEFAULT_NAME.into(), |s| s.to_string_lossy().into_owned())
    }
}
