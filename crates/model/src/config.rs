//! Hyperparameters, named as in the lecture and nanoGPT.

use crate::{ModelError, Precision, Result};
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
    /// The MLP's nonlinearity: `relu` (the lecture's), `relu2` (squared ReLU), `gelu`
    /// (exact, erf) or `gelu_tanh` (GPT-2's and nanoGPT's tanh approximation, Hugging
    /// Face's `gelu_new`), or `swiglu` (Llama's gated MLP, see [`crate::mlp`]).
    pub activation: Activation,
    /// The norms' epsilon, LayerNorm's or RMSNorm's (PyTorch's and GPT-2's 1e-5).
    pub layer_norm_eps: f64,
    /// nanoGPT's init of the residual projections (`attn.c_proj`, `mlp.c_proj`): std
    /// 0.02/√(2·n_layer) instead of 0.02, so the residual stream's variance does not grow
    /// with depth (GPT-2 paper §2.3).
    pub scaled_init: bool,
    /// Rotary position embeddings (RoPE, Su et al. 2021; Llama) instead of the learned
    /// position table `wpe`: q and k are rotated by an angle proportional to their
    /// position, so q·k depends on how far apart two tokens are, not where they sit.
    pub rope: bool,
    /// RoPE's base: pair i of a head rotates at rope_theta^(-2i/head_size) radians per
    /// position (Llama's 10000).
    pub rope_theta: f64,
    /// The norm before each branch and at the end: `layernorm` (the lecture's) or
    /// `rmsnorm` (Llama's: no mean subtracted, no bias, one pass fewer).
    pub norm: Norm,
    /// Key/value heads (grouped-query attention, Ainslie et al. 2023): each group of
    /// n_head / n_kv_head query heads shares one key and one value head, which shrinks
    /// the projection and the KV cache. 1 is multi-query attention; unset, n_head (none
    /// shared; 0 also means n_head).
    pub n_kv_head: usize,
    /// RMSNorm each head's queries and keys before the scores (QK-norm: Gemma 3, OLMo 2,
    /// modded-nanoGPT), which bounds q·k and keeps softmax from saturating.
    pub qk_norm: bool,
    /// Soft-caps the logits at ±cap with cap·tanh(logits/cap) (Gemma 2, modded-nanoGPT),
    /// so no logit can run away; 0 (the default) caps nothing.
    pub logit_softcap: f64,
    /// The precision of the matmuls and attention (nanoGPT's `dtype`): `float32`,
    /// `bfloat16` or `float16` (see [`crate::precision`]). Parameters, optimizer state,
    /// norms, softmax and loss stay f32 in all three; a resumed run may change it.
    pub dtype: Precision,
}

/// The norm of every block (see [`GptConfig::norm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    #[default]
    LayerNorm,
    RmsNorm,
}

/// The MLP's nonlinearity (see [`GptConfig::activation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    /// relu(x)², squared ReLU (So et al. 2021, "Primer"; modded-nanoGPT, nanochat).
    Relu2,
    Gelu,
    GeluTanh,
    /// silu(x·W_gate) ∘ (x·W_up), then the down projection (Shazeer 2020, Llama).
    #[serde(rename = "swiglu")]
    SwiGlu,
}

impl Activation {
    /// Every activation, for the tests that run each one.
    pub const ALL: [Activation; 5] = [
        Activation::Relu,
        Activation::Relu2,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::SwiGlu,
    ];

    /// The name Hugging Face's `activation_function` (GPT-2's `config.json`) gives it,
    /// and `transformers` runs; GPT-2 has no gated MLP, so SwiGLU has none.
    pub fn hf_name(self) -> Option<&'static str> {
        match self {
            Activation::Relu => Some("relu"),
            Activation::Relu2 => Some("relu2"),
            Activation::Gelu => Some("gelu"),
            Activation::GeluTanh => Some("gelu_new"),
            Activation::SwiGlu => None,
        }
    }

    /// The activation a Hugging Face `activation_function` names, if it is one of ours.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            // Hugging Face's several spellings of the tanh approximation.
            "gelu_pytorch_tanh" | "gelu_fast" => Some(Activation::GeluTanh),
            _ => Self::ALL.into_iter().find(|a| a.hf_name() == Some(name)),
        }
    }
}

/// A switch that takes the model away from GPT-2's architecture (Exercise 4's modern
/// switches). [`SWITCHES`] is the one list of them: `gpt export` refuses a model with
/// any of them on, naming it, and the tests that must cover every switch (forward and
/// gradient checks, checkpoint round trips, the memory estimate) take their configs
/// from it. A new switch is its config field, its module and one entry here.
pub struct Switch {
    /// The config key, as a user writes it.
    pub key: &'static str,
    /// Whether `config` has it on.
    pub is_on: fn(&GptConfig) -> bool,
    /// Turns it on (with small values the tests' shapes allow).
    pub turn_on: fn(&mut GptConfig),
    /// Why GPT-2 cannot express it (`gpt export`'s refusal).
    pub not_in_gpt2: &'static str,
}

pub const SWITCHES: &[Switch] = &[
    Switch {
        key: "rope",
        is_on: |c| c.rope,
        turn_on: |c| c.rope = true,
        not_in_gpt2: "GPT-2 learns a position table (wpe) instead of rotating q and k",
    },
    Switch {
        key: "norm",
        is_on: |c| c.norm != Norm::LayerNorm,
        turn_on: |c| c.norm = Norm::RmsNorm,
        not_in_gpt2: "GPT-2's norms are LayerNorms",
    },
    Switch {
        key: "activation",
        is_on: |c| c.activation.hf_name().is_none(),
        turn_on: |c| c.activation = Activation::SwiGlu,
        not_in_gpt2: "GPT-2's MLP is not gated",
    },
    Switch {
        key: "n_kv_head",
        is_on: |c| c.kv_heads() != c.n_head,
        turn_on: |c| c.n_kv_head = c.n_head / 2,
        not_in_gpt2: "GPT-2 has one key/value head per query head",
    },
    Switch {
        key: "qk_norm",
        is_on: |c| c.qk_norm,
        turn_on: |c| c.qk_norm = true,
        not_in_gpt2: "GPT-2 does not normalise queries and keys",
    },
    Switch {
        key: "logit_softcap",
        is_on: |c| c.logit_softcap > 0.0,
        turn_on: |c| c.logit_softcap = 3.0,
        not_in_gpt2: "GPT-2 does not cap its logits",
    },
];

impl Switch {
    /// `key = value` as `config` sets it (`rope = true`, `norm = "rmsnorm"`).
    pub fn setting(&self, config: &GptConfig) -> String {
        let value = serde_json::to_value(config).expect("a config serialises")[self.key].clone();
        format!("{} = {value}", self.key)
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
            rope: false,
            rope_theta: 10_000.0,
            norm: Norm::LayerNorm,
            n_kv_head: 0,
            qk_norm: false,
            logit_softcap: 0.0,
            dtype: Precision::Float32,
        }
    }
}

impl burn::config::Config for GptConfig {}

impl GptConfig {
    /// Each head gets an equal slice of the embedding.
    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// This config with every switch of [`SWITCHES`] on, and the head tied and without
    /// biases as the modern recipes have it.
    pub fn with_every_switch(mut self) -> Self {
        for switch in SWITCHES {
            (switch.turn_on)(&mut self);
        }
        self.bias = false;
        self.tie_weights = true;
        self
    }

    /// Key/value heads: `n_kv_head`, or `n_head` when 0.
    pub fn kv_heads(&self) -> usize {
        if self.n_kv_head == 0 {
            self.n_head
        } else {
            self.n_kv_head
        }
    }

    /// The MLP's hidden width: 4·n_embd, or with SwiGLU 8·n_embd/3 rounded up to a
    /// multiple of 8, so its three matrices hold as many weights as the 4× MLP's two
    /// (3·C·8C/3 = 2·C·4C, Llama's choice) and the rows stay SIMD-aligned. (Saturating:
    /// an absurd n_embd gives an absurd width, which the memory check then refuses.)
    pub fn mlp_hidden(&self) -> usize {
        match self.activation {
            Activation::SwiGlu => (self.n_embd.saturating_mul(8) / 3)
                .div_ceil(8)
                .saturating_mul(8),
            _ => self.n_embd.saturating_mul(4),
        }
    }

    /// Refuses shapes that cannot work, saying which value is wrong and why.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(ModelError::InvalidConfig(msg));
        if self.vocab_size == 0 {
            return bad("vocab_size must be > 0".into());
        }
        if self.model == ModelKind::Bigram {
            if self.dtype != Precision::Float32 {
                return bad(format!(
                    "dtype = \"{}\" applies to the GPT's matmuls; the bigram model is one table lookup: use dtype = \"float32\"",
                    self.dtype
                ));
            }
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
        let kv = self.kv_heads();
        if !self.n_head.is_multiple_of(kv) {
            return bad(format!(
                "n_kv_head ({kv}) must divide n_head ({}): each key/value head serves an equal group of query heads",
                self.n_head
            ));
        }
        if self.rope && !self.head_size().is_multiple_of(2) {
            return bad(format!(
                "rope needs an even head size (n_embd / n_head = {}): it rotates pairs of dimensions",
                self.head_size()
            ));
        }
        if self.rope && !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad(format!("rope_theta must be > 1, got {}", self.rope_theta));
        }
        if !(self.logit_softcap.is_finite() && self.logit_softcap >= 0.0) {
            return bad(format!(
                "logit_softcap must be ≥ 0 (0 caps nothing), got {}",
                self.logit_softcap
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

    /// A config that names no switch is the lecture's model: every switch off.
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
        for a in Activation::ALL {
            if let Some(name) = a.hf_name() {
                assert_eq!(Activation::from_hf_name(name), Some(a));
            }
        }
        assert_eq!(Activation::SwiGlu.hf_name(), None);
    }

    /// Each switch's key is a config field, off in GPT-2's shape and on once turned on.
    #[test]
    fn every_switch_is_a_config_key_that_turns_on() {
        let fields = serde_json::to_value(GptConfig::default()).unwrap();
        for switch in SWITCHES {
            assert!(
                fields.get(switch.key).is_some(),
                "{} is not a config key",
                switch.key
            );
            let mut config = GptConfig {
                n_head: 4,
                n_embd: 32,
                ..GptConfig::default()
            };
            assert!(!(switch.is_on)(&config), "{} is on by default", switch.key);
            (switch.turn_on)(&mut config);
            assert!((switch.is_on)(&config), "{} does not turn on", switch.key);
            assert!(config.validate().is_ok(), "{} on is invalid", switch.key);
        }
        assert_eq!(
            SWITCHES[1].setting(&GptConfig::default().with_every_switch()),
            r#"norm = "rmsnorm""#
        );
    }
}
