//! `cargo xtask …`: the project's build recipes, written in Rust so they run wherever cargo does.
//!
//! - `cargo xtask train|sample|chat|serve|eval|info|plot|attention|lecture|bench|prepare|export
//!   [--backend B] [--] [gpt args…]` (the subcommands of `GPT_COMMANDS`) builds
//!   the `gpt` binary (the dev profile, which `cargo run -p cli` uses too) with backend B's
//!   cargo feature (default flex) and runs that
//!   `gpt` subcommand with the other arguments, e.g.
//!   `cargo xtask train --backend cuda --config experiments/shakespeare_char.toml`. An
//!   optional `--` ends xtask's own flags: everything after it goes to `gpt` untouched
//!   (`cargo xtask train -- --config experiments/bigram.toml`).
//! - `cargo xtask bench --compare-torch PYTHON [--torch-sdpa 1]`: `gpt bench` and the
//!   PyTorch reference (`experiments/torch_gpt.py`) on the same config, alternating, and
//!   their ratio; `--torch-sdpa 1` gives PyTorch its fused `scaled_dot_product_attention`
//!   instead of the explicit path.
//! - `cargo xtask ci [--no-gpu-checks] [--require-system-packages]`: everything CI checks, in
//!   the order that fails fastest, ending with `readme` and the data-parallel (MPI) tests.
//! - `cargo xtask readme [--no-gpu-checks] [--require-system-packages]`: runs every shell
//!   command of README.md and of the `docs/` pages it links, shrunk to seconds (see
//!   `readme.rs`).
//!
//! Environment: `CARGO_TARGET_DIR` (the one target directory), `CI=true` implies
//! `--require-system-packages`, which `ci` hands its tests as
//! `BURNGPT_REQUIRE_SYSTEM_PACKAGES=1`; `BURNGPT_CLIENTS_PYTHON` (a Python with
//! `crates/cli/tests/clients/requirements.txt`) and Debian's `chromium chromium-driver` for
//! the tests that drive `gpt serve` with real clients.

/// The font list `gpt plot` searches, the very file.
#[path = "../../crates/cli/src/fonts.rs"]
mod fonts;
mod readme;
mod system;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "usage: cargo xtask <train|sample|chat|serve|eval|info|plot|attention|lecture|bench|prepare|export> [--backend flex|ndarray|wgpu|cuda] [--] [gpt args…]
       cargo xtask bench [--backend B] --compare-torch PYTHON [--rounds N] [--torch-sdpa 0|1] [--] [gpt bench args…]
       cargo xtask ci [--no-gpu-checks] [--require-system-packages]
       cargo xtask readme [--no-gpu-checks] [--require-system-packages]
environment: CI=true implies --require-system-packages";

/// `gpt` subcommands that xtask builds and runs: all of `gpt`'s, so that any of them can be
/// given a backend the same way. `USAGE` lists them (tested).
const GPT_COMMANDS: &[&str] = &[
    "train",
    "sample",
    "chat",
    "serve",
    "eval",
    "info",
    "plot",
    "attention",
    "lecture",
    "bench",
    "prepare",
    "export",
];
const BACKENDS: &[&str] = &["flex", "ndarray", "wgpu", "cuda"];

fn main() -> std::process::ExitCode {
    match xtask() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn xtask() -> Result<()> {
    // Hand-parsed on purpose: everything but xtask's own flags goes to `gpt` untouched,
    // flags included, so `cargo xtask train --config X --set k=v` needs no `--`; a `--`
    // (optional) ends xtask's flags, and what follows it is forwarded as it is.
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(command @ ("ci" | "readme")) => {
            let mut gpu_checks = true;
            let mut require = system::required_by_env();
            for flag in &args[1..] {
                match flag.as_str() {
                    "--no-gpu-checks" => gpu_checks = false,
                    "--require-system-packages" => require = true,
                    _ => bail!("{USAGE}"),
                }
            }
            if command == "ci" {
                ci(gpu_checks, require)
            } else {
                set_data_dir()?;
                readme::run(gpu_checks, require)
            }
        }
        Some("bench") => {
            let (own, forwarded) = split_forwarded(&args[1..]);
            let (backend, rest) = take_backend(own)?;
            let (python, rest) = take_value(&rest, "--compare-torch")?;
            let (rounds, rest) = take_value(&rest, "--rounds")?;
            let (sdpa, mut rest) = take_value(&rest, "--torch-sdpa")?;
            rest.extend_from_slice(forwarded);
            let gpt = build_gpt(&backend)?;
            match python {
                None => run(Command::new(gpt).arg("bench").args(rest)),
                Some(python) => {
                    let rounds = rounds.as_deref().unwrap_or("3").parse()?;
                    let sdpa = sdpa.unwrap_or_else(|| "0".into());
                    compare_torch(&gpt, &python, rounds, &sdpa, &rest)
                }
            }
        }
        Some(command) if GPT_COMMANDS.contains(&command) => {
            let (own, forwarded) = split_forwarded(&args[1..]);
            let (backend, mut rest) = take_backend(own)?;
            rest.extend_from_slice(forwarded);
            let gpt = build_gpt(&backend)?;
            run(Command::new(gpt).arg(command).args(rest))
        }
        _ => bail!("{USAGE}"),
    }
}

/// Splits the arguments at the first `--`: xtask's flags (mixed with `gpt` arguments)
/// before it, arguments forwarded to `gpt` as they are after it.
fn split_forwarded(args: &[String]) -> (&[String], &[String]) {
    match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[]),
    }
}

/// Splits `--flag VALUE` (or `--flag=VALUE`) from the other arguments.
fn take_value(args: &[String], flag: &str) -> Result<(Option<String>, Vec<String>)> {
    let mut value = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == flag {
            value = Some(
                it.next()
                    .with_context(|| format!("{flag} needs a value"))?
                    .clone(),
            );
        } else if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
            value = Some(v.to_string());
        } else {
            rest.push(a.clone());
        }
    }
    Ok((value, rest))
}

/// `gpt bench` and the PyTorch reference (`experiments/torch_gpt.py`, or
/// `$BURNGPT_TORCH_SCRIPT`) on the same model and batch shape, alternating, `rounds` times
/// each; prints both medians and their ratio. `sdpa` is the reference's `--sdpa` flag.
fn compare_torch(
    gpt: &Path,
    python: &str,
    rounds: usize,
    sdpa: &str,
    bench_args: &[String],
) -> Result<()> {
    let script = std::env::var_os("BURNGPT_TORCH_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("experiments/torch_gpt.py"));
    let (mut burn_ms, mut torch_ms) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let out = output(
            Command::new(gpt)
                .args(["bench", "--json", "--sample-tokens", "0"])
                .args(bench_args),
        )?;
        let b: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or_default())
            .context("parsing `gpt bench --json`")?;
        let get = |k: &str| b[k].to_string();
        let text = |k: &str| b[k].as_str().unwrap_or_default().to_string();
        let flag = |k: &str| if b[k] == true { "1" } else { "0" }.to_string();
        if b["n_kv_head"] != b["n_head"] || b["logit_softcap"].as_f64().unwrap_or(0.0) != 0.0 {
            bail!(
                "the PyTorch reference has no grouped-query attention and no logit soft-cap: \
                 compare with n_kv_head = 0 and logit_softcap = 0"
            );
        }
        let steps = b["steps"].as_u64().unwrap_or(0) + b["warmup"].as_u64().unwrap_or(0);
        let out = output(
            Command::new(python)
                .arg(&script)
                .args([
                    "--batch_size",
                    &get("batch_size"),
                    "--block_size",
                    &get("block_size"),
                ])
                .args(["--n_layer", &get("n_layer"), "--n_head", &get("n_head")])
                .args(["--n_embd", &get("n_embd"), "--dropout", &get("dropout")])
                .args(["--grad_clip", &get("grad_clip"), "--decay_all", "0"])
                // The model's switches (GPT-2's and the lecture's), and its vocabulary.
                .args(["--vocab_size", &get("vocab_size"), "--bias", &flag("bias")])
                .args([
                    "--qkv_bias",
                    &flag("qkv_bias"),
                    "--tie_weights",
                    &flag("tie_weights"),
                ])
                .args(["--scaled_init", &flag("scaled_init")])
                .args(["--activation", &text("activation")])
                // The modern switches, and the optimizer (Muon's cost is its iterations).
                .args(["--rope", &flag("rope"), "--rope_theta", &get("rope_theta")])
                .args(["--norm", &text("norm"), "--qk_norm", &flag("qk_norm")])
                .args(["--optimizer", &text("optimizer")])
                .args(["--muon_ns_steps", &get("muon_ns_steps")])
                .args(["--layer_norm_eps", &get("layer_norm_eps")])
                .args(["--sdpa", sdpa])
                .args(["--dtype", b["dtype"].as_str().unwrap_or("float32")])
                .args([
                    "--max_iters",
                    &steps.to_string(),
                    "--timing_warmup",
                    &get("warmup"),
                ])
                .args([
                    "--eval_interval",
                    "0",
                    "--final_eval",
                    "0",
                    "--log_interval",
                    "1000000",
                ])
                .env("OMP_WAIT_POLICY", "PASSIVE"),
        )?;
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .context("the PyTorch reference printed no RESULT line")?;
        let t: serde_json::Value = serde_json::from_str(line)?;
        let (bm, tm) = (
            b["ms_per_step"].as_f64().unwrap_or(f64::NAN),
            t["median_ms_per_iter"].as_f64().unwrap_or(f64::NAN),
        );
        println!(
            "round {round}: burn {bm:.1} ms/step ({}), PyTorch {tm:.1} ms/step ({})",
            text("optimizer"),
            t["optimizer"].as_str().unwrap_or("adamw")
        );
        burn_ms.push(bm);
        torch_ms.push(tm);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (bm, tm) = (median(&mut burn_ms), median(&mut torch_ms));
    println!(
        "median over {rounds} rounds: burn {bm:.1} ms/step, PyTorch {tm:.1} ms/step; burn speed = {:.2}× PyTorch",
        tm / bm
    );
    Ok(())
}

/// Runs `cmd` and returns its stdout, failing with its stderr.
fn output(cmd: &mut Command) -> Result<String> {
    eprintln!("xtask: {cmd:?}");
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Splits `--backend B` (or `--backend=B`, default flex) from the arguments meant for `gpt`.
fn take_backend(args: &[String]) -> Result<(String, Vec<String>)> {
    let (backend, rest) = take_value(args, "--backend")?;
    let backend = backend.unwrap_or_else(|| "flex".to_string());
    if !BACKENDS.contains(&backend.as_str()) {
        bail!(
            "unknown backend {backend:?}: one of {}",
            BACKENDS.join(", ")
        );
    }
    Ok((backend, rest))
}

/// The workspace root of the checkout this xtask was run from. `cargo run` tells the
/// process its package's directory at run time; the compile-time one can be another
/// checkout's: clones sharing a target dir reuse each other's xtask binary, as its
/// sources' dates do not change.
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The cargo that runs xtask, in the workspace root. `cargo run` gave this process the
/// variables that describe xtask's own package (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, …);
/// some build scripts (ring's) rerun when those change, so passing them on would rebuild
/// them at every switch between `cargo build` and `cargo xtask`.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let package_var = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix));
        if package_var || name == "CARGO_PRIMARY_PACKAGE" {
            c.env_remove(&*name);
        }
    }
    c
}

/// `cargo <verb…> -p cli` with exactly one backend feature: the backend is chosen at
/// compile time, and flex, the default, must not be built in beside it.
fn cargo_cli(verb: &[&str], backend: &str) -> Command {
    let mut c = cargo();
    c.args(verb)
        .args(["-p", "cli", "--no-default-features", "--features", backend]);
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

/// Builds `gpt` with exactly one backend feature in the dev profile, the one `cargo run -p
/// cli` builds (Cargo.toml tunes it for training speed); returns the binary's path. The
/// default backend (flex) is built by exactly `cargo build -p cli`, so that the README's
/// `cargo run -p cli -- …` after `cargo xtask train` finds every unit built.
fn build_gpt(backend: &str) -> Result<PathBuf> {
    if backend == "flex" {
        run(cargo().args(["build", "-p", "cli"]))?;
    } else {
        run(&mut cargo_cli(&["build"], backend))?;
    }
    Ok(target_dir().join("debug/gpt"))
}

/// Tiny Shakespeare for the checks: where `BURNGPT_DATA_DIR` points (CI's shared copy),
/// checked to be there; without it, `gpt` and the tests find it as a user's machine does,
/// in the cache or by one sha256-checked download.
fn set_data_dir() -> Result<()> {
    if let Some(dir) = std::env::var_os("BURNGPT_DATA_DIR").map(PathBuf::from)
        && !dir.join("tinyshakespeare/input.txt").exists()
    {
        bail!(
            "BURNGPT_DATA_DIR={} holds no tinyshakespeare/input.txt; unset it to use the cache (or download)",
            dir.display()
        );
    }
    Ok(())
}

/// `require`: the system packages of the runtime checks (Mesa's Vulkan for the wgpu smoke
/// run, a font for `gpt plot`, Open MPI, the serve tests' browser and Python clients) must
/// be present; without it a missing one skips its runtime check with a line naming what to
/// install.
fn ci(gpu_checks: bool, require: bool) -> Result<()> {
    set_data_dir()?;
    // The serve tests' clients, checked first: when required, a missing one fails here
    // rather than after the build.
    system::clients(require)?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Tests and smoke runs share the dev profile (dependencies optimised), and the smoke
    // run uses the very `gpt` binary the tests built: burn is compiled once for both.
    // (Building one package alone, `-p cli`, unifies features differently and would
    // recompile burn.)
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    if require {
        // The tests that need system packages (the serve clients) fail without them.
        test.env(system::REQUIRE_ENV, "1");
    }
    run(&mut test)?;
    let gpt = target_dir().join("debug/gpt");
    smoke(
        &gpt,
        "smoke-flex",
        &["max_iters=300", "eval_interval=150"],
        Some(2.6),
    )?;
    if let Some(qemu) = system::qemu(require)? {
        without_avx512(&gpt, qemu)?;
    }
    // The other CPU backend must keep compiling too.
    run(&mut cargo_cli(&["check"], "ndarray"))?;
    if gpu_checks {
        // cuda: compile check only (no GPU here); cudarc loads the driver at run time.
        run(&mut cargo_cli(&["check"], "cuda"))?;
        // ddp: cuda with burn-train's DDP strategy (`gpt train --devices 0,1`), compile
        // check only (no GPU here, and NCCL needs two).
        run(&mut cargo_cli(&["check"], "ddp"))?;
        // wgpu (with kernel fusion): a tiny real run on Mesa's software Vulkan (lavapipe),
        // a checkpoint every 5 iterations (fusion once lost tensors the checkpointer read).
        run(&mut cargo_cli(&["build"], "wgpu"))?;
        if system::vulkan(require)? {
            smoke(&gpt, "smoke-wgpu", &TINY, None)?;
            killed_resumes(&gpt, &TINY)?;
            mixed_precision(&gpt, &TINY)?;
            gpu_attention(&gpt, &TINY)?;
        }
        no_gpu_is_one_error_line(&gpt)?;
    }
    // Every command of README.md and the docs pages, as a newcomer would type them (shrunk
    // to seconds).
    readme::run(gpu_checks, require)?;
    // Data-parallel training under mpirun, 2 and 3 ranks on loopback. Last: the `mpi`
    // feature rebuilds the training and cli crates (not burn), and the dev `gpt` then
    // carries it.
    if system::mpi(require)? {
        let mpi = [
            "test",
            "--workspace",
            "--features",
            "cli/mpi",
            "--test",
            "distributed",
        ];
        run(cargo().args(mpi))?;
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
        && (info.val_loss.is_nan() || info.val_loss >= max)
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

/// A GPU build on a machine without a usable GPU (here: Vulkan pointed at no driver)
/// must say so in one line and exit 1, not panic.
fn no_gpu_is_one_error_line(gpt: &Path) -> Result<()> {
    let out = Command::new(gpt)
        .args([
            "bench",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--sample-tokens",
            "0",
        ])
        .env("VK_ICD_FILENAMES", "/nonexistent")
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    if out.status.code() != Some(1)
        || lines.len() != 1
        || !lines[0].contains("found no usable device")
    {
        bail!("a GPU build without a GPU should fail with one clear line, got:\n{err}");
    }
    eprintln!("xtask: no-GPU error ok: {}", lines[0]);
    Ok(())
}

/// SIGKILL of a wgpu (fusion) run soon after its second checkpoint, then `--resume`: the
/// run finishes all its iterations from the checkpoint it kept.
fn killed_resumes(gpt: &Path, tiny: &[&str]) -> Result<()> {
    let dir = target_dir().join("killed-wgpu");
    let _ = std::fs::remove_dir_all(&dir);
    let train = |resume: bool| {
        let mut cmd = Command::new(gpt);
        cmd.args(["train", "--sample-tokens", "0", "--out-dir"])
            .arg(&dir);
        if resume {
            cmd.arg("--resume");
        } else {
            for kv in tiny {
                cmd.args(["--set", kv]);
            }
            cmd.args(["--set", "max_iters=100"]);
        }
        cmd.stdout(std::process::Stdio::null());
        cmd.stderr(std::process::Stdio::null());
        cmd
    };
    let mut child = train(false).spawn()?;
    let second = dir.join("checkpoint/model-2.mpk");
    let started = std::time::Instant::now();
    while !second.exists() {
        if started.elapsed() > std::time::Duration::from_secs(600) || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("killed-wgpu: no second checkpoint within 10 minutes (or the run ended first)");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill()?; // SIGKILL
    child.wait()?;
    let status = train(true).status()?;
    let out = Command::new(gpt)
        .args(["info", "--json", "--run"])
        .arg(&dir)
        .output()?;
    let info = parse_info(&String::from_utf8_lossy(&out.stdout))?;
    if !status.success() || info.iter != 100 {
        bail!(
            "killed-wgpu: --resume after SIGKILL ended with {status} at iteration {}",
            info.iter
        );
    }
    eprintln!(
        "xtask: killed-wgpu ok (SIGKILL after the second checkpoint, resumed to {} iterations, val loss {:.4})",
        info.iter, info.val_loss
    );
    Ok(())
}

/// A model and run small enough for seconds of training, even emulated: the wgpu checks
/// and the one without AVX-512 (a checkpoint every 5 iterations).
const TINY: [&str; 8] = [
    "max_iters=20",
    "eval_interval=5",
    "eval_iters=2",
    "batch_size=4",
    "n_layer=1",
    "n_head=2",
    "n_embd=32",
    "block_size=16",
];

/// One binary for every x86-64 CPU: the same tiny run natively and under qemu's user-mode
/// emulator, whose `max` CPU has AVX2 and FMA but no AVX-512, AVX512-BF16 or AMX, so that
/// gemm, the `multiversion` loops and flex's elementwise kernels take their AVX2 paths.
/// The losses agree to rounding (the kernels sum in other orders), `gpt info` names the
/// matmul kernels each took, and bfloat16 there computes in float32 after one notice line.
fn without_avx512(gpt: &Path, qemu: &str) -> Result<()> {
    let train = |name: &str, emulated: bool, dtype: &str| -> Result<(Info, serde_json::Value)> {
        let dir = target_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let command = |args: &[&str]| {
            let mut cmd = if emulated {
                let mut cmd = Command::new(qemu);
                cmd.args(["-cpu", "max"]).arg(gpt);
                cmd
            } else {
                Command::new(gpt)
            };
            cmd.args(args);
            cmd
        };
        let mut cmd = command(&["train", "--sample-tokens", "0", "--out-dir"]);
        cmd.arg(&dir);
        for kv in TINY
            .iter()
            .copied()
            .chain([format!("dtype={dtype}").as_str()])
        {
            cmd.args(["--set", kv]);
        }
        eprintln!("xtask: {cmd:?}");
        let out = cmd.output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!("{name}: gpt train failed ({}):\n{stderr}", out.status);
        }
        let notice = stderr
            .lines()
            .filter(|l| l.contains("computes in float32"))
            .count();
        if notice != usize::from(emulated && dtype == "bfloat16") {
            bail!("{name}: {notice} notices that bfloat16 computes in float32:\n{stderr}");
        }
        let mut cmd = command(&["info", "--json", "--run"]);
        let out = cmd.arg(&dir).output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .with_context(|| format!("{name}: parsing `gpt info --json` output {stdout:?}"))?;
        Ok((parse_info(&stdout)?, json))
    };
    let (native, native_json) = train("no-avx512-native", false, "float32")?;
    let (emulated, emulated_json) = train("no-avx512-emulated", true, "float32")?;
    let (emulated_bf16, _) = train("no-avx512-emulated-bf16", true, "bfloat16")?;
    let isa = |json: &serde_json::Value| json["matmul_isa"].as_str().unwrap_or("?").to_string();
    eprintln!(
        "xtask: natively on {}: train {:.5} val {:.5}; under {qemu} -cpu max on {}: train {:.5} val {:.5}, bfloat16 train {:.5} val {:.5}",
        isa(&native_json),
        native.train_loss,
        native.val_loss,
        isa(&emulated_json),
        emulated.train_loss,
        emulated.val_loss,
        emulated_bf16.train_loss,
        emulated_bf16.val_loss
    );
    if !isa(&emulated_json).starts_with("avx2") || !emulated_json["bf16_isa"].is_null() {
        bail!("under {qemu} -cpu max gpt info reports {emulated_json}, not AVX2 kernels");
    }
    for (what, other) in [("float32", &emulated), ("bfloat16", &emulated_bf16)] {
        if (native.train_loss - other.train_loss).abs() > 1e-3
            || (native.val_loss - other.val_loss).abs() > 1e-3
        {
            bail!(
                "the emulated CPU's {what} losses are more than 1e-3 from the native float32 ones"
            );
        }
    }
    Ok(())
}

/// The same 200 steps of the tiny model in float32 and float16 (lavapipe has f16 shaders,
/// so float16's loss scaler runs too) end within 0.05 of each other; bfloat16, which
/// lavapipe lacks, is one clear error line.
fn mixed_precision(gpt: &Path, tiny: &[&str]) -> Result<()> {
    let train = |dtype: &str| -> Result<std::process::Output> {
        let dir = target_dir().join(format!("mixed-{dtype}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new(gpt);
        cmd.args(["train", "--sample-tokens", "0", "--out-dir"])
            .arg(&dir);
        let recipe = [
            "max_iters=200",
            "eval_interval=200",
            "learning_rate=3e-3",
            "warmup_iters=10",
            "lr_decay_iters=200",
        ];
        for kv in tiny.iter().chain(&recipe) {
            cmd.args(["--set", kv]);
        }
        cmd.args(["--set", &format!("dtype={dtype}")]);
        eprintln!("xtask: {cmd:?}");
        let out = cmd.output()?;
        if dtype != "bfloat16" && !out.status.success() {
            bail!(
                "gpt train in {dtype} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    };
    let losses = |dtype: &str| -> Result<Info> {
        train(dtype)?;
        let dir = target_dir().join(format!("mixed-{dtype}"));
        let out = Command::new(gpt)
            .args(["info", "--json", "--run"])
            .arg(&dir)
            .output()?;
        parse_info(&String::from_utf8_lossy(&out.stdout))
    };
    let (f32, f16) = (losses("float32")?, losses("float16")?);
    eprintln!(
        "xtask: 200 steps on wgpu: float32 train {:.4} val {:.4}, float16 train {:.4} val {:.4}",
        f32.train_loss, f32.val_loss, f16.train_loss, f16.val_loss
    );
    if (f32.train_loss - f16.train_loss).abs() >= 0.05
        || (f32.val_loss - f16.val_loss).abs() >= 0.05
    {
        bail!("float16 training ended more than 0.05 from float32's losses");
    }
    let out = train("bfloat16")?;
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("XDG_RUNTIME_DIR"))
        .collect();
    if out.status.code() != Some(1) || lines.len() != 1 || !lines[0].contains("not supported") {
        bail!("bfloat16 on lavapipe should fail with one clear line, got:\n{err}");
    }
    eprintln!("xtask: bfloat16 on lavapipe: {}", lines[0]);
    Ok(())
}

/// Inference on wgpu takes Burn's attention op; `gpt bench` compares its logits with
/// the explicit path's, in float32 and float16.
fn gpu_attention(gpt: &Path, tiny: &[&str]) -> Result<()> {
    for (dtype, tolerance) in [("float32", 1e-4), ("float16", 1e-2)] {
        let mut cmd = Command::new(gpt);
        cmd.args([
            "bench",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--sample-tokens",
            "0",
            "--json",
        ]);
        for kv in tiny {
            cmd.args(["--set", kv]);
        }
        cmd.args(["--set", &format!("dtype={dtype}")]);
        eprintln!("xtask: {cmd:?}");
        let out = cmd.output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "gpt bench failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let report: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap_or_default())
                .with_context(|| format!("parsing `gpt bench --json` output {stdout:?}"))?;
        let (path, diff) = (
            &report["attention_inference"],
            report["attention_max_abs_diff"].as_f64(),
        );
        match diff {
            Some(d) if path == "burn-attention" && d < tolerance => {
                eprintln!(
                    "xtask: wgpu {dtype} inference attention ({path}) vs explicit: max |Δlogit| {d:.2e}"
                )
            }
            _ => bail!(
                "wgpu {dtype}: inference attention {path} differs from the explicit path by {diff:?}"
            ),
        }
    }
    Ok(())
}

/// The fields of `gpt info --json` that the smoke test checks.
#[derive(serde::Deserialize)]
struct Info {
    iter: usize,
    train_loss: f64,
    val_loss: f64,
}

fn parse_info(stdout: &str) -> Result<Info> {
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("parsing `gpt info --json` output {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The usage line's first form names exactly the subcommands xtask forwards.
    #[test]
    fn usage_lists_every_forwarded_gpt_command() {
        let listed = USAGE
            .split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(list, _)| list.split('|').collect::<Vec<_>>())
            .expect("USAGE starts with `cargo xtask <a|b|…>`");
        assert_eq!(listed, GPT_COMMANDS);
    }
}
