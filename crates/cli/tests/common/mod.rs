//! Helpers shared by the end-to-end tests: run the `gpt` binary, which finds Tiny
//! Shakespeare as a user's does (`BURNGPT_DATA_DIR`, which CI points at its shared copy;
//! else the cache, filled by one download).

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Overrides that make a model small enough to train in well under a second.
pub const TINY: &[&str] = &[
    "--set",
    "n_layer=1",
    "--set",
    "n_head=2",
    "--set",
    "n_embd=16",
    "--set",
    "block_size=16",
    "--set",
    "batch_size=4",
    "--set",
    "eval_iters=2",
    "--set",
    "eval_interval=10",
    "--set",
    "max_iters=20",
];

/// Tiny Shakespeare's verified local copy.
pub fn shakespeare_path() -> PathBuf {
    data::source::named_path("tinyshakespeare").expect("Tiny Shakespeare")
}

/// A fresh, empty path for this test process.
pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burngpt-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `gpt args…`, ready to run or spawn.
pub fn gpt_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpt"));
    cmd.args(args);
    cmd
}

pub fn gpt(args: &[&str]) -> Output {
    gpt_command(args).output().expect("the gpt binary runs")
}

/// Runs `gpt args…`, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = gpt(args);
    assert!(
        o.status.success(),
        "gpt {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The JSON object on the last line of `text`.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.lines().last().unwrap_or_default()).expect("one JSON object")
}

/// The arguments of `gpt train` into `dir` with the tiny model and `extra` arguments.
pub fn tiny_train_args<'a>(dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--out-dir",
        dir.to_str().unwrap(),
        "--sample-tokens",
        "0",
    ];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    args
}

/// `gpt train` into `dir` with the tiny model and extra arguments.
pub fn train_tiny(dir: &Path, extra: &[&str]) -> Output {
    gpt(&tiny_train_args(dir, extra))
}

/// Non-zero exit, and stderr is one `error:` line containing `expected` (no panic, no
/// backtrace).
pub fn check_one_error_line(args: &[&str], o: &std::process::Output, expected: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "gpt {args:?} should fail");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "gpt {args:?}: expected one line, got:\n{err}"
    );
    assert!(lines[0].starts_with("error: "), "gpt {args:?}: {err}");
    assert!(
        lines[0].contains(expected),
        "gpt {args:?}: expected {expected:?} in:\n{err}"
    );
}
