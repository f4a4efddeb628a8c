//! Where the training text comes from: a local file, or a named dataset described by a
//! manifest in `datasets/` (URL, size, sha256), found locally or downloaded once into a cache.

use crate::{DataError, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// Either a text file the user names, or one of the datasets in `datasets/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextSource {
    Path(PathBuf),
    Named(String),
}

impl fmt::Display for TextSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextSource::Path(p) => write!(f, "{}", p.display()),
            TextSource::Named(n) => write!(f, "dataset {n}"),
        }
    }
}

/// The largest text the in-memory path reads (it holds the text and its token ids).
pub const MAX_TEXT_BYTES: u64 = 1 << 30;

/// The dataset manifests, compiled in so the binary needs no checkout to find them.
const MANIFESTS: &[&str] = &[include_str!(
    "../../../datasets/tinyshakespeare/manifest.toml"
)];

/// One `datasets/<name>/manifest.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub file: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    /// The manifest of a named dataset.
    pub fn named(name: &str) -> Result<Manifest> {
        let all: Vec<Manifest> = MANIFESTS
            .iter()
            .map(|m| toml::from_str(m).expect("the compiled-in manifests are valid TOML"))
            .collect();
        let known = all
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        all.iter()
            .find(|m| m.name == name)
            .cloned()
            .ok_or_else(|| DataError::UnknownDataset {
                name: name.to_string(),
                known,
            })
    }

    /// Checks `bytes` against the manifest's size and sha256.
    fn verify(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.check(
            path,
            bytes.len() as u64,
            &format!("{:x}", Sha256::digest(bytes)),
        )
    }

    /// Refuses `path`'s content unless its size and sha256 are the manifest's.
    fn check(&self, path: &Path, size: u64, digest: &str) -> Result<()> {
        let reason = if size != self.size {
            format!("{size} bytes, expected {}", self.size)
        } else if digest == self.sha256 {
            return Ok(());
        } else {
            format!("sha256 {digest}, expected {}", self.sha256)
        };
        Err(DataError::Checksum {
            name: self.name.clone(),
            path: path.display().to_string(),
            reason,
        })
    }
}

/// Reads the text of `source`. Named datasets are looked up in `$BURNGPT_DATA_DIR`, then
/// the cache (`$BURNGPT_CACHE`, else the platform cache dir), then downloaded — from
/// `$BURNGPT_MIRROR/<name>/<file>` when that is set (a local mirror or proxy), else from
/// the manifest's URL.
pub fn load_text(source: &TextSource) -> Result<String> {
    match source {
        TextSource::Path(path) => read_text(path),
        TextSource::Named(name) => read_text(&named_path(name)?),
    }
}

/// The verified local copy of a named dataset, found (or downloaded) as [`load_text`]
/// says. Tests use it too, so that a clone downloads Tiny Shakespeare once and CI reads
/// its shared copy through `BURNGPT_DATA_DIR`.
pub fn named_path(name: &str) -> Result<PathBuf> {
    let mut manifest = Manifest::named(name)?;
    if let Ok(mirror) = std::env::var("BURNGPT_MIRROR") {
        let base = mirror.trim_end_matches('/');
        manifest.url = format!("{base}/{}/{}", manifest.name, manifest.file);
    }
    let data_dir = std::env::var_os("BURNGPT_DATA_DIR").map(PathBuf::from);
    locate(&manifest, data_dir.as_deref(), &cache_dir())
}

/// The cache for downloaded datasets.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BURNGPT_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("burngpt")))
        .unwrap_or_else(|| PathBuf::from(".cache/burngpt"))
}

/// Finds a verified local copy of a named dataset, downloading it into `cache` if needed.
pub fn locate(manifest: &Manifest, data_dir: Option<&Path>, cache: &Path) -> Result<PathBuf> {
    if let Some(dir) = data_dir {
        let path = dir.join(&manifest.name).join(&manifest.file);
        if path.exists() {
            manifest.verify(&path, &read_bytes(&path)?)?;
            return Ok(path);
        }
    }
    let path = cache.join(&manifest.name).join(&manifest.file);
    if path.exists() {
        manifest.verify(&path, &read_bytes(&path)?)?;
        return Ok(path);
    }
    download(manifest, &path)?;
    Ok(path)
}

/// Downloads to a temporary file beside `dest`, verifies it, then renames it into place,
/// so an interrupted download never leaves a file that looks complete.
fn download(manifest: &Manifest, dest: &Path) -> Result<()> {
    let fail = |reason: String| DataError::Download {
        name: manifest.name.clone(),
        url: manifest.url.clone(),
        reason,
    };
    let response = crate::files::http_agent(true)
        .get(&manifest.url)
        .call()
        .map_err(|e| fail(e.to_string()))?;
    let (file, got) =
        crate::files::save_download(response.into_body().into_reader(), manifest.size, dest)
            .map_err(fail)?;
    manifest.check(Path::new(&manifest.url), got.bytes, &got.sha256)?;
    file.commit().map_err(|err| DataError::Write {
        path: dest.display().to_string(),
        err,
    })
}

/// Refuses a path that is not a regular file, or one larger than `max` bytes.
pub fn check_regular_file(path: &Path, max: u64) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|err| DataError::Io {
        path: path.display().to_string(),
        err,
    })?;
    let reason = if !meta.is_file() {
        "it is not a regular file".to_string()
    } else if meta.len() > max {
        format!("it has {} bytes, more than the limit of {max}", meta.len())
    } else {
        return Ok(());
    };
    Err(DataError::TooLarge {
        path: path.display().to_string(),
        reason,
    })
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| DataError::Io {
        path: path.display().to_string(),
        err,
    })
}

/// Reads a UTF-8 text file, refusing empty and non-UTF-8 files, and anything that is not
/// a regular file of at most [`MAX_TEXT_BYTES`] (a device such as `/dev/zero` never ends),
/// with a clear message, before reading it.
pub fn read_text(path: &Path) -> Result<String> {
    check_regular_file(path, MAX_TEXT_BYTES)?;
    let bytes = read_bytes(path)?;
    let name = || path.display().to_string();
    if bytes.is_empty() {
        return Err(DataError::Empty { path: name() });
    }
    String::from_utf8(bytes).map_err(|e| DataError::NotUtf8 {
        path: name(),
        offset: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Tiny Shakespeare, found as users find it: `BURNGPT_DATA_DIR` (CI's shared copy),
    /// the cache, or one download.
    pub(crate) fn shakespeare() -> String {
        read_text(&named_path("tinyshakespeare").unwrap()).unwrap()
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("burngpt-data-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn finds_and_verifies_the_shared_copy() {
        assert_eq!(shakespeare().len(), 1_115_394);
    }

    #[test]
    fn unknown_dataset_lists_the_known_ones() {
        let msg = Manifest::named("wikitext").unwrap_err().to_string();
        assert!(
            msg.contains("tinyshakespeare") && msg.contains("--data"),
            "{msg}"
        );
    }

    #[test]
    fn no_network_fails_fast_naming_the_flag() {
        let mut manifest = Manifest::named("tinyshakespeare").unwrap();
        // Port 9 (discard) on loopback refuses at once, like a machine without network.
        manifest.url = "http://127.0.0.1:9/input.txt".into();
        let cache = temp_dir("cache");
        let start = std::time::Instant::now();
        let msg = locate(&manifest, None, &cache).unwrap_err().to_string();
        assert!(start.elapsed().as_secs() < 10);
        assert!(
            msg.contains("--data PATH") && msg.contains("BURNGPT_DATA_DIR"),
            "{msg}"
        );
        assert!(!cache.join("tinyshakespeare/input.txt").exists());
    }

    #[test]
    fn a_corrupt_cached_copy_is_refused() {
        let manifest = Manifest::named("tinyshakespeare").unwrap();
        let cache = temp_dir("corrupt");
        std::fs::create_dir_all(cache.join("tinyshakespeare")).unwrap();
        std::fs::write(cache.join("tinyshakespeare/input.txt"), "not shakespeare").unwrap();
        let msg = locate(&manifest, None, &cache).unwrap_err().to_string();
        assert!(msg.contains("expected 1115394"), "{msg}");
    }

    #[test]
    fn devices_and_huge_files_are_refused_before_reading() {
        let msg = read_text(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(msg.contains("not a regular file"), "{msg}");
        let dir = temp_dir("huge");
        let path = dir.join("big.txt");
        std::fs::write(&path, "0123456789").unwrap();
        let msg = check_regular_file(&path, 4).unwrap_err().to_string();
        assert!(msg.contains("more than the limit of 4"), "{msg}");
    }

    #[test]
    fn empty_and_non_utf8_files_are_refused() {
        let dir = temp_dir("bad");
        let empty = dir.join("empty.txt");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(read_text(&empty), Err(DataError::Empty { .. })));
        let binary = dir.join("binary.bin");
        std::fs::write(&binary, [b'o', b'k', 0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_text(&binary),
            Err(DataError::NotUtf8 { offset: 2, .. })
        ));
        let missing = dir.join("missing.txt");
        assert!(matches!(read_text(&missing), Err(DataError::Io { .. })));
    }
}
