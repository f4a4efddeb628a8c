//! `run.json`: the marker that makes a folder a run directory, and what the run is bound
//! to. `--overwrite` replaces only a folder that holds one, and `--resume` and `eval`
//! check the data against it.

use data::{DataRecord, TokenizerKind};
use serde::{Deserialize, Serialize};

/// The marker's format; a newer one is refused rather than misread.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMarker {
    pub format: u32,
    /// Seconds since the Unix epoch when the run was created.
    pub created_unix_s: u64,
    /// The burngpt version that created it.
    pub burngpt: String,
    /// The data the run trains on, pinned (`None` for generated problems).
    pub data: Option<DataRecord>,
    /// Each `--resume`, with the `--set` overrides it applied.
    #[serde(default)]
    pub resumes: Vec<Resume>,
    /// The tokenizer's kind (`char` or `gpt2`; `tokenizer.json` holds the tokenizer).
    /// `None` when the marker has no `tokenizer`: such runs are character-level.
    #[serde(default)]
    pub tokenizer: Option<TokenizerKind>,
    /// Whether the tokenizer has the chat tokens (a chat run; `tokenizer.json` lists
    /// them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chat_tokens: bool,
    /// A trained BPE's file (`gpt tokenizer train`'s tokenizer.json), by its SHA-256:
    /// the run reads its tokens with that file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_sha256: Option<String>,
    /// Where the weights came from when the run started from another run's
    /// (`--init-from`); `None` for a run from random weights.
    #[serde(default)]
    pub init_from: Option<InitRecord>,
}

/// The run a `--init-from` run started from, and which of its weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitRecord {
    /// The source run's directory (absolute).
    pub run: String,
    /// `final` (model.mpk) or `best` (best.mpk).
    pub weights: String,
    /// The source run's iterations when the weights were read.
    pub iter: usize,
    /// The weights file's sha256.
    pub sha256: String,
}

/// One `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    pub at_iter: usize,
    pub unix_s: u64,
    pub set: Vec<String>,
}

impl RunMarker {
    pub fn new(data: Option<DataRecord>) -> Self {
        Self {
            format: FORMAT,
            created_unix_s: now_unix_s(),
            burngpt: env!("CARGO_PKG_VERSION").to_string(),
            data,
            resumes: Vec::new(),
            tokenizer: None,
            chat_tokens: false,
            tokenizer_sha256: None,
            init_from: None,
        }
    }
}

pub fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
