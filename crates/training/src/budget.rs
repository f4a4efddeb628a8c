//! Will this config fit? An estimate of the memory a training step needs, made from the
//! config alone, before anything is allocated: a config that cannot fit is refused with
//! one line instead of aborting on an allocation (or swapping the machine to a halt).
//!
//! Counted in f32 (4 bytes): the parameters, their gradients and AdamW's two moments
//! (4 copies), and the activations autodiff keeps for the backward pass: per layer about
//! 20 (B, T, C) tensors (LayerNorms, q/k/v, the 4C-wide MLP before and after GELU, the
//! residual branches, dropout masks) and two (B, n_head, T, T) attention maps, plus the
//! logits and their softmax and gradient, 3 (B, T, vocab). It is an estimate (the fused
//! CPU attention keeps less), meant to catch configs that are off by orders of magnitude.

use crate::{RunConfig, TrainError};
use model::{ModelKind, num_params};

/// Estimated peak bytes of one training step with `batch_size` sequences.
pub fn training_bytes(config: &RunConfig, batch_size: usize) -> Option<u128> {
    let m = &config.model;
    let params = num_params(m)?.checked_mul(4 * 4)?;
    let (b, t, c) = (batch_size as u128, m.block_size as u128, m.n_embd as u128);
    let bt = b.checked_mul(t)?;
    let logits = bt.checked_mul(m.vocab_size as u128)?.checked_mul(3)?;
    let activations = if m.model == ModelKind::Bigram {
        0
    } else {
        let per_layer = bt.checked_mul(c)?.checked_mul(20)?.checked_add(
            bt.checked_mul(t)?
                .checked_mul(m.n_head as u128)?
                .checked_mul(2)?,
        )?;
        per_layer.checked_mul(m.n_layer as u128)?
    };
    params.checked_add(logits.checked_add(activations)?.checked_mul(4)?)
}

/// The memory this machine can give a new process now, if it can tell.
pub fn available_bytes() -> Option<u128> {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    Some(system.available_memory() as u128).filter(|&n| n > 0)
}

/// Refuses a config whose training step would not fit in `available` bytes.
pub fn check_fits(
    config: &RunConfig,
    batch_size: usize,
    available: Option<u128>,
) -> Result<(), TrainError> {
    let gib = |n: u128| n as f64 / (1u64 << 30) as f64;
    let needed = training_bytes(config, batch_size);
    match (needed, available) {
        (None, _) => Err(TrainError::Config(
            "this model and batch are too large to even count their memory; shrink n_embd, n_layer, block_size, vocab or batch_size".into(),
        )),
        (Some(need), Some(have)) if need > have => Err(TrainError::Config(format!(
            "this config needs about {:.1} GiB for a training step (parameters, optimizer state, activations for batch_size {batch_size}) but {:.1} GiB is available; shrink batch_size, block_size or the model, or pass --no-memory-check if you know better",
            gib(need),
            gib(have)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_that_cannot_fit_are_refused() {
        let mut config = RunConfig::default();
        // The lecture's full model fits in 24 GiB…
        assert!(check_fits(&config, 64, Some(24 << 30)).is_ok());
        let need = training_bytes(&config, 64).unwrap();
        assert!((1u128 << 30..12u128 << 30).contains(&need), "{need}");
        // …a billion sequences per batch does not, and a width of 10^8 cannot be counted
        // in anything a machine has.
        let msg = check_fits(&config, 1_000_000_000, Some(24 << 30))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--no-memory-check"), "{msg}");
        config.model.n_embd = 100_000_000;
        assert!(check_fits(&config, 64, Some(24 << 30)).is_err());
        config.model.n_embd = usize::MAX;
        assert!(training_bytes(&config, usize::MAX).is_none());
        // When the machine cannot tell, nothing is refused.
        config.model.n_embd = 384;
        assert!(check_fits(&config, 64, None).is_ok());
    }
}
