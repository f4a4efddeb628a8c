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
    /// projection has none unless `qkv_bias` (the lecture's `bias=False` on key, query,
    /// value); `lm_head` has one only when it is not tied to `wte`.
    pub bias: bool,
    /// A bias on the query/key/value projection too (GPT-2's `c_attn` has one; nanoGPT's
    /// `bias` switch covers it).
    pub qkv_bias: bool,
    /// `lm_head` reuses `wte`'s matrix (logits = x · wteᵀ), as GPT-2 and nanoGPT do: one
    /// table both reads tokens in and writes them out, and vocab_size × n_embd fewer
    /// parameters. Untied, `lm_head` is its own layer (the lecture's).
    pub tie_weights: bool,
    /// The MLP's nonlinearity: `relu` (the lecture's), `gelu` (exact, erf) or `gelu_tanh`
    /// (GPT-2's and nanoGPT's tanh approximation, Hugging Face's `gelu_new`).
    pub activation: Activation,
    /// LayerNorm's epsilon (PyTorch's and GPT-2's 1e-5).
    pub layer_norm_eps: f64,
    /// nanoGPT's init of the residual projections (`attn.c_proj`, `mlp.c_proj`): std
    /// 0.02/√(2·n_layer) instead of 0.02, so the residual stream's variance does not grow
    /// with depth (GPT-2 paper §2.3).
    pub scaled_init: bool,
}

/// The MLP's nonlinearity (see [`GptConfig::activation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    Gelu,
    GeluTanh,
}

impl Activation {
    /// The name Hugging Face's `config.json` uses (`activation_function`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_new",
        }
    }

    /// The activation a Hugging Face `activation_function` names, if it is one of ours.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "relu" => Some(Activation::Relu),
            "gelu" => Some(Activation::Gelu),
            // Hugging Face's several spellings of the tanh approximation.
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Activation::GeluTanh),
            _ => None,
        }
    }
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
            qkv_bias: false,
            tie_weights: false,
            activation: Activation::Relu,
            layer_norm_eps: 1e-5,
            scaled_init: false,
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
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!(
                "layer_norm_eps must be > 0, got {}",
                self.layer_norm_eps
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
                layer_norm_eps: 0.0,
                ..ok.clone()
            })
            .contains("layer_norm_eps")
        );
        assert!(
            msg(GptConfig {
                vocab_size: 0,
                ..ok
            })
            .contains("vocab_size")
        );
    }

    /// Presets written before the GPT-2 switches read as before: every switch off.
    #[test]
    fn switches_default_to_the_lecture() {
        let old: GptConfig =
            serde_json::from_str(r#"{"n_layer": 2, "bias": false}"#).expect("a valid config");
        assert_eq!(
            old,
            GptConfig {
                n_layer: 2,
                bias: false,
                ..GptConfig::default()
            }
        );
        let d = GptConfig::default();
        assert!(!d.tie_weights && !d.qkv_bias && !d.scaled_init);
        assert_eq!((d.activation, d.layer_norm_eps), (Activation::Relu, 1e-5));
        let gpt2: GptConfig =
            serde_json::from_str(r#"{"activation": "gelu_tanh", "tie_weights": true}"#).unwrap();
        assert_eq!(gpt2.activation, Activation::GeluTanh);
        for a in [Activation::Relu, Activation::Gelu, Activation::GeluTanh] {
            assert_eq!(Activation::from_hf_name(a.hf_name()), Some(a));
        }
    }
}
