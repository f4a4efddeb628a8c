//! What training and sampling need from a network, so one loop serves both the bigram
//! baseline and the GPT.

use crate::{BigramLanguageModel, Gpt, GptConfig, KvCache, ModelError, ModelKind, Result};
use burn::prelude::*;

/// A next-token predictor: token ids in, logits out.
pub trait LanguageModel<B: Backend> {
    /// `idx` (B, T) → logits (B, T, vocab_size).
    fn logits(&self, idx: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>>;
    /// Logits of the tokens that follow those already in `cache`, extending it.
    fn logits_cached(&self, idx: Tensor<B, 2, Int>, cache: &mut KvCache<B>)
    -> Result<Tensor<B, 3>>;
    /// One new token per sequence, `idx` (B, 1), each after the tokens in its own cache
    /// (see [`Gpt::forward_step`]) → logits (B, 1, vocab_size).
    fn logits_step(
        &self,
        idx: Tensor<B, 2, Int>,
        caches: &mut [&mut KvCache<B>],
    ) -> Result<Tensor<B, 3>>;
    /// The longest context the model accepts; `None` when it looks at one token only.
    fn context_size(&self) -> Option<usize>;
}

/// Either network, chosen by `GptConfig::model`. A Burn module like any other, so it
/// trains, saves and loads the same way whichever it holds.
// A process holds one or two models, so the size gap between variants costs nothing;
// boxing the GPT would only add an indirection to every call.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model<B: Backend> {
    Bigram(BigramLanguageModel<B>),
    Gpt(Gpt<B>),
}

impl<B: Backend> Model<B> {
    pub fn new(config: &GptConfig, device: &B::Device) -> Result<Self> {
        Ok(match config.model {
            ModelKind::Bigram => Model::Bigram(BigramLanguageModel::new(config, device)?),
            ModelKind::Gpt => Model::Gpt(Gpt::new(config, device)?),
        })
    }

    /// The parameters of the GPT's learned position table (see [`Gpt::position_params`]).
    pub fn position_params(&self) -> usize {
        match self {
            Model::Bigram(_) => 0,
            Model::Gpt(m) => m.position_params(),
        }
    }

    /// The same model with its vocabulary grown to `vocab_size`, the old tokens' rows
    /// untouched (see [`Gpt::grow_vocab`]). A bigram model's table is its vocabulary
    /// squared: it cannot grow this way.
    pub fn grow_vocab(self, vocab_size: usize) -> Result<Self> {
        match self {
            Model::Bigram(_) => Err(ModelError::InvalidConfig(
                "a bigram model's vocabulary cannot grow: its whole table is the vocabulary".into(),
            )),
            Model::Gpt(m) => Ok(Model::Gpt(m.grow_vocab(vocab_size)?)),
        }
    }

    /// The GPT's attention weights for `idx` (B, T), one (B, n_head, T, T) tensor per
    /// layer: see [`Gpt::attention_maps`]. The bigram model has no attention: an error.
    pub fn attention_maps(&self, idx: Tensor<B, 2, Int>) -> Result<Vec<Tensor<B, 4>>> {
        match self {
            Model::Bigram(_) => Err(ModelError::NoAttention),
            Model::Gpt(m) => m.attention_maps(idx),
        }
    }
}

impl<B: Backend> LanguageModel<B> for Model<B> {
    fn logits(&self, idx: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>> {
        match self {
            Model::Bigram(m) => Ok(m.forward(idx)),
            Model::Gpt(m) => m.forward(idx),
        }
    }

    fn logits_cached(
        &self,
        idx: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>> {
        match self {
            // A bigram model looks at one token only: there is nothing to cache.
            Model::Bigram(m) => Ok(m.forward(idx)),
            Model::Gpt(m) => m.forward_cached(idx, cache),
        }
    }

    fn logits_step(
        &self,
        idx: Tensor<B, 2, Int>,
        caches: &mut [&mut KvCache<B>],
    ) -> Result<Tensor<B, 3>> {
        match self {
            Model::Bigram(m) => Ok(m.forward(idx)),
            Model::Gpt(m) => m.forward_step(idx, caches),
        }
    }

    fn context_size(&self) -> Option<usize> {
        match self {
            Model::Bigram(_) => None,
            Model::Gpt(m) => Some(m.block_size()),
        }
    }
}

/// The parameters the network `config` describes, counted without building it (each
/// module counts its own); `None` when they do not fit in a u128.
pub fn num_params(config: &GptConfig) -> Option<u128> {
    match config.model {
        ModelKind::Bigram => crate::bigram::params(config),
        ModelKind::Gpt => crate::gpt::params(config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cross_entropy;
    use crate::test_util::{TestBackend as B, random_ids};

    #[test]
    fn bigram_initial_loss_is_ln_vocab() {
        let device = Default::default();
        let config = GptConfig {
            model: ModelKind::Bigram,
            ..GptConfig::default()
        };
        let model = Model::<B>::new(&config, &device).unwrap();
        let x = random_ids::<B>([32, 8], 65, 1, &device);
        let y = random_ids::<B>([32, 8], 65, 2, &device);
        let loss: f32 = cross_entropy(model.logits(x).unwrap(), y).into_scalar();
        assert!((loss - 65f32.ln()).abs() < 0.2, "loss {loss}");
        assert_eq!(model.context_size(), None);
        let idx = random_ids::<B>([1, 8], 65, 3, &device);
        assert_eq!(
            model.attention_maps(idx).unwrap_err(),
            ModelError::NoAttention
        );
    }

    #[test]
    fn gpt_attention_maps_one_per_layer() {
        let device = Default::default();
        let config = GptConfig {
            block_size: 8,
            n_layer: 3,
            n_head: 2,
            n_embd: 16,
            ..GptConfig::default()
        };
        let model = Model::<B>::new(&config, &device).unwrap();
        let maps = model
            .attention_maps(random_ids::<B>([1, 5], 65, 4, &device))
            .unwrap();
        let dims: Vec<_> = maps.iter().map(|m| m.dims()).collect();
        assert_eq!(dims, vec![[1, 2, 5, 5]; 3]);
    }
}
