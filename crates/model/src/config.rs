//! Hyperparameters, named as in the lecture and nanoGPT.

use crate::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// Which network: the lecture's bigram baseline or the GPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Bigram,
    #[default]
    Gpt,
}

/// The model's shape. Defaults are the lecture's final `gpt.py` (≈10.8 M parameters);
/// `vocab_size` comes from the tokenizer. Unknown keys are rejected so a typo in a config
/// file is an error, not a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GptConfig {
    /// `gpt` or `bigram`.
    pub model: ModelKind,
    pub vocab_size: usize,
    /// The longest context the model sees; also the size of the position table.
    pub block_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// Probability of zeroing an activation in training (attention weights, residual branches).
    pub dropout: f64,
    /// Biases in the linear layers and LayerNorms, as in the lecture. The query/key/value
    /// projection has none either way (the lecture's `bias=False` on key, query, value).
    pub bias: bool,
}

impl Default for GptConfig {
    fn default() -> Self {
        Self {
            model: ModelKind::Gpt,
            vocab_size: 65,
            block_size: 256,
            n_layer: 6,
            n_head: 6,
            n_embd: 384,
            dropout: 0.2,
            bias: true,
        }
    }
}

impl burn::config::Config for GptConfig {}

impl GptConfig {
    /// Each head gets an equal slice of the embedding.
    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Refuses shapes that cannot work, saying which value is wrong and why.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(ModelError::InvalidConfig(msg));
        if self.vocab_size == 0 {
            return bad("vocab_size must be > 0".into());
        }
        if self.model == ModelKind::Bigram {
            return Ok(());
        }
        for (name, value) in [
            ("block_size", self.block_size),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
        ] {
            if value == 0 {
                return bad(format!("{name} must be > 0"));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return bad(format!(
                "n_embd ({}) must be divisible by n_head ({}): each head gets n_embd / n_head dimensions",
                self.n_embd, self.n_head
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_impossible_shapes() {
        let ok = GptConfig::default();
        assert!(ok.validate().is_ok());
        let msg = |c: GptConfig| c.validate().unwrap_err().to_string();
        assert!(
            msg(GptConfig {
                n_head: 5,
                ..ok.clone()
            })
            .contains("divisible by n_head")
        );
        assert!(
            msg(GptConfig {
                block_size: 0,
                ..ok.clone()
            })
            .contains("block_size must be > 0")
        );
        assert!(
            msg(GptConfig {
                dropout: 1.0,
                ..ok.clone()
            })
            .contains("dropout")
        );
        assert!(
            msg(GptConfig {
                vocab_size: 0,
                ..ok
            })
            .contains("vocab_size")
        );
    }
}
