//! The files `gpt prepare` reads: each `--input` file, or the `.txt`/`.jsonl` files under
//! an input directory, each once; a named dataset stands for its verified local copy.

use super::{bad, io_err};
use crate::Result;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Txt,
    Jsonl,
}

#[derive(Debug, Clone)]
pub(super) struct InputFile {
    pub path: PathBuf,
    pub format: Format,
    pub bytes: u64,
}

/// The files to read: each input file, or each `.txt`/`.jsonl` under an input directory
/// (in name order), as absolute paths.
pub(super) fn input_files(inputs: &[PathBuf]) -> Result<Vec<InputFile>> {
    fn format_of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "txt" => Some(Format::Txt),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }
    /// Walks `dir` (whose real path is the last of `ancestors`), following links to
    /// directories but refusing one that leads back to a directory it is inside.
    fn walk(dir: &Path, ancestors: &mut Vec<PathBuf>, seen: &mut Seen) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .map(|e| e.map(|e| e.path()).map_err(io_err(dir)))
            .collect::<Result<_>>()?;
        entries.sort();
        for path in entries {
            if path.is_dir() {
                let real = std::fs::canonicalize(&path).map_err(io_err(&path))?;
                if ancestors.contains(&real) {
                    return Err(bad(format!(
                        "{} leads back to {}, a directory it is inside: a loop (remove the link, or pass the directories it should add as --input)",
                        path.display(),
                        real.display()
                    )));
                }
                if seen.dirs.insert(real.clone()) {
                    ancestors.push(real);
                    walk(&path, ancestors, seen)?;
                    ancestors.pop();
                }
            } else if path.is_file() && format_of(&path).is_some() {
                seen.file(path)?;
            }
        }
        Ok(())
    }
    /// The directories walked and the files found, each once by its real path.
    #[derive(Default)]
    struct Seen {
        dirs: HashSet<PathBuf>,
        real_files: HashSet<PathBuf>,
        files: Vec<PathBuf>,
    }
    impl Seen {
        fn file(&mut self, path: PathBuf) -> Result<()> {
            let real = std::fs::canonicalize(&path).map_err(io_err(&path))?;
            if self.real_files.insert(real) {
                self.files.push(path);
            }
            Ok(())
        }
    }
    if inputs.is_empty() {
        return Err(bad("no --input given".into()));
    }
    let mut seen = Seen::default();
    for input in inputs {
        // A named dataset (`tinyshakespeare`) that is not a path here: its verified copy.
        let named = input
            .to_str()
            .filter(|name| !input.exists() && crate::source::Manifest::named(name).is_ok());
        let input = match named {
            Some(name) => crate::source::named_path(name)?,
            None => input.clone(),
        };
        let input = std::path::absolute(&input).map_err(io_err(&input))?;
        let meta = std::fs::metadata(&input).map_err(io_err(&input))?;
        if meta.is_dir() {
            let before = seen.files.len();
            let real = std::fs::canonicalize(&input).map_err(io_err(&input))?;
            if seen.dirs.insert(real.clone()) {
                walk(&input, &mut vec![real], &mut seen)?;
            }
            if seen.files.len() == before {
                return Err(bad(format!(
                    "{} holds no .txt or .jsonl file{}",
                    input.display(),
                    if before > 0 {
                        " that the inputs before it did not"
                    } else {
                        ""
                    }
                )));
            }
        } else if format_of(&input).is_none() {
            return Err(bad(format!(
                "{}: expected a .txt or .jsonl file, or a directory of them",
                input.display()
            )));
        } else {
            crate::source::check_regular_file(&input, u64::MAX)?;
            seen.file(input)?;
        }
    }
    seen.files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::metadata(&path).map_err(io_err(&path))?.len();
            let format = format_of(&path).expect("filtered by extension");
            Ok(InputFile {
                path,
                format,
                bytes,
            })
        })
        .collect()
}
