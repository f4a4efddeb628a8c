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

// Reliability III: the newer commands keep the same promises.
//
// | case | expected |
// |---|---|
// | `gpt prepare --out` a folder of the user's own files | refused, naming them; nothing changed |
// | `gpt prepare --input` a tree with a link back to itself | one error line naming the loop; nothing written |
// | the same files reached twice (two inputs, a link to a sibling) | each file prepared once |
// | a damaged row in `metrics.csv` / `train_log.csv` | plot, info, eval and resume: one line naming file and line; the file unchanged |
// | a stalled server (accepts, never answers; stops mid-body) | one error line naming `--init-from DIR` / `--data`, within the timeout |
// | `gpt export` with a directory in the way / into the user's folder | one error line; no `.tmp` left; the folder unchanged |
// | `inf` / `nan` in a config or `--set` | one error line naming the key; no run directory made |
// | `--temperature inf`, refused sampling options | "finite"; nothing on stdout |
// | `gpt attention --out` into a missing folder | one error line, no debug dump |
// | `--resume` with the run's own `--config` | accepted; a changed model key refused naming it |

/// Every file under `root`, path → content.
fn contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if entry.file_type().unwrap().is_file() {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn prepare_writes_only_its_own_folders_and_reads_each_file_once() {
    let root = tmp("rel3-prepare");
    let text = root.join("in/a.txt");
    std::fs::create_dir_all(text.parent().unwrap()).unwrap();
    std::fs::write(
        &text,
        "To be, or not to be, that is the question.\n".repeat(50),
    )
    .unwrap();
    let text = text.to_str().unwrap().to_string();

    // The user's own train.bin and val.bin: refused, named, untouched.
    let mine = root.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("train.bin"), "my tokens").unwrap();
    std::fs::write(mine.join("val.bin"), "my val tokens").unwrap();
    let before = contents(&root);
    let args = [
        "prepare",
        "--tokenizer",
        "char",
        "--input",
        &text,
        "--out",
        s(&mine),
    ];
    check_one_error_line(
        &args,
        &gpt(&args),
        "holds no prepared data (it has train.bin, val.bin)",
    );
    assert_eq!(contents(&root), before);

    // A fresh folder is prepared, and prepared again (it is its own now).
    let out = root.join("prepared");
    let args = [
        "prepare",
        "--tokenizer",
        "char",
        "--input",
        &text,
        "--out",
        s(&out),
    ];
    ok(&args);
    let mut again = args.to_vec();
    again.push("--force");
    ok(&again);

    // A link back to a directory it is inside: one line naming the loop, nothing written.
    let tree = root.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("one.txt"), "first document ".repeat(40)).unwrap();
    let docs: String = (0..20)
        .map(|i| {
            format!(
                "{{\"text\": \"document number {i} {}\"}}\n",
                "word ".repeat(30)
            )
        })
        .collect();
    std::fs::write(tree.join("sub/two.jsonl"), docs).unwrap();
    std::os::unix::fs::symlink(".", tree.join("self")).unwrap();
    let looped = root.join("looped");
    let args = [
        "prepare",
        "--tokenizer",
        "char",
        "--input",
        s(&tree),
        "--out",
        s(&looped),
    ];
    let start = Instant::now();
    check_one_error_line(&args, &gpt(&args), "a loop");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(!looped.exists());

    // Without the loop, a second link to `sub` and the same file given twice: each file
    // once, by its real path.
    std::fs::remove_file(tree.join("self")).unwrap();
    std::os::unix::fs::symlink("sub", tree.join("also-sub")).unwrap();
    let once = root.join("once");
    let one = tree.join("one.txt");
    let args = [
        "prepare",
        "--tokenizer",
        "char",
        "--val-fraction",
        "0.4",
        "--input",
        s(&tree),
        s(&one),
        "--out",
        s(&once),
    ];
    ok(&args);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(once.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["inputs"].as_array().unwrap().len(), 2, "{meta}");
    assert_eq!(meta["documents"], 21, "{meta}");
}

#[test]
fn a_damaged_log_row_is_an_error_never_a_shorter_log() {
    let (_parent, run) = workspace("rel3-metrics");
    let o = train_tiny(&run, &["--set", "max_iters=30", "--set", "log_interval=5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let runs = s(&run);
    for (file, damage) in [
        ("metrics.csv", &b"\xff\xfe"[..]),
        ("metrics.csv", &b"not,a,row"[..]),
        ("train_log.csv", &b"\xff"[..]),
    ] {
        let path = run.join(file);
        let good = std::fs::read(&path).unwrap();
        // The second line's start is damaged.
        let at = good.iter().position(|&b| b == b'\n').unwrap() + 1;
        let mut bad = good[..at].to_vec();
        bad.extend_from_slice(damage);
        bad.extend_from_slice(&good[at..]);
        std::fs::write(&path, &bad).unwrap();
        let before = contents(&run);
        let expected = format!("{file} line 2");
        let commands: Vec<Vec<&str>> = vec![
            vec!["plot", "--run", runs, "--out", "/tmp/never-written.png"],
            vec![
                "train",
                "--resume",
                "--out-dir",
                runs,
                "--set",
                "max_iters=40",
            ],
        ];
        let mut commands = commands;
        if file == "metrics.csv" {
            commands.push(vec!["info", "--run", runs]);
            commands.push(vec!["eval", "--run", runs, "--eval-iters", "1"]);
        }
        for args in &commands {
            check_one_error_line(args, &gpt(args), &expected);
        }
        // Nothing in the run changed but the writer's lock file.
        let mut after = contents(&run);
        let mut before = before;
        after.remove(&run.join("run.lock"));
        before.remove(&run.join("run.lock"));
        assert_eq!(after, before, "{file}: the run's files are unchanged");
        std::fs::write(&path, &good).unwrap();
    }
    // Repaired, the run resumes where it was.
    ok(&[
        "train",
        "--resume",
        "--out-dir",
        runs,
        "--set",
        "max_iters=40",
        "--sample-tokens",
        "0",
    ]);
    let rows = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(rows.lines().count(), 1 + 4, "{rows}");
}

/// A server on 127.0.0.1 that accepts connections and, per `body`, never answers
/// (`None`) or sends a response head promising more bytes than it sends, then stalls.
/// Returns its base URL; its thread ends with the test process.
fn stalled_server(body: Option<&'static [u8]>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            if let Some(body) = body {
                use std::io::Write;
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\nx-linked-etag: \"{}\"\r\nx-linked-size: 1000000\r\n\r\n",
                    "0".repeat(64)
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
            }
            held.push(stream); // open, silent
        }
    });
    base
}

#[test]
fn a_stalled_download_is_one_error_line_within_the_timeout() {
    let cache = tmp("rel3-stall-cache");
    for body in [None, Some(&b"the first bytes"[..])] {
        let base = stalled_server(body);
        let stalls = |args: &[&str], env: &[(&str, &str)], expected: &str| {
            let start = Instant::now();
            let mut cmd = gpt_command(args);
            cmd.env_remove("BURNGPT_DATA_DIR")
                .env("BURNGPT_CACHE", &cache)
                .env("BURNGPT_HTTP_TIMEOUT_S", "1")
                .envs(env.iter().copied());
            check_one_error_line(args, &cmd.output().unwrap(), expected);
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{:?}",
                start.elapsed()
            );
        };
        // --init-from gpt2: the hub (or a mirror) that stalls.
        stalls(
            &["sample", "--init-from", "gpt2", "--max-new-tokens", "1"],
            &[("BURNGPT_HF_ENDPOINT", &base)],
            "--init-from DIR",
        );
        // A named dataset from a mirror that stalls.
        let (_parent, run) = workspace("rel3-stall-run");
        stalls(
            &common::tiny_train_args(&run, &[]),
            &[("BURNGPT_MIRROR", &base)],
            "could not download tinyshakespeare",
        );
        let left: Vec<String> = walk(&cache);
        assert!(left.is_empty(), "nothing cached: {left:?}");
    }
}

#[test]
fn a_failed_export_leaves_nothing_and_foreign_folders_are_refused() {
    let (parent, run) = workspace("rel3-export");
    assert!(
        train_tiny(&run, &["--set", "tie_weights=true"])
            .status
            .success()
    );
    // A directory in the way of model.safetensors.
    let out = parent.join("hf");
    std::fs::create_dir_all(out.join("model.safetensors")).unwrap();
    std::fs::write(out.join("model.safetensors/keep"), "x").unwrap();
    let before = contents(&parent);
    let args = ["export", "--run", s(&run), "--out", s(&out)];
    let o = gpt(&args);
    check_one_error_line(&args, &o, "model.safetensors");
    let tmp_left: Vec<String> = walk(&parent)
        .into_iter()
        .filter(|p| p.ends_with(".tmp"))
        .collect();
    assert!(tmp_left.is_empty(), "{tmp_left:?}");
    assert_eq!(
        contents(&parent).get(&out.join("model.safetensors/keep")),
        before.get(&out.join("model.safetensors/keep"))
    );
    // A folder of the user's own files.
    let mine = parent.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("paper.pdf"), "precious").unwrap();
    let before = contents(&parent);
    let args = ["export", "--run", s(&run), "--out", s(&mine)];
    check_one_error_line(
        &args,
        &gpt(&args),
        "holds no GPT-2 export (it has paper.pdf)",
    );
    assert_eq!(contents(&parent), before);
    // An earlier export is replaced.
    let fresh = parent.join("fresh");
    ok(&["export", "--run", s(&run), "--out", s(&fresh)]);
    ok(&["export", "--run", s(&run), "--out", s(&fresh)]);
}

#[test]
fn non_finite_numbers_and_refused_options_say_so_before_anything_happens() {
    let (parent, run) = workspace("rel3-finite");
    for (set, key) in [
        ("learning_rate=inf", "learning_rate must be a finite number"),
        ("weight_decay=nan", "weight_decay must be a finite number"),
        ("grad_clip=nan", "grad_clip must be a finite number"),
        ("dropout=-inf", "dropout must be a finite number"),
    ] {
        let args = common::tiny_train_args(&run, &["--set", set]);
        check_one_error_line(&args, &gpt(&args), key);
        assert!(!run.exists(), "{set}: no run directory");
    }
    let preset = parent.join("nan.toml");
    std::fs::write(&preset, "[train]\nmin_lr = nan\n").unwrap();
    let args = ["train", "--config", s(&preset), "--out-dir", s(&run)];
    check_one_error_line(&args, &gpt(&args), "train.min_lr must be a finite number");
    assert!(!run.exists());

    assert!(train_tiny(&run, &[]).status.success());
    for (flag, value, expected) in [
        ("--temperature", "inf", "finite"),
        ("--temperature", "0", "finite number > 0"),
        ("--top-k", "0", "top_k"),
    ] {
        let args = [
            "sample",
            "--run",
            s(&run),
            "--prompt",
            "ROMEO:",
            flag,
            value,
        ];
        let o = gpt(&args);
        check_one_error_line(&args, &o, expected);
        assert!(
            o.stdout.is_empty(),
            "nothing printed: {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let missing = parent.join("no/such/folder/attention.png");
    let args = [
        "attention",
        "--run",
        s(&run),
        "--prompt",
        "ROMEO:",
        "--out",
        s(&missing),
    ];
    let o = gpt(&args);
    check_one_error_line(&args, &o, "No such file or directory");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("Os {") && !err.contains("ImageError"),
        "{err}"
    );
}

#[test]
fn resume_takes_the_command_that_started_the_run() {
    let (parent, run) = workspace("rel3-resume-config");
    let preset = parent.join("tiny.toml");
    std::fs::write(
        &preset,
        "[model]\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 16\n\n[train]\nbatch_size = 4\neval_iters = 2\neval_interval = 10\nmax_iters = 20\n",
    )
    .unwrap();
    let start = [
        "train",
        "--config",
        s(&preset),
        "--out-dir",
        s(&run),
        "--sample-tokens",
        "0",
    ];
    ok(&start);
    // The same command with --resume (and a longer max_iters in the file) goes on.
    std::fs::write(
        &preset,
        std::fs::read_to_string(&preset)
            .unwrap()
            .replace("max_iters = 20", "max_iters = 30"),
    )
    .unwrap();
    let mut resume = start.to_vec();
    resume.push("--resume");
    ok(&resume);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        json["resumes"][0]["set"],
        serde_json::json!(["train.max_iters=30"]),
        "{json}"
    );
    let rows = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(rows.lines().last().unwrap().starts_with("3,30,"), "{rows}");
    // A file that changes the model is another run: refused, naming the key.
    let config = std::fs::read(run.join("config.toml")).unwrap();
    std::fs::write(
        &preset,
        std::fs::read_to_string(&preset)
            .unwrap()
            .replace("n_layer = 1", "n_layer = 2"),
    )
    .unwrap();
    check_one_error_line(&resume, &gpt(&resume), "cannot change model.n_layer");
    assert_eq!(std::fs::read(run.join("config.toml")).unwrap(), config);
}
