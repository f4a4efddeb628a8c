//! Checkpoint files that a kill can never leave half-written.
//!
//! Burn's file recorders write straight to the destination, so a kill during a save
//! leaves a truncated file where the previous checkpoint was. This recorder serialises
//! in memory (named MessagePack at full precision, like `NamedMpkFileRecorder`), writes
//! a temporary file in the same directory, fsyncs it, and renames it over the
//! destination: the rename is atomic, so readers see the old file or the new one.
//! Full precision matters: half-precision records round AdamW's second moments to zero
//! and a resumed run's first step then blows up.
//!
//! Every record is read here, so this is also where older layouts are read:
//! - a model file's either/or layers written as two optional fields, `ln_1`/`rms_1`
//!   (likewise `ln_2`, `ln_f`) and `c_fc`/`swiglu`, where the model now has one enum field
//!   tagged with its variant ([`model::norm::NormLayer`], [`model::mlp::Up`]).
//!   [`tag_either_or_layers`] moves the present layer under its tag;
//! - an optimizer file of AdamW's states alone, from before Muon: [`group_optimizer_states`]
//!   makes it the AdamW group beside an empty Muon one (`optim::OptimizerRecord`).
//!
//! Their numbers are untouched.

use burn::prelude::*;
use burn::record::{FileRecorder, FullPrecisionSettings, Recorder, RecorderError};
use rmpv::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Default)]
pub struct AtomicRecorder;

const EXTENSION: &str = "mpk";

impl<B: Backend> FileRecorder<B> for AtomicRecorder {
    fn file_extension() -> &'static str {
        EXTENSION
    }
}

impl<B: Backend> Recorder<B> for AtomicRecorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(&self, item: I, file: PathBuf) -> Result<(), RecorderError> {
        let mut bytes = Vec::new();
        rmp_serde::encode::write_named(&mut bytes, &item)
            .map_err(|e| RecorderError::Unknown(e.to_string()))?;
        let path = file.with_extension(EXTENSION);
        path.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| data::files::write_atomically(&path, &bytes))
            .map_err(|e| RecorderError::Unknown(format!("writing {}: {e}", path.display())))
    }

    fn load_item<I: DeserializeOwned>(&self, file: &mut PathBuf) -> Result<I, RecorderError> {
        let path = file.with_extension(EXTENSION);
        let bytes = std::fs::read(&path)
            .map_err(|e| RecorderError::FileNotFound(format!("{}: {e}", path.display())))?;
        let corrupt = |e: &dyn std::fmt::Display| {
            RecorderError::Unknown(format!(
                "{} is corrupt or not a checkpoint: {e}",
                path.display()
            ))
        };
        // Today's layout loads as it is; only a file that does not is walked, once.
        let error = match rmp_serde::from_slice(&bytes) {
            Ok(item) => return Ok(item),
            Err(e) => corrupt(&e),
        };
        let Ok(mut value) = rmpv::decode::read_value(&mut &bytes[..]) else {
            return Err(error);
        };
        if !(tag_either_or_layers(&mut value) | group_optimizer_states(&mut value)) {
            return Err(error);
        }
        let mut tagged = Vec::with_capacity(bytes.len());
        rmpv::encode::write_value(&mut tagged, &value).map_err(|e| corrupt(&e))?;
        rmp_serde::from_slice(&tagged).map_err(|_| error)
    }
}

/// Rewrites every either/or pair of optional layers under `value` as the model's enum
/// field (see the module doc): `ln_1: L, rms_1: nil` becomes `ln_1: {LayerNorm: L}`,
/// `ln_1: nil, rms_1: R` becomes `ln_1: {RmsNorm: R}`, `c_fc`/`swiglu` likewise with
/// `Linear`/`Gated`. Whether anything changed.
fn tag_either_or_layers(value: &mut Value) -> bool {
    const PAIRS: [(&str, &str, &str, &str); 4] = [
        ("ln_1", "LayerNorm", "rms_1", "RmsNorm"),
        ("ln_2", "LayerNorm", "rms_2", "RmsNorm"),
        ("ln_f", "LayerNorm", "rms_f", "RmsNorm"),
        ("c_fc", "Linear", "swiglu", "Gated"),
    ];
    let position = |entries: &[(Value, Value)], key: &str| {
        entries.iter().position(|(k, _)| k.as_str() == Some(key))
    };
    match value {
        Value::Map(entries) => {
            let mut changed = false;
            for (first, first_tag, second, second_tag) in PAIRS {
                let Some(i) = position(entries, first) else {
                    continue;
                };
                let (i, other) = match position(entries, second) {
                    Some(j) => (if j < i { i - 1 } else { i }, entries.remove(j).1),
                    None => (i, Value::Nil),
                };
                let layer = std::mem::replace(&mut entries[i].1, Value::Nil);
                entries[i].1 = match layer {
                    Value::Nil => tag(second_tag, other),
                    layer => tag(first_tag, layer),
                };
                changed = true;
            }
            entries
                .iter_mut()
                .fold(changed, |changed, (_, v)| tag_either_or_layers(v) | changed)
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| tag_either_or_layers(v) | changed),
        _ => false,
    }
}

/// Rewrites an optimizer record whose item is one map of states by parameter id (AdamW's,
/// before Muon) as the pair (that map, no Muon states). Whether it was one.
fn group_optimizer_states(value: &mut Value) -> bool {
    let Value::Map(entries) = value else {
        return false;
    };
    let Some((_, item)) = entries.iter_mut().find(|(k, _)| k.as_str() == Some("item")) else {
        return false;
    };
    let states = match item {
        Value::Map(states) => states,
        _ => return false,
    };
    let by_id = states.iter().all(|(k, _)| {
        k.as_str()
            .is_some_and(crate::run::checkpoint::param_id_parses)
    });
    if !by_id {
        return false;
    }
    let adamw = std::mem::replace(item, Value::Nil);
    *item = Value::Array(vec![adamw, Value::Map(Vec::new())]);
    true
}

fn tag(variant: &str, layer: Value) -> Value {
    Value::Map(vec![(Value::from(variant), layer)])
}
