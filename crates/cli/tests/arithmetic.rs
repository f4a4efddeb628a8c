//! End-to-end tests of an arithmetic run (exercise 2): a tiny addition model trained for a
//! few iterations answers in a person's notation, is scored by exact match, and answers a
//! malformed problem with one clear error line; a tiny calculator with traces is trained
//! on by reinforcement learning, resumed, and shows its trace. Too short runs to be
//! right; these check the plumbing, `experiments/RESULTS.md` the accuracy.

mod common;

use common::{check_one_error_line, gpt, json, ok, tmp};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PRESET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../experiments/addition.toml"
);

const CALCULATOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../experiments/calculator.toml"
);

const CALCULATOR_RL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../experiments/calculator_rl.toml"
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
fn eval_reports_exact_match_per_cell_and_training_logs_it() {
    let run = trained_run();
    let eval = json(&ok(&["eval", "--run", run, "--json", "--problems", "40"]));
    assert_eq!(eval["iter"], 20);
    let exact = eval["exact_match"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&exact), "{eval}");
    let problems = eval["problems"].as_u64().unwrap();
    let cells = eval["cells"].as_array().unwrap();
    // 3-digit sums: a and b of 1, 2 or 3 digits each, 40 problems a cell but where the
    // cell holds fewer held-out ones (1 + 1 digits: about 10).
    assert_eq!(cells.len(), 9, "{eval}");
    let per_cell: Vec<u64> = cells
        .iter()
        .map(|c| c["problems"].as_u64().unwrap())
        .collect();
    assert_eq!(per_cell.iter().sum::<u64>(), problems);
    assert!(
        per_cell[0] < 40 && per_cell[1..].iter().all(|&n| n == 40),
        "{per_cell:?}"
    );
    for c in cells {
        assert_eq!(c["op"], "+");
        let (exact, lower) = (
            c["exact_match"].as_f64().unwrap(),
            c["lower_95"].as_f64().unwrap(),
        );
        assert!(lower <= exact && (0.0..=1.0).contains(&exact), "{c}");
        // Addition has no trace: the whole answer is the result.
        assert_eq!(c["trace_exact"], c["exact_match"], "{c}");
    }
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

/// The step values of `train_log.csv`'s rows, by column name.
fn logged(run: &Path, column: &str) -> Vec<f64> {
    let csv = std::fs::read_to_string(run.join("train_log.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == column).expect(column);
    lines
        .map(|l| l.split(',').nth(at).unwrap().parse().unwrap())
        .collect()
}

/// A tiny calculator with traces, then reinforcement learning from it: the reward and
/// pass@k are logged at each step and shown by `gpt info`, the run resumes, and a
/// problem's answer comes with its trace on a second line.
#[test]
fn reinforcement_learning_starts_from_a_run_and_logs_its_reward() {
    let base = tmp("calculator-base");
    let b = base.to_str().unwrap();
    let mut args = vec![
        "train",
        "--config",
        CALCULATOR,
        "--out-dir",
        b,
        "--sample-tokens",
        "0",
    ];
    args.extend_from_slice(TINY);
    ok(&args);
    let line = ok(&["sample", "--run", b, "--prompt", "456/7", "--top-k", "1"]);
    // Too little trained to keep the layout, or with its steps on a second line.
    let lines: Vec<&str> = line.lines().collect();
    assert!(lines[0].starts_with("456/7="), "{line}");
    match lines[..] {
        [answer] => assert!(answer.contains("=? (the model wrote"), "{line}"),
        [_, trace] => assert!(trace.starts_with("  trace: 7 × 1 to 9: 7 14 21 "), "{line}"),
        _ => panic!("{line}"),
    }

    let rl = tmp("calculator-rl");
    let r = rl.to_str().unwrap();
    let small = [
        "--set",
        "n_layer=1",
        "--set",
        "n_head=2",
        "--set",
        "n_embd=16",
        "--set",
        "batch_size=4",
        "--set",
        "samples=3",
        "--set",
        "eval_iters=1",
        "--set",
        "eval_interval=2",
        "--set",
        "max_iters=4",
        "--set",
        "log_interval=1",
    ];
    // `gpt train` of the RL config from the base into `out`, small.
    let rl_train = |out| {
        let mut args = vec![
            "train",
            "--config",
            CALCULATOR_RL,
            "--init-from",
            b,
            "--out-dir",
            out,
            "--sample-tokens",
            "0",
        ];
        args.extend_from_slice(&small);
        args
    };
    ok(&rl_train(r));
    let rewards = logged(&rl, "reward");
    assert_eq!(rewards.len(), 4);
    assert!(
        rewards.iter().all(|r| (0.0..=1.0).contains(r)),
        "{rewards:?}"
    );
    let pass = logged(&rl, "pass_at_k");
    assert!(
        pass.iter().zip(&rewards).all(|(p, r)| p >= r),
        "{pass:?} {rewards:?}"
    );
    let info = json(&ok(&["info", "--run", r, "--json"]));
    assert!(info.to_string().contains("\"reward\""), "{info}");
    // Resumed, it goes on to 6 iterations, logging on.
    ok(&[
        "train",
        "--resume",
        "--out-dir",
        r,
        "--set",
        "max_iters=6",
        "--sample-tokens",
        "0",
    ]);
    assert_eq!(logged(&rl, "reward").len(), 6);
    // A supervised run's log has the columns, never a value.
    assert!(logged(&base, "reward").iter().all(|r| r.is_nan()));

    let out = tmp("calculator-rl-bad");
    let o = out.to_str().unwrap();
    let refused: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--set", "samples=1"], "at least 2"),
        (vec!["--set", "temperature=0"], "temperature"),
        (vec!["--set", "trace=false"], "the task's layout differs"),
    ];
    for (extra, expected) in refused {
        let mut args = rl_train(o);
        args.extend_from_slice(&extra);
        check_one_error_line(&args, &gpt(&args), expected);
        assert!(!out.exists(), "a refused run leaves no directory");
    }
    let text = [
        "train",
        "--out-dir",
        o,
        "--set",
        "samples=4",
        "--set",
        "max_iters=1",
    ];
    check_one_error_line(&text, &gpt(&text), "only dataset = \"arithmetic\" has one");
}
