//! `cargo xtask …`: the project's build recipes, written in Rust so they run wherever cargo does.
//!
//! - `cargo xtask train|sample|eval|bench|lecture [--backend B] [gpt args…]` builds the `gpt`
//!   binary in release with backend B's cargo feature and runs that subcommand.
//! - `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "burngpt build recipes")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    Flex,
    Ndarray,
    Wgpu,
    Cuda,
}

impl Backend {
    fn feature(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }
}

#[derive(Subcommand)]
enum Task {
    /// Build `gpt` in release for a backend and run `gpt <command> <args…>`.
    #[command(name = "train", alias = "sample")]
    Run {
        #[arg(long, value_enum, default_value = "flex")]
        backend: Backend,
        /// Arguments passed on to `gpt`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// What CI runs: fmt, clippy, tests, end-to-end smoke runs, GPU build checks.
    Ci {
        /// Skip the slow GPU-path checks (cuda compile check, wgpu smoke run).
        #[arg(long)]
        no_gpu_checks: bool,
    },
}

fn main() -> Result<()> {
    // `cargo xtask train …` arrives as args ["xtask", "train", …]; the subcommand name is
    // also the `gpt` subcommand to run.
    let argv: Vec<String> = std::env::args().collect();
    let gpt_command = argv.get(1).cloned().unwrap_or_default();
    match Cli::parse().command {
        Task::Run { backend, args } => {
            let gpt = build_release(backend)?;
            run(Command::new(gpt).arg(&gpt_command).args(args))
        }
        Task::Ci { no_gpu_checks } => ci(!no_gpu_checks),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Builds `gpt` in release with exactly one backend feature; returns the binary's path.
fn build_release(backend: Backend) -> Result<PathBuf> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "cli",
        "--no-default-features",
        "--features",
        backend.feature(),
    ]))?;
    Ok(target_dir().join("release/gpt"))
}

fn ci(gpu_checks: bool) -> Result<()> {
    let data_dir = std::env::var_os("BURNGPT_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/datasets"));
    if !data_dir.join("tinyshakespeare/input.txt").exists() {
        bail!(
            "CI needs Tiny Shakespeare at {}/tinyshakespeare/input.txt (set BURNGPT_DATA_DIR)",
            data_dir.display()
        );
    }
    // SAFETY of set_var: xtask is single-threaded here; children inherit the variable.
    unsafe { std::env::set_var("BURNGPT_DATA_DIR", &data_dir) };
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Tests and smoke runs share the dev profile (dependencies optimised), so burn is
    // built once for both.
    run(cargo().args(["test", "--workspace"]))?;
    smoke(&["--features", "flex"], "smoke-flex", 300, Some(2.6))?;
    if gpu_checks {
        // cuda: compile check only (no GPU here); cudarc loads the driver at run time.
        run(cargo().args([
            "check",
            "-p",
            "cli",
            "--no-default-features",
            "--features",
            "cuda",
        ]))?;
        // wgpu: a tiny real run on Mesa's software Vulkan (lavapipe).
        smoke(
            &["--no-default-features", "--features", "wgpu"],
            "smoke-wgpu",
            20,
            None,
        )?;
    }
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

/// Trains the CPU preset (with `overrides`) on real Tiny Shakespeare, checks the val loss
/// fell below `max_val`, samples from the run, resumes it for half as many iterations
/// again and checks the iteration count continued.
fn smoke(binary: &Path, name: &str, overrides: &[&str], max_val: Option<f64>) -> Result<()> {
    let out = target_dir().join(name);
    let _ = std::fs::remove_dir_all(&out);
    let dir = out.display().to_string();
    let gpt = |args: &[&str]| -> Result<String> {
        let mut cmd = Command::new(binary);
        cmd.args(args);
        eprintln!("xtask: {cmd:?}");
        let output = cmd.output()?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        print!("{stdout}");
        if !output.status.success() {
            bail!("gpt {} failed ({})", args.join(" "), output.status);
        }
        Ok(stdout)
    };
    let mut train = vec!["train", "--out-dir", &dir, "--sample-tokens", "0"];
    for kv in overrides {
        train.extend(["--set", kv]);
    }
    gpt(&train)?;
    let info = parse_info(&gpt(&["info", "--json", "--run", &dir])?)?;
    if let Some(max) = max_val
        && !(info.val_loss < max)
    {
        bail!("{name}: val loss {} is not below {max}", info.val_loss);
    }
    gpt(&[
        "sample",
        "--run",
        &dir,
        "--max-new-tokens",
        "100",
        "--prompt",
        "ROMEO:",
    ])?;
    let more = format!("max_iters={}", info.iter + info.iter / 2);
    gpt(&[
        "train",
        "--resume",
        "--out-dir",
        &dir,
        "--set",
        &more,
        "--sample-tokens",
        "0",
    ])?;
    let resumed = parse_info(&gpt(&["info", "--json", "--run", &dir])?)?;
    if resumed.iter != info.iter + info.iter / 2 {
        bail!(
            "{name}: resume went from {} to {} iterations, expected +50%",
            info.iter,
            resumed.iter
        );
    }
    eprintln!(
        "xtask: {name} ok (val loss {:.4} after {} iterations, resumed to {})",
        info.val_loss, info.iter, resumed.iter
    );
    Ok(())
}

/// The fields of `gpt info --json` that the smoke test checks.
#[derive(serde::Deserialize)]
struct Info {
    iter: usize,
    val_loss: f64,
}

fn parse_info(stdout: &str) -> Result<Info> {
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("parsing `gpt info --json` output {line:?}"))
}
