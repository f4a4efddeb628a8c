//! A prepared directory written as two keys, `dataset = "prepared"` and `data_dir =
//! "DIR"`: the form config files and run directories' `config.toml` may hold (such a
//! `config.toml` holds `data_dir = ""` for every other dataset). Read here, and only
//! here, as the one form `dataset = "prepared:DIR"`.

use crate::TrainError;
use data::Dataset;

const DATA_DIR: &str = "data_dir";
/// The dataset string that named the directory in `data_dir`.
const PREPARED: &str = "prepared";

/// Folds `[train] data_dir` into `[train] dataset`: `"prepared"` (or a prepared
/// directory) with `data_dir = "DIR"` becomes `"prepared:DIR"`; an empty `data_dir` is
/// dropped. A `data_dir` beside any other dataset is refused.
pub(super) fn fold_data_dir(table: &mut toml::Table) -> Result<(), TrainError> {
    let Some(train) = table.get_mut("train").and_then(|t| t.as_table_mut()) else {
        return Ok(());
    };
    let dir = match train.remove(DATA_DIR) {
        None => return Ok(()),
        Some(toml::Value::String(dir)) => dir,
        Some(other) => {
            return Err(TrainError::Config(format!(
                "{DATA_DIR} expects a directory (a string), got {}",
                other.type_str()
            )));
        }
    };
    if dir.is_empty() {
        return Ok(());
    }
    let dataset = match train.get("dataset") {
        Some(toml::Value::String(d)) => d.clone(),
        _ => crate::TrainConfig::default().dataset.to_string(),
    };
    let names_a_directory =
        dataset == PREPARED || matches!(dataset.parse(), Ok(Dataset::Prepared(_)));
    if !names_a_directory {
        return Err(TrainError::Config(format!(
            "{DATA_DIR} is read only with dataset = \"{PREPARED}\" (dataset is {dataset:?}); drop {DATA_DIR}, or write dataset = \"prepared:DIR\""
        )));
    }
    let folded = Dataset::Prepared(dir.into()).to_string();
    train.insert("dataset".into(), toml::Value::String(folded));
    Ok(())
}

/// Lets `--set data_dir=DIR` name the key: `--set` accepts the keys of `defaults`.
pub(super) fn add_keys(defaults: &mut toml::Table) {
    if let Some(train) = defaults.get_mut("train").and_then(|t| t.as_table_mut()) {
        train.insert(DATA_DIR.into(), toml::Value::String(String::new()));
    }
}

#[cfg(test)]
mod tests {
    use crate::RunConfig;
    use data::Dataset;

    fn prepared(dir: &str) -> Dataset {
        Dataset::Prepared(dir.into())
    }

    #[test]
    fn two_keys_read_as_one_dataset() {
        let old = "[train]\ndataset = \"prepared\"\ndata_dir = \"/data/x\"\n";
        let config = RunConfig::from_toml(old).unwrap();
        assert_eq!(config.train.dataset, prepared("/data/x"));
        assert!(config.to_toml().contains("dataset = \"prepared:/data/x\""));
        assert!(!config.to_toml().contains("data_dir"));
        let text = "[train]\ndataset = \"tinyshakespeare\"\ndata_dir = \"\"\n";
        assert_eq!(RunConfig::from_toml(text).unwrap(), RunConfig::default());
    }

    #[test]
    fn set_data_dir_still_names_the_directory() {
        let load = |o: &[&str]| {
            let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
            RunConfig::load(None, &o)
        };
        let c = load(&["dataset=prepared", "data_dir=data/x"]).unwrap();
        assert_eq!(c.train.dataset, prepared("data/x"));
        let c = load(&["dataset=prepared:data/x", "data_dir=data/y"]).unwrap();
        assert_eq!(c.train.dataset, prepared("data/y"));
        let msg = load(&["data_dir=data/x"]).unwrap_err().to_string();
        assert!(msg.contains("only with dataset = \"prepared\""), "{msg}");
        let msg = load(&["dataset=prepared"]).unwrap_err().to_string();
        assert!(msg.contains("prepared:DIR"), "{msg}");
    }
}
