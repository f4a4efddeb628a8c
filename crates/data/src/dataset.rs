//! What a run trains on, in one type with one textual form, opened one way.
//!
//! | `[train] dataset` | [`Dataset`] | opened as |
//! |---|---|---|
//! | `"tinyshakespeare"` | a named dataset of `datasets/` (checksummed, cached) | its text, character tokens |
//! | `"file:path/to/input.txt"` | a UTF-8 text file | its text, character tokens |
//! | `"prepared:path/to/dir"` | a directory `gpt prepare` made | its token files, memory-mapped |
//! | `"conversations:path/to/chat.jsonl"` | conversations, one JSON object per line | rendered by the chat template, character tokens with the chat tokens |
//! | `"arithmetic"` | problems generated as `[task]` says | endless problems, a fixed vocabulary |
//!
//! The string is what a config holds and what `run.json` pins ([`DataRecord`]); `--data
//! PATH` names a file, a `.jsonl` file of conversations or a prepared directory
//! ([`Dataset::from_path`]). Training, `gpt
//! eval` and a resume all go through [`Dataset::open`], so a new kind of data is a variant
//! here, its string and its arm of `open`.

use crate::arithmetic::TaskConfig;
use crate::conversation::read_jsonl;
use crate::sft::ConversationStore;
use crate::source::{TextSource, load_text};
use crate::{CharTokenizer, Corpus, DataError, Result, TextTokenizer, TokenStore, Tokenizer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// What a run trains on; written as the strings of the module's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Dataset {
    Named(String),
    File(PathBuf),
    Prepared(PathBuf),
    Conversations(PathBuf),
    Arithmetic,
}

const ARITHMETIC: &str = "arithmetic";
const CONVERSATIONS: &str = "conversations:";
const FILE: &str = "file:";
const PREPARED: &str = "prepared:";

impl FromStr for Dataset {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == ARITHMETIC {
            return Ok(Dataset::Arithmetic);
        }
        if let Some(path) = s.strip_prefix(FILE) {
            if path.is_empty() {
                return Err("dataset \"file:\" names no file: write file:PATH".into());
            }
            return Ok(Dataset::File(path.into()));
        }
        if let Some(dir) = s.strip_prefix(PREPARED) {
            if dir.is_empty() {
                return Err("dataset \"prepared:\" names no directory: write prepared:DIR".into());
            }
            return Ok(Dataset::Prepared(dir.into()));
        }
        if let Some(path) = s.strip_prefix(CONVERSATIONS) {
            if path.is_empty() {
                return Err(
                    "dataset \"conversations:\" names no file: write conversations:PATH".into(),
                );
            }
            return Ok(Dataset::Conversations(path.into()));
        }
        if s == PREPARED.trim_end_matches(':') {
            return Err(
                "dataset \"prepared\" names no directory: write \"prepared:DIR\" (or pass --data DIR)"
                    .into(),
            );
        }
        let is_name = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if is_name {
            Ok(Dataset::Named(s.to_string()))
        } else {
            Err(format!(
                "dataset {s:?} is not a dataset name; for a text file write \"file:{s}\""
            ))
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dataset::Named(n) => write!(f, "{n}"),
            Dataset::File(p) => write!(f, "{FILE}{}", p.display()),
            Dataset::Prepared(d) => write!(f, "{PREPARED}{}", d.display()),
            Dataset::Conversations(p) => write!(f, "{CONVERSATIONS}{}", p.display()),
            Dataset::Arithmetic => write!(f, "{ARITHMETIC}"),
        }
    }
}

impl TryFrom<String> for Dataset {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<Dataset> for String {
    fn from(d: Dataset) -> String {
        d.to_string()
    }
}

/// A dataset opened for training or evaluation.
#[derive(Debug, Clone)]
pub struct OpenDataset {
    pub corpus: Corpus,
    pub tokenizer: TextTokenizer,
    /// What pins the data in `run.json` (`None` for generated problems).
    pub record: Option<DataRecord>,
    /// What opening it left out or cut, for the user (conversations: see `sft`).
    pub notes: Vec<String>,
}

/// `run.json`'s `data`: a dataset, pinned by its content. For a prepared directory the
/// content is its `meta.json`, which holds its inputs' sha256 and its token counts:
/// hashing gigabytes of tokens at every resume would be slow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRecord {
    pub dataset: Dataset,
    pub bytes: u64,
    pub sha256: String,
}

impl Dataset {
    /// What `--data PATH` names: a directory `gpt prepare` made, a `.jsonl` file of
    /// conversations, or a text file.
    pub fn from_path(path: PathBuf) -> Self {
        if path.is_dir() {
            Dataset::Prepared(path)
        } else if path.extension().is_some_and(|e| e == "jsonl") {
            Dataset::Conversations(path)
        } else {
            Dataset::File(path)
        }
    }

    /// Whether the data is conversations, which a chat tokenizer reads.
    pub fn is_conversations(&self) -> bool {
        matches!(self, Dataset::Conversations(_))
    }

    /// The form a new run records: a prepared directory or a conversations file as an
    /// absolute path, so that resume and eval find it from any working directory.
    pub fn resolved(&self) -> std::io::Result<Self> {
        match self {
            Dataset::Prepared(dir) => Ok(Dataset::Prepared(std::path::absolute(dir)?)),
            Dataset::Conversations(f) => Ok(Dataset::Conversations(std::path::absolute(f)?)),
            other => Ok(other.clone()),
        }
    }

    /// Reads the data, with `saved` as its tokenizer when given (a resumed or evaluated
    /// run's, or a base run's with the chat tokens): a text's vocabulary is otherwise built
    /// from the text (conversations': from their messages, with the chat tokens), a
    /// prepared directory's is in its `meta.json` (and must be `saved`), and `task`'s
    /// problems have a fixed one. A text must hold a `block_size` chunk in each split.
    pub fn open(
        &self,
        task: &TaskConfig,
        block_size: usize,
        saved: Option<TextTokenizer>,
    ) -> Result<OpenDataset> {
        let text = match self {
            Dataset::Arithmetic => {
                return Ok(OpenDataset {
                    corpus: Corpus::Problems(task.clone()),
                    tokenizer: TextTokenizer::char(task.tokenizer()),
                    record: None,
                    notes: Vec::new(),
                });
            }
            Dataset::Prepared(dir) => return self.open_prepared(dir, block_size, saved),
            Dataset::Conversations(path) => {
                return self.open_conversations(path, block_size, saved);
            }
            Dataset::Named(name) => load_text(&TextSource::Named(name.clone()))?,
            Dataset::File(path) => load_text(&TextSource::Path(path.clone()))?,
        };
        let tokenizer =
            saved.unwrap_or_else(|| TextTokenizer::char(CharTokenizer::from_text(&text)));
        let store = TokenStore::new(&tokenizer.encode(&text)?, tokenizer.vocab_size());
        store.check_block_size(block_size)?;
        Ok(OpenDataset {
            corpus: Corpus::Text(store),
            tokenizer,
            record: Some(self.record(text.as_bytes())),
            notes: Vec::new(),
        })
    }

    fn open_conversations(
        &self,
        path: &std::path::Path,
        block_size: usize,
        saved: Option<TextTokenizer>,
    ) -> Result<OpenDataset> {
        let conversations = read_jsonl(path)?;
        let tokenizer = match saved {
            Some(t) if !t.is_chat() => {
                return Err(DataError::Conversation(format!(
                    "{} holds conversations, but this run uses {}, which has no chat tokens (start a chat run with --init-from RUN to add them)",
                    path.display(),
                    t.describe()
                )));
            }
            Some(t) => t,
            None => {
                // The template joins a system message to the user's with a blank line.
                let mut text = String::from("\n");
                for m in conversations.iter().flat_map(|c| &c.messages) {
                    text.push_str(&m.content);
                }
                TextTokenizer::char(CharTokenizer::from_text(&text)).with_chat()
            }
        };
        let (store, notes) = ConversationStore::new(&conversations, &tokenizer, block_size)?;
        let bytes = std::fs::read(path).map_err(|err| DataError::Io {
            path: path.display().to_string(),
            err,
        })?;
        Ok(OpenDataset {
            corpus: Corpus::Conversations(store),
            tokenizer,
            record: Some(self.record(&bytes)),
            notes,
        })
    }

    fn open_prepared(
        &self,
        dir: &std::path::Path,
        block_size: usize,
        saved: Option<TextTokenizer>,
    ) -> Result<OpenDataset> {
        let (meta, store) = crate::prepared::open(dir)?;
        if let Some(saved) = &saved
            && *saved != meta.tokenizer
        {
            return Err(DataError::Prepared(format!(
                "{} was prepared with {}, but this run uses {}",
                dir.display(),
                meta.tokenizer.describe(),
                saved.describe()
            )));
        }
        store.check_block_size(block_size)?;
        Ok(OpenDataset {
            corpus: Corpus::Text(store),
            tokenizer: meta.tokenizer,
            record: Some(self.record(&crate::prepared::read_meta_bytes(dir)?)),
            notes: Vec::new(),
        })
    }

    fn record(&self, content: &[u8]) -> DataRecord {
        DataRecord {
            dataset: self.clone(),
            bytes: content.len() as u64,
            sha256: format!("{:x}", Sha256::digest(content)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_written_as_names_files_directories_or_arithmetic() {
        let parse = |s: &str| s.parse::<Dataset>();
        assert_eq!(
            parse("tinyshakespeare"),
            Ok(Dataset::Named("tinyshakespeare".into()))
        );
        assert_eq!(parse("file:a/b.txt"), Ok(Dataset::File("a/b.txt".into())));
        assert_eq!(parse("prepared:d/x"), Ok(Dataset::Prepared("d/x".into())));
        assert_eq!(parse("arithmetic"), Ok(Dataset::Arithmetic));
        assert_eq!(
            parse("conversations:c.jsonl"),
            Ok(Dataset::Conversations("c.jsonl".into()))
        );
        assert!(parse("conversations:").is_err());
        assert_eq!(
            Dataset::from_path("x/chat.jsonl".into()),
            Dataset::Conversations("x/chat.jsonl".into())
        );
        assert!(parse("a/b.txt").unwrap_err().contains("file:a/b.txt"));
        assert!(parse("file:").is_err());
        assert!(parse("prepared:").is_err());
        assert!(parse("prepared").unwrap_err().contains("prepared:DIR"));
        for d in [
            "tinyshakespeare",
            "file:x/y.txt",
            "prepared:/d",
            "conversations:/c.jsonl",
            "arithmetic",
        ] {
            assert_eq!(parse(d).unwrap().to_string(), d);
        }
    }

    #[test]
    fn records_serialise_as_run_json_holds_them() {
        let json = r#"{"dataset":"prepared:/data/x","bytes":3,"sha256":"abc"}"#;
        let record: DataRecord = serde_json::from_str(json).unwrap();
        assert_eq!(record.dataset, Dataset::Prepared("/data/x".into()));
        assert_eq!(serde_json::to_string(&record).unwrap(), json);
    }
}
