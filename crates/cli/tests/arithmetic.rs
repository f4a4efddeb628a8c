//! End-to-end tests of an arithmetic run (exercise 2): a tiny addition model trained for a
//! few iterations answers in a person's notation, is scored by exact match, and answers a
//! malformed problem with one clear error line. Too short a run to be right; these check
//! the plumbing, `experiments/RESULTS.md` the accuracy.

mod common;

use common::{check_one_error_line, gpt, json, ok, tmp};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PRESET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../experiments/addition.toml"
);

/// The addition preset shrunk to train in about a second.
const TINY: &[&str] = &[
    "--set",
    "n_layer=1",
    "--set",
    "n_head=2",
    "--set",
    "n_embd=16",
    "--set",
    "batch_size=8",
    "--set",
    "eval_iters=2",
    "--set",
    "eval_interval=10",
    "--set",
    "max_iters=20",
];

fn trained_run() -> &'static str {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    let dir = RUN.get_or_init(|| {
        let dir = tmp("addition");
        let d = dir.to_str().unwrap();
        let mut args = vec![
            "train",
            "--config",
            PRESET,
            "--out-dir",
            d,
            "--sample-tokens",
            "0",
        ];
        args.extend_from_slice(TINY);
        ok(&args);
        dir
    });
    dir.to_str().unwrap()
}

fn solve(prompt: &str, seed: &str) -> String {
    let run = trained_run();
    let args = [
        "sample", "--run", run, "--prompt", prompt, "--top-k", "1", "--seed", seed,
    ];
    ok(&args).trim_end().to_string()
}

/// The problem as typed, then the answer as a person writes it: digits in the usual order,
/// no padding zeros (or `?` and the raw answer when the untrained model breaks the layout).
fn assert_natural(line: &str, problem: &str) {
    let answer = line.strip_prefix(&format!("{problem}=")).expect(line);
    let number = !answer.is_empty()
        && answer.chars().all(|c| c.is_ascii_digit())
        && (answer == "0" || !answer.starts_with('0'));
    assert!(number || answer.starts_with("? (the model wrote"), "{line}");
}

#[test]
fn sample_reads_natural_input_and_answers_in_natural_notation() {
    let line = solve("7+45=", "1");
    assert_natural(&line, "7+45");
    // Top-k 1 is greedy: the seed does not matter, and every spelling of the problem is
    // padded into the same prompt.
    for (prompt, seed) in [("7+45=", "2"), (" 7 + 45 ", "1"), ("007+045", "1")] {
        assert_eq!(solve(prompt, seed), line, "{prompt:?}");
    }
    // Without a prompt: a held-out problem.
    let out = ok(&["sample", "--run", trained_run()]);
    let problem = out.split('=').next().unwrap();
    let (a, b) = problem.split_once('+').expect(&out);
    assert!(
        a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok(),
        "{out}"
    );
    assert_natural(out.trim_end(), problem);
}

#[test]
fn eval_reports_exact_match_and_training_logs_it() {
    let run = trained_run();
    let eval = json(&ok(&["eval", "--run", run, "--json", "--problems", "40"]));
    assert_eq!(eval["iter"], 20);
    let exact = eval["exact_match"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&exact), "{eval}");
    let problems = eval["problems"].as_u64().unwrap();
    assert!((1..=40).contains(&problems), "{eval}");
    let cases = eval["cases"].as_array().unwrap();
    let per_case: u64 = cases.iter().map(|c| c["problems"].as_u64().unwrap()).sum();
    assert_eq!(per_case, problems);
    assert!(cases.iter().all(|c| c["op"] == "+"), "{eval}");
    assert!(eval["val_loss"].as_f64().unwrap() > 0.0);
    // Each evaluation during training logged its exact match in metrics.csv.
    let csv = std::fs::read_to_string(Path::new(run).join("metrics.csv")).unwrap();
    for line in csv.lines().skip(1) {
        let exact: f64 = line.rsplit(',').next().unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&exact), "{line}");
    }
}

#[test]
fn malformed_problems_get_one_clear_error_line() {
    let run = trained_run();
    let text = tmp("some-text.txt");
    std::fs::write(&text, "not a problem").unwrap();
    let t = text.to_str().unwrap();
    let out = tmp("arith-out");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["sample", "--run", run, "--prompt", "7+4a="],
            "'a' is not a digit",
        ),
        (
            vec!["sample", "--run", run, "--prompt", "1234+5"],
            "1234 has more than 3 digits",
        ),
        (
            vec!["sample", "--run", run, "--prompt", "7+"],
            "the number after '+' is missing",
        ),
        (
            vec!["sample", "--run", run, "--prompt", "=45"],
            "no operator",
        ),
        (
            vec!["sample", "--run", run, "--prompt", "12*3"],
            "not trained on '*'",
        ),
        (
            vec!["eval", "--run", run, "--full"],
            "--full walks a text's val split",
        ),
        (
            vec![
                "train",
                "--config",
                PRESET,
                "--out-dir",
                o,
                "--set",
                "block_size=8",
            ],
            "block_size must be at least 11",
        ),
        (
            vec!["train", "--config", PRESET, "--out-dir", o, "--data", t],
            "--data gives a text",
        ),
        (
            vec![
                "train",
                "--config",
                PRESET,
                "--out-dir",
                o,
                "--set",
                "n_digits=12",
            ],
            "n_digits must be in 1..=9",
        ),
    ];
    for (args, expected) in cases {
        check_one_error_line(&args, &gpt(&args), expected);
    }
}
