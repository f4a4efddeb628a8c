//! A run's checkpoints: which ones are kept, and the check every model file passes before
//! its numbers are used.
//!
//! A checkpoint is named MessagePack (see `recorder`): nested maps whose leaves are
//! tensors written as `{bytes, shape, dtype}`. [`check_tensors`] walks that tree without
//! building a model and refuses a file whose tensors are not the f32 parameters of the
//! run's model, shape by shape, with as many bytes as their shapes need. Only then is the
//! record loaded into the model: Burn trusts a record's shapes and tags, so an edited or
//! foreign file would otherwise load as garbage, or panic mid-forward.

use crate::log::History;
use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::metric::store::EventStoreClient;
use rmpv::Value;

/// Why a file is not a checkpoint of the run's model.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Not readable as a record at all (truncated, not MessagePack, a tensor whose bytes
    /// do not fill its shape).
    Unreadable(String),
    /// A readable record of another model.
    Mismatch(String),
}

/// Checks that the MessagePack checkpoint `bytes` holds exactly the f32 tensors of
/// `expected` shapes, in order. The error says what differs.
pub fn check_tensors(bytes: &[u8], expected: &[Vec<usize>]) -> Result<(), Refused> {
    let value = rmpv::decode::read_value(&mut &bytes[..])
        .map_err(|e| Refused::Unreadable(format!("it is truncated or not a checkpoint ({e})")))?;
    let mut found = Vec::new();
    collect(&value, &mut found).map_err(Refused::Unreadable)?;
    check_found(&found, expected).map_err(Refused::Mismatch)
}

fn check_found(found: &[(Vec<usize>, String)], expected: &[Vec<usize>]) -> Result<(), String> {
    if found.len() != expected.len() {
        return Err(format!(
            "it holds {} tensors, this run's model has {}",
            found.len(),
            expected.len()
        ));
    }
    for (i, ((shape, dtype), want)) in found.iter().zip(expected).enumerate() {
        if dtype != "F32" {
            return Err(format!("tensor {i} is tagged {dtype}, expected F32"));
        }
        if shape != want {
            return Err(format!("tensor {i} has shape {shape:?}, expected {want:?}"));
        }
    }
    Ok(())
}

/// Every `{bytes, shape, dtype}` map under `value`, depth first, checked for a byte
/// length that matches its shape and dtype.
fn collect(value: &Value, found: &mut Vec<(Vec<usize>, String)>) -> Result<(), String> {
    match value {
        Value::Map(entries) => {
            let field = |name: &str| {
                entries
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(name))
                    .map(|(_, v)| v)
            };
            if let (Some(bytes), Some(shape), Some(dtype)) =
                (field("bytes"), field("shape"), field("dtype"))
            {
                found.push(tensor(bytes, shape, dtype)?);
                return Ok(());
            }
            entries.iter().try_for_each(|(_, v)| collect(v, found))
        }
        Value::Array(items) => items.iter().try_for_each(|v| collect(v, found)),
        _ => Ok(()),
    }
}

fn tensor(bytes: &Value, shape: &Value, dtype: &Value) -> Result<(Vec<usize>, String), String> {
    let shape: Vec<usize> = shape
        .as_array()
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        })
        .ok_or("a tensor's shape is not a list of sizes")?;
    let dtype = match dtype {
        Value::String(s) => s.as_str().unwrap_or("?").to_string(),
        other => other.to_string(),
    };
    let width = match dtype.as_str() {
        "F64" | "I64" | "U64" => 8,
        "F32" | "Flex32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" => 1,
        _ => return Err(format!("a tensor has the unknown dtype {dtype}")),
    };
    let len = match bytes {
        Value::Binary(b) => b.len(),
        Value::Array(a) => a.len(),
        _ => return Err("a tensor's bytes are not a byte string".into()),
    };
    let need = shape
        .iter()
        .try_fold(width, |n: usize, &d| n.checked_mul(d))
        .ok_or_else(|| format!("a tensor's shape {shape:?} is too large"))?;
    if len != need {
        return Err(format!(
            "a {dtype} tensor of shape {shape:?} holds {len} bytes, its shape needs {need}"
        ));
    }
    Ok((shape, dtype))
}

/// Keeps the newest `keep` checkpoints and the one with the best val loss; deletes an old
/// checkpoint only after a newer one has been saved.
pub struct KeepRecentAndBest {
    keep: usize,
    history: History,
    saved: Vec<usize>,
}

impl KeepRecentAndBest {
    /// `existing`: epochs already on disk (a resumed run's earlier checkpoints).
    pub fn new(keep: usize, history: History, existing: Vec<usize>) -> Self {
        Self {
            keep: keep.max(1),
            history,
            saved: existing,
        }
    }

    /// Save `epoch`'s checkpoint, and delete those that are neither recent nor the best.
    fn plan(&mut self, epoch: usize) -> Vec<CheckpointingAction> {
        self.saved.push(epoch);
        self.saved.sort_unstable();
        self.saved.dedup();
        let best = self.history.best_epoch();
        let recent = self.saved.len().saturating_sub(self.keep);
        let (old, _) = self.saved.split_at(recent);
        let delete: Vec<usize> = old.iter().copied().filter(|&e| Some(e) != best).collect();
        self.saved.retain(|e| !delete.contains(e));
        std::iter::once(CheckpointingAction::Save)
            .chain(delete.into_iter().map(CheckpointingAction::Delete))
            .collect()
    }
}

impl CheckpointingStrategy for KeepRecentAndBest {
    fn checkpointing(&mut self, epoch: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        self.plan(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::row;

    #[test]
    fn keeps_recent_and_best() {
        let history = History::new(vec![row(1, 3.0), row(2, 1.0), row(3, 2.0)]);
        let mut s = KeepRecentAndBest::new(2, history, vec![1, 2]);
        // epochs on disk: 1, 2; saving 3 keeps 2 (best) and 3, deletes 1.
        let actions = s.plan(3);
        assert_eq!(
            actions,
            vec![CheckpointingAction::Save, CheckpointingAction::Delete(1)]
        );
        // saving 4 keeps 3, 4 and the best (2).
        let actions = s.plan(4);
        assert_eq!(actions, vec![CheckpointingAction::Save]);
        assert_eq!(s.saved, vec![2, 3, 4]);
    }

    /// A record as rmp-serde writes it: a map whose leaf is `{bytes, shape, dtype}`.
    fn record(dtype: &str, shape: &[u64], len: usize) -> Vec<u8> {
        let tensor = Value::Map(vec![
            ("bytes".into(), Value::Binary(vec![0; len])),
            (
                "shape".into(),
                Value::Array(shape.iter().map(|&d| d.into()).collect()),
            ),
            ("dtype".into(), dtype.into()),
        ]);
        let root = Value::Map(vec![(
            "weight".into(),
            Value::Map(vec![("param".into(), tensor)]),
        )]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &root).unwrap();
        bytes
    }

    #[test]
    fn tensors_are_checked_against_the_model() {
        let want = vec![vec![2, 3]];
        assert_eq!(check_tensors(&record("F32", &[2, 3], 24), &want), Ok(()));
        let err = |bytes: Vec<u8>| match check_tensors(&bytes, &want).unwrap_err() {
            Refused::Unreadable(e) | Refused::Mismatch(e) => e,
        };
        assert!(err(record("I32", &[2, 3], 24)).contains("tagged I32"));
        assert!(err(record("F16", &[2, 3], 24)).contains("needs 12"));
        assert!(err(record("F32", &[3, 2], 24)).contains("expected [2, 3]"));
        assert!(err(record("F32", &[2, 3], 23)).contains("holds 23 bytes"));
        assert!(err(record("X9", &[2, 3], 24)).contains("unknown dtype"));
        let cut = record("F32", &[2, 3], 24);
        assert!(matches!(
            check_tensors(&cut[..cut.len() / 2], &want),
            Err(Refused::Unreadable(e)) if e.contains("truncated")
        ));
        assert!(err(b"garbage".to_vec()).contains("holds 0 tensors"));
    }
}
