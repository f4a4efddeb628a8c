//! Whether `gpt prepare` has nothing to do: the directory already holds these inputs
//! (paths, sizes, sha256), prepared with these options.

use super::inputs::InputFile;
use super::meta::{Meta, SplitRecord, check_token_files, read_meta};
use super::write::PrepareOptions;
use super::{bad, io_err};
use crate::Result;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::Path;

/// The directory's meta when it already holds exactly these inputs (paths, sizes,
/// sha256) prepared with these options; an error naming the difference otherwise. A
/// directory whose token files were damaged is prepared again (`None`).
pub(super) fn unchanged(
    out: &Path,
    opts: &PrepareOptions,
    files: &[InputFile],
    split: &SplitRecord,
) -> Result<Option<Meta>> {
    let meta = match read_meta(out) {
        Ok(meta) => meta,
        Err(e) => {
            return Err(bad(format!(
                "{e}; add --force to prepare {} again",
                out.display()
            )));
        }
    };
    let differs = |what: String| {
        Err(bad(format!(
            "{} already holds data prepared {what}; add --force to replace it, or choose another --out",
            out.display()
        )))
    };
    if !opts.tokenizer.made(&meta.tokenizer) {
        return differs(format!(
            "with the {} tokenizer",
            meta.tokenizer.kind().name()
        ));
    }
    if meta.split != *split {
        return differs(format!(
            "with --val-fraction {} ({:?} split)",
            meta.split.val_fraction, meta.split.rule
        ));
    }
    let listed: Vec<(&Path, u64)> = files.iter().map(|f| (f.path.as_path(), f.bytes)).collect();
    let recorded: Vec<(&Path, u64)> = meta
        .inputs
        .iter()
        .map(|r| (r.path.as_path(), r.bytes))
        .collect();
    if listed != recorded {
        return differs("from other inputs (paths or sizes differ)".into());
    }
    for (f, r) in files.iter().zip(&meta.inputs) {
        if sha256_file(&f.path)? != r.sha256 {
            return differs(format!(
                "from another version of {} (its sha256 changed)",
                f.path.display()
            ));
        }
    }
    Ok(check_token_files(out, &meta).is_ok().then_some(meta))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io_err(path))?;
    Ok(format!("{:x}", hasher.finalize()))
}
