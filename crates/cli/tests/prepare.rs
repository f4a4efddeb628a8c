//! End-to-end tests of `gpt prepare` and of training on what it writes: the char-level
//! Tiny Shakespeare through a prepared directory trains exactly as in memory; a GPT-2
//! BPE run samples, evaluates and finetunes (`--init-from`); re-running is a no-op; a
//! killed prepare is never taken for a finished one.

mod common;

use common::{check_one_error_line, gpt, gpt_command, json, ok, shakespeare_path, tmp, train_tiny};
use std::path::Path;

fn prepare(input: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "prepare",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&args)
}

fn rows(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(String::from)
        .collect()
}

/// The losses (and everything else but wall time and throughput) of each evaluation.
fn losses(run: &Path) -> Vec<(f64, f64)> {
    let info = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = info.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (t, v) = (col("train_loss"), col("val_loss"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[t].parse().unwrap(), f[v].parse().unwrap())
        })
        .collect()
}

#[test]
fn char_shakespeare_prepared_trains_exactly_as_in_memory() {
    let dir = tmp("prepared-char");
    let data = dir.join("data");
    let out = prepare(
        &shakespeare_path(),
        &data,
        &["--tokenizer", "char", "--val-fraction", "0.1"],
    );
    assert!(out.contains("1003854 train + 111540 val tokens"), "{out}");
    let memory = dir.join("memory");
    let mapped = dir.join("mapped");
    assert!(train_tiny(&memory, &[]).status.success());
    let o = train_tiny(&mapped, &["--data", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (losses(&memory), losses(&mapped));
    assert_eq!(a.len(), 2);
    assert_eq!(a, b, "same seed, same data: the same losses");
    let info = json(&ok(&["info", "--run", mapped.to_str().unwrap(), "--json"]));
    assert_eq!(info["tokenizer"], "char");
    let dataset = &info["config"]["train"]["dataset"];
    assert!(
        dataset.as_str().unwrap().starts_with("prepared:/"),
        "{info}"
    );
    assert_eq!(
        info["data"]["dataset"], *dataset,
        "one form in config and run.json"
    );
    assert_eq!(rows(&memory).len(), rows(&mapped).len());
}

#[test]
fn gpt2_runs_sample_eval_and_finetune_from_each_other() {
    let dir = tmp("prepared-gpt2");
    let data = dir.join("data");
    let out = prepare(&shakespeare_path(), &data, &["--val-fraction", "0.1"]);
    // All of Tiny Shakespeare is 338,025 GPT-2 tokens, plus one <|endoftext|>.
    assert!(out.contains("304223 train + 33803 val tokens"), "{out}");
    let again = prepare(&shakespeare_path(), &data, &["--val-fraction", "0.1"]);
    assert!(again.contains("nothing to do"), "{again}");
    let d = data.to_str().unwrap();
    let pre = dir.join("pre");
    let o = train_tiny(&pre, &["--data", d]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = pre.to_str().unwrap();
    let info = json(&ok(&["info", "--run", p, "--json"]));
    assert_eq!(info["tokenizer"], "gpt2");
    assert_eq!(info["config"]["model"]["vocab_size"], 50257);
    let tokenizer = std::fs::read_to_string(pre.join("tokenizer.json")).unwrap();
    assert_eq!(tokenizer, r#"{"kind":"gpt2"}"#);
    let marker = json(
        &std::fs::read_to_string(pre.join("run.json"))
            .unwrap()
            .replace('\n', " "),
    );
    assert_eq!(marker["tokenizer"], "gpt2");
    // Sampling decodes BPE (the prompt is encoded with GPT-2's BPE too).
    let sample = ok(&[
        "sample",
        "--run",
        p,
        "--prompt",
        "ROMEO: héllo",
        "--max-new-tokens",
        "20",
    ]);
    assert!(
        sample.starts_with("ROMEO: héllo") && sample.len() > 20,
        "{sample}"
    );
    let eval = json(&ok(&["eval", "--run", p, "--json"]));
    let val = eval["val_loss"].as_f64().unwrap();
    assert!(val > 3.0 && val < 11.5, "{eval}");

    // Finetune: another run starts from pre's weights, with a fresh schedule.
    let fine = dir.join("fine");
    let f = fine.to_str().unwrap();
    let o = train_tiny(
        &fine,
        &[
            "--data",
            d,
            "--init-from",
            p,
            "--set",
            "max_iters=10",
            "--set",
            "dropout=0.1",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let marker = json(
        &std::fs::read_to_string(fine.join("run.json"))
            .unwrap()
            .replace('\n', " "),
    );
    assert_eq!(marker["init_from"]["weights"], "final");
    assert_eq!(marker["init_from"]["iter"], 20);
    assert!(
        marker["init_from"]["run"]
            .as_str()
            .unwrap()
            .ends_with("pre")
    );
    // It starts where pre ended: its first evaluation is far below a fresh model's.
    let fresh = dir.join("fresh");
    assert!(
        train_tiny(&fresh, &["--data", d, "--set", "max_iters=10"])
            .status
            .success()
    );
    let (tuned, scratch) = (losses(&fine)[0].1, losses(&fresh)[0].1);
    assert!(
        tuned < scratch,
        "init-from {tuned} vs from scratch {scratch}"
    );

    // A different architecture or tokenizer is refused, naming what differs.
    let refused = |extra: &[&str], expected: &str| {
        let mut a = vec![
            "train",
            "--out-dir",
            f,
            "--overwrite",
            "--sample-tokens",
            "0",
        ];
        a.extend_from_slice(common::TINY);
        a.extend_from_slice(extra);
        check_one_error_line(&a, &gpt(&a), expected);
    };
    refused(
        &["--data", d, "--init-from", p, "--set", "n_embd=32"],
        "n_embd = 16 there, 32 here",
    );
    refused(&["--init-from", p], "the tokenizer differs");
    refused(
        &[
            "--data",
            d,
            "--init-from",
            p,
            "--init-weights",
            "best",
            "--set",
            "block_size=8",
        ],
        "block_size = 16 there, 8 here",
    );
}

#[test]
fn a_killed_prepare_is_never_taken_for_a_finished_one() {
    let dir = tmp("prepared-killed");
    std::fs::create_dir_all(&dir).unwrap();
    // ~40 MB of text: seconds of work, so the kill lands mid-way.
    let text = std::fs::read_to_string(shakespeare_path()).unwrap();
    let input = dir.join("big.txt");
    std::fs::write(&input, text.repeat(36)).unwrap();
    let data = dir.join("data");
    let mut child = gpt_command(&[
        "prepare",
        "--input",
        input.to_str().unwrap(),
        "--out",
        data.to_str().unwrap(),
    ])
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let partial = data.join("train.bin.partial");
    let start = std::time::Instant::now();
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) == 0 {
        assert!(
            start.elapsed().as_secs() < 60,
            "prepare never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!data.join("meta.json").exists());
    let d = data.to_str().unwrap();
    let run = dir.join("run");
    let args = ["train", "--out-dir", run.to_str().unwrap(), "--data", d];
    check_one_error_line(&args, &gpt(&args), "unfinished `gpt prepare`");
    // Running it again finishes the job.
    let out = prepare(&input, &data, &["--tokenizer", "char", "--force"]);
    assert!(out.contains("prepared"), "{out}");
    assert!(data.join("meta.json").exists() && !partial.exists());
}

#[test]
fn prepare_mistakes_are_one_error_line() {
    let dir = tmp("prepared-mistakes");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let csv = dir.join("x.csv");
    std::fs::write(&csv, "a,b\n").unwrap();
    let c = csv.to_str().unwrap();
    let args = ["prepare", "--input", c, "--out", o];
    check_one_error_line(&args, &gpt(&args), "expected a .txt or .jsonl file");
    let s = shakespeare_path();
    let s = s.to_str().unwrap();
    let args = ["prepare", "--input", s, "--out", o, "--val-fraction", "1.5"];
    check_one_error_line(&args, &gpt(&args), "--val-fraction must be between 0 and 1");
    let args = ["prepare", "--input", s, "--out", o, "--tokenizer", "bpe"];
    check_one_error_line(
        &args,
        &gpt(&args),
        "use char, gpt2 or the path of a tokenizer.json",
    );
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let args = ["train", "--out-dir", o, "--data", empty.to_str().unwrap()];
    check_one_error_line(&args, &gpt(&args), "no meta.json");
}
