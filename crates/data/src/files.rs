//! The user's files, kept as a careful tool keeps them: every file `gpt` writes is written
//! atomically, every folder it writes into is checked to be its own first, and every
//! download has a deadline for each step.
//!
//! - [`AtomicFile`] / [`write_atomically`]: a temporary file beside the target, synced and
//!   renamed over it. A failure (a full disk, a directory in the way) or a kill leaves the
//!   old file as it was, and the temporary file is removed on every failure path.
//! - [`Folder`]: the one rule for "is this folder mine to write": missing, empty, or
//!   holding what this command writes (a run, a prepared directory, an export). Anything
//!   else is the user's, and is refused with a list of what is in it.
//! - [`http_agent`] / [`save_download`]: connect, response and per-read timeouts (a server that accepts and never
//!   answers is an error, not a hang), a progress bar on a terminal, the body streamed
//!   into an [`AtomicFile`].

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A file being written: bytes go to `.NAME.PID.tmp` beside `path`, and only
/// [`commit`](Self::commit) puts them in place. Dropped uncommitted, it removes its
/// temporary file.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Starts writing `path`; its folder must exist.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent(path).join(format!(".{name}.{}.tmp", std::process::id()));
        let file = File::create(&tmp)?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    /// Syncs the bytes, renames them over the target and syncs the folder (so the rename
    /// itself survives a power cut).
    pub fn commit(mut self) -> std::io::Result<()> {
        let file = self.file.as_ref().expect("a file until committed");
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        // In place: nothing for `drop` to remove.
        self.file = None;
        if let Ok(dir) = File::open(parent(&self.path)) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file
            .as_mut()
            .expect("a file until committed")
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("a file until committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically (see [`AtomicFile`]); `path`'s folder must exist.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// Whether `name` is an [`AtomicFile`]'s temporary (`.NAME.PID.tmp`), left by a kill.
fn is_temporary(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .and_then(|n| n.rsplit_once('.'))
        .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// The folder `path` is in (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// What a command writes into a folder of its own, so that it knows the folder is its.
pub struct Folder {
    /// What the folder holds when it is this command's, for messages ("a run").
    pub holds: &'static str,
    /// Files whose presence makes the folder this command's (`run.json`, `meta.json`).
    pub marks: &'static [&'static str],
    /// Whether a file of this name is one the command writes: a folder holding only such
    /// files (a killed command's leftovers, an earlier export) is its too.
    pub writes: fn(&str) -> bool,
    /// How the user gets past a refusal ("choose another --out-dir").
    pub hint: &'static str,
}

/// What [`Folder::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Missing, or holding nothing but the command's own files (and temporaries a kill left).
    Fresh,
    /// Holding one of the marks: the command's earlier work.
    Marked,
}

impl Folder {
    /// Whether `dir` is this command's to write; an error message naming what is in it
    /// when it is the user's.
    pub fn check(&self, dir: &Path) -> Result<Found, String> {
        let meta = match std::fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Fresh),
            Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
            Ok(meta) => meta,
        };
        if !meta.is_dir() {
            return Err(format!(
                "{} exists and is not a directory: {}",
                dir.display(),
                self.hint
            ));
        }
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if names.iter().any(|n| self.marks.contains(&n.as_str())) {
            return Ok(Found::Marked);
        }
        names.retain(|n| !(self.writes)(n) && !is_temporary(n));
        if names.is_empty() {
            return Ok(Found::Fresh);
        }
        names.sort();
        if names.len() > 5 {
            let more = names.len() - 4;
            names.truncate(4);
            names.push(format!("and {more} more"));
        }
        Err(format!(
            "{} is not empty and holds no {} (it has {}): {}",
            dir.display(),
            self.holds,
            names.join(", "),
            self.hint
        ))
    }
}

/// How long a download may wait for each step: the connection, the response's headers,
/// and each read of its body. A body that is merely slow keeps going; one that stops for
/// this long is an error.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP client every download uses: the timeouts above, redirects followed unless
/// `follow_redirects` is false (the hub's redirect carries the checksum in its headers).
pub fn http_agent(follow_redirects: bool) -> ureq::Agent {
    // `BURNGPT_HTTP_TIMEOUT_S` shortens all three (the stalled-server tests use it).
    let shortened = std::env::var("BURNGPT_HTTP_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64);
    let timeout = |t: Duration| Some(shortened.unwrap_or(t));
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(timeout(CONNECT_TIMEOUT))
        .timeout_recv_response(timeout(RESPONSE_TIMEOUT))
        .timeout_per_read(timeout(READ_TIMEOUT));
    if !follow_redirects {
        config = config.max_redirects(0).max_redirects_will_error(false);
    }
    config.build().into()
}

/// What a finished download looked like: its size and sha256.
pub struct Downloaded {
    pub bytes: u64,
    pub sha256: String,
}

/// Streams `body` (`size` bytes expected, never more than one past them read) into an
/// [`AtomicFile`] for `dest`, with a progress bar on a terminal. The caller checks the size
/// and sha256 and commits the file; dropping it leaves nothing behind.
pub fn save_download(
    body: impl Read,
    size: u64,
    dest: &Path,
) -> Result<(AtomicFile, Downloaded), String> {
    use sha2::Digest;
    let dir = parent(dest);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write_err = |e: std::io::Error| format!("cannot write {}: {e}", dest.display());
    let mut file = AtomicFile::create(dest).map_err(write_err)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "downloading [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar
    });
    let mut reader = body.take(size + 1);
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    let read = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(format!("the download stopped after {got} bytes: {e}")),
        };
        hasher.update(&buf[..n]);
        if let Err(e) = file.write_all(&buf[..n]) {
            break Err(write_err(e));
        }
        got += n as u64;
        if let Some(bar) = &bar {
            bar.inc(n as u64);
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    read?;
    if got > size {
        return Err(format!(
            "the server sent more than the expected {size} bytes"
        ));
    }
    let done = Downloaded {
        bytes: got,
        sha256: format!("{:x}", hasher.finalize()),
    };
    Ok((file, done))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("burngpt-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = temp_dir("atomic");
        let path = dir.join("a.txt");
        write_atomically(&path, b"old").unwrap();
        // A directory in the way of the rename.
        let blocked = dir.join("b");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("keep"), b"x").unwrap();
        assert!(write_atomically(&blocked, b"new").is_err());
        // Dropped before commit.
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(&dir), ["a.txt", "b"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_folder_is_ours_only_when_marked_or_holding_our_files() {
        let dir = temp_dir("folder");
        let folder = Folder {
            holds: "a test output",
            marks: &["mark.json"],
            writes: |n| n.ends_with(".partial"),
            hint: "choose another --out",
        };
        assert_eq!(folder.check(&dir.join("missing")), Ok(Found::Fresh));
        assert_eq!(folder.check(&dir), Ok(Found::Fresh));
        std::fs::write(dir.join("x.partial"), b"").unwrap();
        std::fs::write(dir.join(".x.json.4242.tmp"), b"").unwrap();
        assert_eq!(folder.check(&dir), Ok(Found::Fresh));
        std::fs::write(dir.join("train.bin"), b"mine").unwrap();
        let err = folder.check(&dir).unwrap_err();
        assert!(
            err.contains("holds no a test output (it has train.bin)"),
            "{err}"
        );
        std::fs::write(dir.join("mark.json"), b"{}").unwrap();
        assert_eq!(folder.check(&dir), Ok(Found::Marked));
        let err = folder.check(&dir.join("train.bin")).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
