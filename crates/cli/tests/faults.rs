//! Faults a long training run meets: a kill at any moment, Ctrl-C, a loss that turns NaN.
//! Each must leave a run that resumes and finishes, losing nothing but the work since the
//! last checkpoint.

mod common;

use common::{gpt, gpt_command, json, ok, tmp, train_tiny};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A model big enough that checkpoints take a moment to write (≈1.3 MB each), trained
/// for 200 iterations with a checkpoint every 10.
const KILLABLE: &[&str] = &[
    "--set",
    "n_layer=2",
    "--set",
    "n_embd=64",
    "--set",
    "n_head=4",
    "--set",
    "block_size=32",
    "--set",
    "batch_size=8",
    "--set",
    "eval_iters=2",
    "--set",
    "eval_interval=10",
    "--set",
    "max_iters=200",
    "--set",
    "keep_checkpoints=1",
];

fn spawn_train(dir: &Path, resume: bool) -> Child {
    let mut args = vec![
        "train",
        "--out-dir",
        dir.to_str().unwrap(),
        "--sample-tokens",
        "0",
    ];
    if resume {
        args.push("--resume");
    } else {
        args.extend_from_slice(KILLABLE);
    }
    gpt_command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gpt starts")
}

fn final_val_loss(dir: &Path) -> (u64, f64) {
    let info = json(&ok(&["info", "--run", dir.to_str().unwrap(), "--json"]));
    (
        info["iter"].as_u64().unwrap(),
        info["val_loss"].as_f64().unwrap(),
    )
}

/// SIGKILL at random moments (some land in checkpoint writes), then `--resume` until the
/// run finishes: every resume must succeed, the count must reach max_iters, and the final
/// loss must match an uninterrupted run with the same seed.
#[test]
fn killed_runs_resume_and_finish_like_an_uninterrupted_one() {
    let reference = tmp("kill-reference");
    let start = Instant::now();
    let done = spawn_train(&reference, false).wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let duration = start.elapsed();
    let (iters, expected) = final_val_loss(&reference);
    assert_eq!(iters, 200);

    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for trial in 0..4 {
        let dir = tmp(&format!("kill-{trial}"));
        let mut child = spawn_train(&dir, false);
        let mut kills = Vec::new();
        // Kill the first run and the first resume, each at a random moment of its life.
        for resume in [false, true] {
            if resume {
                child = spawn_train(&dir, true);
            }
            // Wait until the run directory exists so there is something to resume.
            while !dir.join("config.toml").exists() && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let delay = Duration::from_millis(rng.random_range(0..duration.as_millis() as u64));
            std::thread::sleep(delay);
            kills.push(delay);
            let _ = child.kill(); // SIGKILL; no-op if it already finished
            child.wait().unwrap();
        }
        // Resume until it reports the end.
        for _ in 0..3 {
            let out = spawn_train(&dir, true).wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "trial {trial} (seed {seed}, kills after {kills:?}): resume failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (iters, loss) = final_val_loss(&dir);
        assert_eq!(
            iters, 200,
            "trial {trial} (seed {seed}, kills after {kills:?})"
        );
        assert!(
            (loss - expected).abs() < 1e-3,
            "trial {trial} (seed {seed}, kills after {kills:?}): val loss {loss} vs {expected} uninterrupted"
        );
        // Checkpoints are whole files: no temporary file is mistaken for one.
        assert!(
            ok(&[
                "sample",
                "--run",
                dir.to_str().unwrap(),
                "--max-new-tokens",
                "5"
            ])
            .len()
                >= 5
        );
    }
}

/// Ctrl-C stops after the current iteration, saves the model and exits 0; the run resumes
/// from its last checkpoint.
#[test]
fn ctrl_c_saves_and_exits_cleanly() {
    let dir = tmp("sigint");
    let mut child = spawn_train(&dir, false);
    let csv = dir.join("metrics.csv");
    while std::fs::read_to_string(&csv).map_or(0, |t| t.lines().count()) < 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("model.mpk").exists());
    let (iters, _) = final_val_loss(&dir);
    assert!(iters < 200);
    let resumed = spawn_train(&dir, true).wait_with_output().unwrap();
    assert!(resumed.status.success());
    assert_eq!(final_val_loss(&dir).0, 200);
}

/// A loss that turns NaN stops the run with the iteration named, keeps the last
/// checkpoint, and the run resumes with a saner learning rate; `skip` carries on instead.
#[test]
fn nonfinite_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let dir = tmp("nan");
    let d = dir.to_str().unwrap();
    assert!(train_tiny(&dir, &[]).status.success());
    let model = std::fs::read(dir.join("model.mpk")).unwrap();
    let explode = [
        "--set",
        "learning_rate=1e9",
        "--set",
        "grad_clip=0",
        "--set",
        "max_iters=40",
    ];
    let mut args = vec!["train", "--resume", "--out-dir", d, "--sample-tokens", "0"];
    args.extend_from_slice(&explode);
    let out = gpt(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("NaN or infinite at iteration 2"), "{err}");
    assert!(
        err.contains("keeping its last checkpoint (iteration 20)"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.join("model.mpk")).unwrap(),
        model,
        "model.mpk untouched"
    );
    assert_eq!(final_val_loss(&dir).0, 20);
    ok(&[
        "train",
        "--resume",
        "--out-dir",
        d,
        "--set",
        "learning_rate=1e-3",
        "--sample-tokens",
        "0",
    ]);
    assert_eq!(final_val_loss(&dir).0, 40);

    let skip = tmp("nan-skip");
    let out = train_tiny(
        &skip,
        &[
            "--set",
            "learning_rate=1e9",
            "--set",
            "grad_clip=0",
            "--set",
            "on_nonfinite_loss=skip",
        ],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped"));
    // Its weights diverged before the first NaN loss: sampling says so instead of panicking.
    let sample = gpt(&[
        "sample",
        "--run",
        skip.to_str().unwrap(),
        "--max-new-tokens",
        "5",
    ]);
    let err = String::from_utf8_lossy(&sample.stderr);
    assert_eq!(sample.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("not finite") && err.lines().count() == 1,
        "{err}"
    );
}
