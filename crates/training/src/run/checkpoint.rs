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
use burn::module::ParamId;
use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::metric::store::EventStoreClient;
use rmpv::Value;

/// Why a file is not a checkpoint of the run's model.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Not readable as a record at all (truncated, not MessagePack, a tensor whose bytes
    /// do not fill its shape, a parameter id Burn cannot parse).
    Unreadable(String),
    /// A readable record of another model.
    Mismatch(String),
}

/// Checks that the MessagePack checkpoint `bytes` holds exactly the f32 tensors of
/// `expected` shapes, in order. The error says what differs.
pub fn check_tensors(bytes: &[u8], expected: &[Vec<usize>]) -> Result<(), Refused> {
    let value = read(bytes)?;
    let mut found = Vec::new();
    collect(&value, &mut found).map_err(Refused::Unreadable)?;
    check_found(&found, expected).map_err(Refused::Mismatch)
}

/// Checks that the optimizer checkpoint `optim` holds the optimizer's state for the
/// parameters of the model checkpoint `model` (itself already checked): AdamW's states,
/// then Muon's (see `optim::OptimizerRecord`; a file written before Muon holds AdamW's
/// alone), each key one of that model's parameter ids, each state tagged with that
/// parameter's rank (2 for Muon's matrices), each moment an f32 tensor of its shape.
/// Burn trusts all of this: a wrong id or rank panics as the file loads, a wrong shape at
/// the first step.
pub fn check_optimizer(optim: &[u8], model: &[u8]) -> Result<(), Refused> {
    let model = read(model)?;
    let mut params = Vec::new();
    param_shapes(&model, &mut params);
    let optim = read(optim)?;
    let none = || Refused::Unreadable("it holds no optimizer state".into());
    // Each group's states, and the one rank it takes (Muon's matrices).
    type Group<'a> = (&'a [(Value, Value)], Option<usize>);
    let groups: Vec<Group> = match field(&optim, "item") {
        Some(Value::Array(groups)) if groups.len() == 2 => vec![
            (groups[0].as_map().ok_or_else(none)?, None),
            (groups[1].as_map().ok_or_else(none)?, Some(2)),
        ],
        Some(Value::Map(states)) => vec![(states, None)],
        _ => return Err(none()),
    };
    for (states, rank) in groups {
        check_states(states, rank, &params)?;
    }
    Ok(())
}

/// One optimizer group's states (see [`check_optimizer`]); `rank`: the only rank the
/// group takes.
fn check_states(
    states: &[(Value, Value)],
    rank: Option<usize>,
    params: &[(String, Vec<usize>)],
) -> Result<(), Refused> {
    for (key, state) in states {
        let id = key
            .as_str()
            .filter(|id| param_id_parses(id))
            .ok_or_else(|| Refused::Unreadable(format!("a parameter's id ({key}) is damaged")))?;
        let shape = params
            .iter()
            .find(|(p, _)| p == id)
            .map(|(_, shape)| shape)
            .ok_or_else(|| {
                Refused::Mismatch(format!(
                    "it holds state for a parameter ({id}) the model lacks"
                ))
            })?;
        match rank_tag(state) {
            Some(r) if r == shape.len() && rank.is_none_or(|rank| rank == r) => {}
            _ => {
                return Err(Refused::Mismatch(format!(
                    "the state of parameter {id} is not tagged with its rank, {}, or its optimizer does not take that rank",
                    shape.len()
                )));
            }
        }
        let mut moments = Vec::new();
        collect(state, &mut moments).map_err(Refused::Unreadable)?;
        if moments.is_empty() {
            return Err(Refused::Unreadable(format!(
                "parameter {id} has no moments"
            )));
        }
        if let Some((got, dtype)) = moments.iter().find(|(s, d)| s != shape || d != "F32") {
            return Err(Refused::Mismatch(format!(
                "a moment of parameter {id} is a {dtype} tensor of shape {got:?}, the parameter an F32 one of shape {shape:?}"
            )));
        }
    }
    Ok(())
}

fn read(bytes: &[u8]) -> Result<Value, Refused> {
    rmpv::decode::read_value(&mut &bytes[..])
        .map_err(|e| Refused::Unreadable(format!("it is truncated or not a checkpoint ({e})")))
}

/// The entry `name` of a map.
fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// Every parameter's id and shape (`{id, param: {shape, …}}`) under `value`.
fn param_shapes(value: &Value, found: &mut Vec<(String, Vec<usize>)>) {
    let shape = field(value, "param")
        .and_then(|p| field(p, "shape"))
        .and_then(Value::as_array)
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        });
    if let (Some(id), Some(shape)) = (field(value, "id").and_then(Value::as_str), shape) {
        found.push((id.to_string(), shape));
        return;
    }
    match value {
        Value::Map(entries) => entries.iter().for_each(|(_, v)| param_shapes(v, found)),
        Value::Array(items) => items.iter().for_each(|v| param_shapes(v, found)),
        _ => {}
    }
}

/// The rank of an optimizer state, from its `RankN` tag (Burn's `AdaptorRecordItemV1`).
fn rank_tag(value: &Value) -> Option<usize> {
    value.as_map()?.iter().find_map(|(k, v)| {
        k.as_str()
            .and_then(|k| k.strip_prefix("Rank"))
            .and_then(|n| n.parse().ok())
            .or_else(|| rank_tag(v))
    })
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
            let field = |name: &str| field(value, name);
            if let (Some(id), Some(_)) = (field("id"), field("param")) {
                let id = id.as_str().ok_or("a parameter's id is not a string")?;
                if !param_id_parses(id) {
                    return Err(format!("a parameter's id ({id:?}) is damaged"));
                }
            }
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

/// Whether Burn reads `id` as a parameter's id: its `ParamId::deserialize` panics on an
/// id it cannot parse, and on a base-32 one of more than its 8 bytes (13 characters). An
/// older Burn's UUIDs (with their hyphens, which base 32 lacks) still parse.
pub(crate) fn param_id_parses(id: &str) -> bool {
    (id.len() <= 13 || id.contains('-')) && ParamId::try_deserialize(id).is_some()
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
        record_with_id(&ParamId::new().serialize(), dtype, shape, len)
    }

    /// [`record`] with the parameter's id `id`.
    fn record_with_id(id: &str, dtype: &str, shape: &[u64], len: usize) -> Vec<u8> {
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
            Value::Map(vec![("id".into(), id.into()), ("param".into(), tensor)]),
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

    /// Burn panics on a parameter id it cannot read: such a file is refused before it
    /// gets there (found by `damaged_checkpoints_never_panic`).
    #[test]
    fn damaged_parameter_ids_are_refused() {
        let want = vec![vec![2, 3]];
        let uuid = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(
            check_tensors(&record_with_id(uuid, "F32", &[2, 3], 24), &want),
            Ok(())
        );
        // A byte zeroed inside the id; an id of more than 8 bytes in base 32 (Burn would
        // copy it into an 8-byte buffer); a UUID without its hyphens (base 32 reads it).
        let mut zeroed = ParamId::new().serialize().into_bytes();
        zeroed[3] = 0;
        let zeroed = String::from_utf8(zeroed).unwrap();
        for id in [zeroed.as_str(), "0123456789abcdef", &uuid.replace('-', "")] {
            assert!(
                matches!(
                    check_tensors(&record_with_id(id, "F32", &[2, 3], 24), &want),
                    Err(Refused::Unreadable(e)) if e.contains("id")
                ),
                "{id:?}"
            );
        }
    }
}
