//! End-to-end tests of the `gpt` binary on the real Tiny Shakespeare (the shared copy that
//! `BURNGPT_DATA_DIR` points at): a tiny model trained for a few iterations, sampled,
//! evaluated, resumed; and every user mistake answered by one clear error line.

mod common;

use common::{check_one_error_line, gpt, gpt_command, json, ok, tmp, train_tiny};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A tiny trained run shared by the tests that only read it.
fn trained_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tmp("trained");
        assert!(train_tiny(&dir, &[]).status.success());
        dir
    })
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let run = trained_run().to_str().unwrap();
    let sample = |seed: &str, top_k: Option<&str>| {
        let mut a = vec![
            "sample",
            "--run",
            run,
            "--prompt",
            "ROMEO:",
            "--max-new-tokens",
            "40",
            "--seed",
            seed,
        ];
        if let Some(k) = top_k {
            a.extend(["--top-k", k]);
        }
        ok(&a)
    };
    let a = sample("1", None);
    assert!(a.starts_with("ROMEO:"));
    assert_eq!(a.trim_end().chars().count(), "ROMEO:".len() + 40);
    assert_eq!(a, sample("1", None));
    assert_ne!(a, sample("2", None));
    assert_eq!(
        sample("1", Some("1")),
        sample("2", Some("1")),
        "top-k 1 is greedy"
    );
}

#[test]
fn info_eval_and_plot_read_the_run() {
    let run = trained_run().to_str().unwrap();
    let info = json(&ok(&["info", "--run", run, "--json"]));
    assert_eq!(info["iter"], 20);
    assert_eq!(info["config"]["model"]["n_embd"], 16);
    // The default CPU build runs attention as the fused kernel, and says so, and names
    // the kernels its matmuls picked on this CPU (AVX-512 ones where it has AVX-512).
    if info["backend"] == "flex" {
        assert_eq!(info["attention"], "fused-cpu");
        let isa = info["matmul_isa"].as_str().unwrap();
        assert_eq!(isa, model::cpu::matmul_isa());
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            isa.starts_with("avx512"),
            std::arch::is_x86_feature_detected!("avx512f"),
            "{isa}"
        );
        assert_eq!(info["bf16_isa"].as_str(), model::cpu::bf16_isa());
    }
    let eval = json(&ok(&["eval", "--run", run, "--json", "--full"]));
    assert_eq!(eval["iter"], 20);
    let (val, full) = (
        eval["val_loss"].as_f64().unwrap(),
        eval["full_val_loss"].as_f64().unwrap(),
    );
    assert!(val > 1.0 && val < 4.5 && (full - val).abs() < 0.5, "{eval}");
    let png = tmp("plot.png");
    ok(&["plot", "--run", run, "--out", png.to_str().unwrap()]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
}

#[test]
fn resume_continues_the_iteration_count_and_same_seed_gives_same_losses() {
    let dir = tmp("resume");
    let d = dir.to_str().unwrap();
    assert!(train_tiny(&dir, &[]).status.success());
    ok(&[
        "train",
        "--resume",
        "--out-dir",
        d,
        "--set",
        "max_iters=30",
        "--sample-tokens",
        "0",
    ]);
    let info = json(&ok(&["info", "--run", d, "--json"]));
    assert_eq!(info["iter"], 30);
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let iters: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(iters, ["10", "20", "30"]);

    // The same config and seed, uninterrupted, gives the same losses at 10 and 20.
    let again = tmp("again");
    assert!(train_tiny(&again, &[]).status.success());
    let losses = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .take(2)
            .map(|l| l.split(',').skip(2).take(2).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(losses(&dir), losses(&again));
}

/// A Muon run stopped at iteration 20 and resumed to 30 logs the losses of the same run
/// uninterrupted, to the last digit (dropout off, so only the data, the weights and the
/// optimizer's state decide them): Muon's momentum comes back from the checkpoint with
/// AdamW's. `gpt bench` names the optimizer it ran.
#[test]
fn a_muon_run_resumes_exactly() {
    let muon = ["--set", "optimizer=muon", "--set", "dropout=0.0"];
    let dir = tmp("muon-resume");
    let d = dir.to_str().unwrap();
    assert!(train_tiny(&dir, &muon).status.success());
    ok(&[
        "train",
        "--resume",
        "--out-dir",
        d,
        "--set",
        "max_iters=30",
        "--sample-tokens",
        "0",
    ]);
    let whole = tmp("muon-whole");
    let mut thirty = muon.to_vec();
    thirty.extend(["--set", "max_iters=30"]);
    assert!(train_tiny(&whole, &thirty).status.success());
    let rows = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').skip(1).take(3).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(rows(&dir).len(), 3);
    assert_eq!(rows(&dir), rows(&whole));
    let bench = json(&ok(&[
        "bench",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--sample-tokens",
        "0",
        "--json",
        "--set",
        "n_layer=1",
        "--set",
        "n_embd=16",
        "--set",
        "n_head=2",
        "--set",
        "block_size=8",
        "--set",
        "optimizer=muon",
    ]));
    assert_eq!(bench["optimizer"], "muon");
}

/// Each user mistake: non-zero exit, one `error:` line naming the problem, no panic.
#[test]
fn bad_input_gets_one_clear_error_line() {
    let dir = tmp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let empty = file("empty.txt", b"");
    let binary = file("binary.txt", &[b'a', 0xff, 0xfe]);
    let short = file("short.txt", b"to be or not to be");
    let bad_key = file("bad_key.toml", b"[train]\nmax_iter = 5\n");
    let bad_type = file("bad_type.toml", b"[model]\nn_layer = \"four\"\n");
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let run = trained_run().to_str().unwrap();
    let missing_run = dir.join("nope");
    let mr = missing_run.to_str().unwrap();
    let no_run = dir.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--out-dir", o, "--data", "/nonexistent/input.txt"],
            "cannot read /nonexistent/input.txt",
        ),
        (vec!["train", "--out-dir", o, "--data", &empty], "is empty"),
        (
            vec!["train", "--out-dir", o, "--data", &binary],
            "is not UTF-8",
        ),
        (
            vec!["train", "--out-dir", o, "--data", &short],
            "too few for block_size 64",
        ),
        (
            vec!["train", "--out-dir", o, "--set", "dataset=wikitext"],
            "unknown dataset \"wikitext\"",
        ),
        (
            vec!["train", "--out-dir", o, "--config", &bad_key],
            "unknown field `max_iter`",
        ),
        (
            vec!["train", "--out-dir", o, "--config", &bad_type],
            "invalid type",
        ),
        (
            vec!["train", "--out-dir", o, "--config", "/nonexistent.toml"],
            "cannot read config",
        ),
        (
            vec!["train", "--out-dir", o, "--set", "n_head=5"],
            "divisible by n_head",
        ),
        (
            vec!["train", "--out-dir", o, "--set", "dropout=1"],
            "dropout must be in [0, 1)",
        ),
        (
            vec!["train", "--out-dir", o, "--set", "block_size=0"],
            "block_size must be > 0",
        ),
        (
            vec!["train", "--out-dir", o, "--set", "learning_rate=0"],
            "learning_rate must be > 0",
        ),
        (
            vec!["train", "--out-dir", o, "--set", "max_itres=5"],
            "unknown key \"max_itres\"",
        ),
        (vec!["train", "--out-dir", run], "already holds a run"),
        (vec!["train", "--out-dir", mr, "--resume"], "does not exist"),
        (vec!["sample", "--run", mr], "does not exist"),
        (
            vec!["sample", "--run", run, "--prompt", "naïve"],
            "'ï' at position 2 is not in the vocabulary",
        ),
        (
            vec!["sample", "--run", run, "--prompt", ""],
            "the prompt is empty",
        ),
        (
            vec!["sample", "--run", run, "--max-new-tokens", "0"],
            "at least 1",
        ),
        (
            vec!["sample", "--run", run, "--temperature", "0"],
            "temperature must be a finite number > 0",
        ),
        (vec!["info", "--run", no_run], "holds no run"),
    ];
    for (args, expected) in cases {
        let o = gpt(&args);
        check_one_error_line(&args, &o, expected);
    }
    // No network: the dataset is neither in BURNGPT_DATA_DIR nor cached, and the download
    // fails at once (a mirror on a closed loopback port stands in for a machine offline).
    let offline = gpt_command(&["train", "--out-dir", o])
        .env("BURNGPT_DATA_DIR", dir.join("empty-data-dir"))
        .env("BURNGPT_CACHE", dir.join("empty-cache"))
        .env("BURNGPT_MIRROR", "http://127.0.0.1:9")
        .output()
        .unwrap();
    check_one_error_line(
        &["train (offline)"],
        &offline,
        "could not download tinyshakespeare",
    );
    let msg = String::from_utf8_lossy(&offline.stderr);
    assert!(
        msg.contains("--data PATH") && msg.contains("BURNGPT_DATA_DIR"),
        "{msg}"
    );
}

#[test]
fn corrupt_or_mismatched_checkpoints_are_refused() {
    let src = trained_run();
    let dir = tmp("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.toml", "tokenizer.json", "metrics.csv"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let d = dir.to_str().unwrap();
    let err = |args: &[&str]| String::from_utf8_lossy(&gpt(args).stderr).into_owned();
    assert!(err(&["sample", "--run", d]).contains("holds no trained model yet"));

    let model = std::fs::read(src.join("model.mpk")).unwrap();
    std::fs::write(dir.join("model.mpk"), &model[..model.len() / 2]).unwrap();
    let e = err(&["sample", "--run", d]);
    assert!(
        e.starts_with("error: cannot load") && e.lines().count() == 1,
        "{e}"
    );

    // A model of another shape under this run's config.
    let other = tmp("other");
    let wider = train_tiny(&other, &["--set", "n_embd=32", "--set", "max_iters=10"]);
    assert!(wider.status.success());
    std::fs::copy(other.join("model.mpk"), dir.join("model.mpk")).unwrap();
    let e = err(&["sample", "--run", d]);
    assert!(
        e.contains("does not match this run's config.toml") && e.lines().count() == 1,
        "{e}"
    );
}

/// Without --run, the commands that read a run take the newest under runs/ and say which.
#[test]
fn run_defaults_to_the_newest_run_under_runs() {
    let cwd = tmp("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let in_cwd = |args: &[&str]| gpt_command(args).current_dir(&cwd).output().unwrap();
    let o = in_cwd(&["sample"]);
    check_one_error_line(&["sample"], &o, "no run found under runs/");
    assert!(
        train_tiny(&cwd.join("runs/old"), &["--set", "max_iters=10"])
            .status
            .success()
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(
        train_tiny(&cwd.join("runs/new"), &["--set", "max_iters=10"])
            .status
            .success()
    );
    for args in [
        &["sample", "--max-new-tokens", "5"][..],
        &["info"],
        &["eval", "--eval-iters", "1"],
    ] {
        let o = in_cwd(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {err}");
        assert!(err.contains("using runs/new"), "{args:?}: {err}");
    }
}

/// Launched by mpirun as one of several processes, a gpt built without the `mpi` feature
/// refuses (one line naming the feature) instead of starting N trainers on one run.
#[cfg(not(feature = "mpi"))]
#[test]
fn mpirun_without_the_mpi_feature_is_one_clear_error() {
    let dir = tmp("not-mpi");
    let args = ["train", "--out-dir", dir.to_str().unwrap()];
    let o = gpt_command(&args)
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .env("OMPI_COMM_WORLD_RANK", "0")
        .output()
        .unwrap();
    check_one_error_line(&args, &o, "--features mpi");
    assert!(!dir.exists(), "nothing may be written");
}

/// Several devices in one process need the ddp build: on the CPU build `--devices 0,1` is
/// one error line saying which build (and that mpirun is the CPU's way), and nothing is
/// written.
#[test]
fn several_devices_need_the_ddp_build() {
    let dir = tmp("devices");
    let args = [
        "train",
        "--devices",
        "0,1",
        "--out-dir",
        dir.to_str().unwrap(),
    ];
    let o = gpt(&args);
    check_one_error_line(&args, &o, "--features ddp");
    assert!(!dir.exists(), "nothing may be written");
}
