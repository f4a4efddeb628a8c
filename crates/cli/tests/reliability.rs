//! Reliability II: the run directory is never lost, never shared by accident, never lies.
//!
//! One case per row of the table below. Each asserts the exit code, one `error:` line
//! (or the documented success), and that no file outside the run directory changed and
//! no earlier run file was lost.
//!
//! | case | expected |
//! |---|---|
//! | `--overwrite` of a folder holding no run | refused, naming what is there; nothing deleted |
//! | `--overwrite` whose new run fails early | error; the old run is back, byte for byte |
//! | `--overwrite` that succeeds | new run in place, nothing left aside |
//! | two trainers on one run | the second fails at once naming the first's pid; sample works meanwhile |
//! | `--resume --set n_embd=…` | refused naming `model.n_embd`; config.toml untouched |
//! | resume / eval after `--data` | use the run's own file; a changed or other file needs --allow-data-change |
//! | edited tokenizer / config / checkpoint dtype / optimizer id / scheduler | one error line, no panic |
//! | resource bombs (width, batch, eval size, bench steps, /dev/zero, max_iters=0, …) | refused before allocating |
//! | `gpt sample … \| head` | exit 0, no panic, stops generating |
//! | tiny temperature (1e-45) | greedy, exit 0 |
//! | plot of a run with NaN losses | draws the finite points (says so); all NaN: one error line |
//! | disk full during training (tmpfs) | non-zero exit naming the file; no `.tmp` left; the run's files intact |
//! | read-only run dir | resume refused with one line; sample still reads it |

mod common;

use common::{check_one_error_line, gpt, gpt_command, ok, tmp, train_tiny};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Every file under `root` except those under `except`: path → (size, mtime).
fn snapshot(root: &Path, except: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.starts_with(except) {
                continue;
            }
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(path, (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    out
}

/// A parent folder holding a user's own file beside the run directory `run`.
fn workspace(name: &str) -> (PathBuf, PathBuf) {
    let parent = tmp(name);
    std::fs::create_dir_all(&parent).unwrap();
    std::fs::write(parent.join("notes.txt"), "my notes").unwrap();
    (parent.clone(), parent.join("run"))
}

fn run_files(run: &Path) -> BTreeMap<String, Vec<u8>> {
    [
        "config.toml",
        "tokenizer.json",
        "model.mpk",
        "run.json",
        "metrics.csv",
    ]
    .iter()
    .filter_map(|f| Some((f.to_string(), std::fs::read(run.join(f)).ok()?)))
    .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn overwrite_replaces_only_runs_and_keeps_the_old_one_until_the_new_one_works() {
    // A folder of the user's own files is not a run: refused, nothing deleted.
    let (parent, mine) = workspace("rel-overwrite-foreign");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("corpus.txt"), "precious").unwrap();
    let before = snapshot(&parent, Path::new("/none"));
    let args = ["train", "--out-dir", s(&mine), "--overwrite"];
    let o = gpt(&args);
    check_one_error_line(
        &args,
        &o,
        "is not empty and holds no run (it has corpus.txt)",
    );
    assert_eq!(snapshot(&parent, Path::new("/none")), before);

    // A run whose replacement fails before its first checkpoint comes back intact.
    let (parent, run) = workspace("rel-overwrite-fails");
    assert!(train_tiny(&run, &[]).status.success());
    let old = run_files(&run);
    let outside = snapshot(&parent, &run);
    let explode = [
        "--set",
        "learning_rate=1e9",
        "--set",
        "grad_clip=0",
        "--overwrite",
    ];
    let o = train_tiny(&run, &explode);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("error: ") && err.contains("NaN or infinite"),
        "{err}"
    );
    assert!(
        err.contains("previous run") && err.contains("back in place"),
        "{err}"
    );
    assert_eq!(run_files(&run), old, "the old run is back, byte for byte");
    assert_eq!(
        snapshot(&parent, &run),
        outside,
        "nothing outside the run changed"
    );
    ok(&["sample", "--run", s(&run), "--max-new-tokens", "5"]);

    // A replacement that trains leaves the new run and nothing aside.
    let o = train_tiny(&run, &["--set", "max_iters=10", "--overwrite"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_ne!(run_files(&run)["model.mpk"], old["model.mpk"]);
    let aside: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("replaced"))
        .collect();
    assert!(aside.is_empty(), "{aside:?}");
}

#[test]
fn one_trainer_per_run_and_readers_are_welcome() {
    let (_parent, run) = workspace("rel-two-trainers");
    let mut args = vec!["train", "--out-dir", s(&run), "--sample-tokens", "0"];
    // The tiny model, trained far longer than the test lasts (a later --set wins).
    args.extend_from_slice(common::TINY);
    args.extend_from_slice(&["--set", "max_iters=1000000"]);
    let mut first = gpt_command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_dir(run.join("checkpoint")).map_or(0, |d| d.count()) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no checkpoint yet"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first trainer ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = first.id().to_string();
    for second in [
        vec!["train", "--resume", "--out-dir", s(&run)],
        vec!["train", "--overwrite", "--out-dir", s(&run)],
    ] {
        let o = gpt(&second);
        check_one_error_line(&second, &o, &format!("another gpt train (pid {pid})"));
    }
    // Readers read complete checkpoints while it trains.
    ok(&["sample", "--run", s(&run), "--max-new-tokens", "5"]);
    ok(&["info", "--run", s(&run)]);
    first.kill().unwrap();
    first.wait().unwrap();
    // SIGKILL leaves no stale lock: resuming works at once.
    let o = gpt(&[
        "train",
        "--resume",
        "--out-dir",
        s(&run),
        "--set",
        "max_iters=20",
        "--sample-tokens",
        "0",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn resume_is_the_same_run() {
    let (parent, run) = workspace("rel-resume");
    let text = parent.join("text.txt");
    let shakespeare = common::shakespeare_path();
    std::fs::write(&text, &std::fs::read(&shakespeare).unwrap()[..200_000]).unwrap();
    let o = train_tiny(&run, &["--data", s(&text)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = std::fs::read(run.join("config.toml")).unwrap();

    // The model's shape cannot change; config.toml is untouched.
    let args = [
        "train",
        "--resume",
        "--out-dir",
        s(&run),
        "--set",
        "n_embd=64",
    ];
    check_one_error_line(&args, &gpt(&args), "cannot change model.n_embd");
    assert_eq!(std::fs::read(run.join("config.toml")).unwrap(), config);

    // Without --data, resume and eval use the run's own text (not Tiny Shakespeare).
    ok(&[
        "train",
        "--resume",
        "--out-dir",
        s(&run),
        "--set",
        "max_iters=30",
        "--sample-tokens",
        "0",
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert!(
        json["data"]["dataset"]
            .as_str()
            .unwrap()
            .ends_with("text.txt"),
        "{json}"
    );
    assert_eq!(json["resumes"][0]["set"][0], "max_iters=30");
    ok(&["eval", "--run", s(&run), "--eval-iters", "2"]);

    // Another file, or the same file changed, needs --allow-data-change.
    let other = parent.join("other.txt");
    std::fs::write(&other, &std::fs::read(&text).unwrap()[..150_000]).unwrap();
    let args = [
        "train",
        "--resume",
        "--out-dir",
        s(&run),
        "--data",
        s(&other),
    ];
    check_one_error_line(&args, &gpt(&args), "--allow-data-change");
    std::fs::write(&text, &std::fs::read(&shakespeare).unwrap()[..190_000]).unwrap();
    let args = ["eval", "--run", s(&run), "--eval-iters", "2"];
    check_one_error_line(&args, &gpt(&args), "is not the one this run was trained on");
    ok(&[
        "eval",
        "--run",
        s(&run),
        "--eval-iters",
        "2",
        "--allow-data-change",
    ]);
}

#[test]
fn edited_run_files_are_clear_errors() {
    let (_parent, run) = workspace("rel-edited");
    assert!(train_tiny(&run, &[]).status.success());
    let copy = |name: &str| {
        let dir = tmp(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "config.toml",
            "tokenizer.json",
            "model.mpk",
            "run.json",
            "metrics.csv",
        ] {
            std::fs::copy(run.join(f), dir.join(f)).unwrap();
        }
        std::fs::create_dir_all(dir.join("checkpoint")).unwrap();
        for entry in std::fs::read_dir(run.join("checkpoint")).unwrap() {
            let from = entry.unwrap().path();
            std::fs::copy(
                &from,
                dir.join("checkpoint").join(from.file_name().unwrap()),
            )
            .unwrap();
        }
        dir
    };
    // A tokenizer that lost a character.
    let t = copy("rel-edited-tokenizer");
    let json = std::fs::read_to_string(t.join("tokenizer.json")).unwrap();
    std::fs::write(t.join("tokenizer.json"), json.replacen("\"a\",", "", 1)).unwrap();
    let args = ["sample", "--run", s(&t)];
    check_one_error_line(&args, &gpt(&args), "the run's files disagree");
    // A config that cannot work.
    let c = copy("rel-edited-config");
    let toml = std::fs::read_to_string(c.join("config.toml")).unwrap();
    std::fs::write(
        c.join("config.toml"),
        toml.replace("batch_size = 4", "batch_size = 0"),
    )
    .unwrap();
    for args in [
        vec!["sample", "--run", s(&c)],
        vec!["train", "--resume", "--out-dir", s(&c)],
    ] {
        check_one_error_line(&args, &gpt(&args), "batch_size must be > 0");
    }
    // A checkpoint whose dtype tags were changed (same bytes, read as integers).
    let d = copy("rel-edited-dtype");
    let bytes = std::fs::read(d.join("model.mpk")).unwrap();
    let tag = b"\xa3F32";
    let pos = bytes.windows(4).position(|w| w == tag).expect("an F32 tag");
    let mut edited = bytes.clone();
    edited[pos + 1..pos + 4].copy_from_slice(b"I32");
    std::fs::write(d.join("model.mpk"), edited).unwrap();
    let args = ["sample", "--run", s(&d)];
    check_one_error_line(&args, &gpt(&args), "is tagged I32, expected F32");
    // Resumes from a checkpoint whose optimizer file has a damaged parameter id, or whose
    // scheduler file was cut short (burn-train, loading them itself, would panic).
    let newest = |dir: &Path, kind: &str| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("checkpoint"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(kind))
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        files.pop().unwrap()
    };
    let o = copy("rel-edited-optim");
    let optim = newest(&o, "optim-");
    let mut bytes = std::fs::read(&optim).unwrap();
    // The first parameter id: a 13-character string (0xad) right after the "item" key.
    let item = bytes.windows(5).position(|w| w == b"\xa4item").unwrap();
    let id = item + bytes[item..].iter().position(|&b| b == 0xad).unwrap();
    bytes[id + 4] = 0;
    std::fs::write(&optim, bytes).unwrap();
    let args = ["train", "--resume", "--out-dir", s(&o)];
    check_one_error_line(&args, &gpt(&args), "is damaged");
    let c = copy("rel-edited-scheduler");
    let scheduler = newest(&c, "scheduler-");
    let bytes = std::fs::read(&scheduler).unwrap();
    std::fs::write(&scheduler, &bytes[..bytes.len() / 2]).unwrap();
    let args = ["train", "--resume", "--out-dir", s(&c)];
    check_one_error_line(&args, &gpt(&args), "cannot resume from");
}

#[test]
fn resource_bombs_are_refused_before_allocating() {
    let (parent, run) = workspace("rel-bombs");
    let o = s(&run);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--out-dir", o, "--set", "n_embd=100000000"],
            "GiB is available",
        ),
        (
            vec!["train", "--out-dir", o, "--set", "batch_size=1000000000"],
            "GiB is available",
        ),
        (
            vec![
                "train",
                "--out-dir",
                o,
                "--set",
                "eval_iters=9223372036854775807",
            ],
            "too large to count",
        ),
        (
            vec!["train", "--out-dir", o, "--set", "max_iters=0"],
            "max_iters must be > 0",
        ),
        (
            vec!["train", "--out-dir", o, "--data", "/dev/zero"],
            "not a regular file",
        ),
        (
            vec!["train", "--out-dir", o, "--config", "/dev/zero"],
            "not a regular file",
        ),
        (
            vec!["bench", "--steps", "18446744073709551615"],
            "--steps must be in",
        ),
        (
            vec!["bench", "--set", "batch_size=1000000000"],
            "GiB is available",
        ),
        (
            vec!["sample", "--run", o, "--prompt-file", "/dev/zero"],
            "not a regular file",
        ),
        (
            vec!["train", "--out-dir", o, "--device", "1"],
            "this gpt is a CPU build",
        ),
        (vec!["eval", "--run", o, "--eval-iters", "0"], "at least 1"),
    ];
    for (args, expected) in cases {
        check_one_error_line(&args, &gpt(&args), expected);
    }
    // The eval and sample cases need a run; the train cases must not have made one.
    assert!(!run.exists() || std::fs::read_dir(&run).unwrap().next().is_none());
    assert_eq!(
        snapshot(&parent, Path::new("/none")).len(),
        1,
        "only notes.txt"
    );
}

#[test]
fn sampling_into_a_closed_pipe_and_at_tiny_temperatures() {
    let (_parent, run) = workspace("rel-sample");
    assert!(train_tiny(&run, &[]).status.success());
    let mut child = gpt_command(&["sample", "--run", s(&run), "--max-new-tokens", "100000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take()); // `| head -c 16`: the reader leaves
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still generating"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert!(err.is_empty(), "{err}");

    let greedy = ok(&[
        "sample",
        "--run",
        s(&run),
        "--temperature",
        "1e-45",
        "--max-new-tokens",
        "20",
    ]);
    let top1 = ok(&[
        "sample",
        "--run",
        s(&run),
        "--top-k",
        "1",
        "--max-new-tokens",
        "20",
    ]);
    assert_eq!(greedy, top1);
}

#[test]
fn plots_skip_nan_losses_and_never_hang() {
    let (_parent, run) = workspace("rel-plot");
    assert!(train_tiny(&run, &[]).status.success());
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines: Vec<String> = csv.lines().map(String::from).collect();
    let nan = |line: &str| {
        let mut f: Vec<&str> = line.split(',').collect();
        f[2] = "NaN";
        f[3] = "NaN";
        f.join(",")
    };
    lines[2] = nan(&lines[2]);
    std::fs::write(run.join("metrics.csv"), lines.join("\n") + "\n").unwrap();
    let out = run.join("some.png");
    let o = gpt(&["plot", "--run", s(&run), "--out", s(&out)]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 of 2 evaluations"));
    assert!(out.exists());
    lines[1] = nan(&lines[1]);
    std::fs::write(run.join("metrics.csv"), lines.join("\n") + "\n").unwrap();
    let args = ["plot", "--run", s(&run), "--out", s(&out)];
    check_one_error_line(&args, &gpt(&args), "nothing to plot");
}

/// Mounts a tmpfs of `size` at a fresh folder, or says why the test cannot.
fn mount_tmpfs(name: &str, size: &str) -> Option<PathBuf> {
    let dir = tmp(name);
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            s(&dir),
        ])
        .stderr(Stdio::null())
        .status();
    if status.is_ok_and(|s| s.success()) {
        Some(dir)
    } else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root): {name}");
        None
    }
}

fn unmount(dir: &Path) {
    let _ = Command::new("umount").arg(dir).status();
}

#[test]
fn a_full_disk_is_a_failure_that_loses_nothing() {
    let Some(disk) = mount_tmpfs("rel-full", "600k") else {
        return;
    };
    let run = disk.join("run");
    // Checkpoints of ≈ 0.45 MB each (model + AdamW state): the second cannot fit.
    let o = train_tiny(
        &run,
        &[
            "--set",
            "n_embd=64",
            "--set",
            "n_head=4",
            "--set",
            "max_iters=40",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let leftovers: Vec<String> = walk(&run)
        .into_iter()
        .filter(|p| p.ends_with(".tmp"))
        .collect();
    let files = walk(&run);
    unmount(&disk);
    assert!(!o.status.success(), "a full disk must fail: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("No space left"),
        "{err}"
    );
    assert!(lines[0].contains(".mpk"), "names the file: {err}");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(files.iter().any(|f| f.contains("config.toml")), "{files:?}");
}

#[test]
fn a_read_only_run_is_read_but_not_written() {
    let Some(disk) = mount_tmpfs("rel-ro", "20m") else {
        return;
    };
    let run = disk.join("run");
    let trained = train_tiny(&run, &[]);
    let remount = Command::new("mount")
        .args(["-o", "remount,ro", s(&disk)])
        .status()
        .unwrap();
    let resume = gpt(&[
        "train",
        "--resume",
        "--out-dir",
        s(&run),
        "--set",
        "max_iters=30",
    ]);
    let sample = gpt(&["sample", "--run", s(&run), "--max-new-tokens", "5"]);
    unmount(&disk);
    assert!(trained.status.success() && remount.success());
    check_one_error_line(&["train", "--resume"], &resume, "Read-only file system");
    assert!(
        sample.status.success(),
        "{}",
        String::from_utf8_lossy(&sample.stderr)
    );
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}
