//! The pictures: `gpt plot` (one run with its training-loss log, several runs on one
//! chart) and `gpt attention`. Each PNG is checked for its pixel size and for not being
//! blank; the attention numbers are checked against the model's own attention weights.

mod common;

use burn::backend::Flex;
use burn::prelude::*;
use common::{check_one_error_line, gpt, ok, tmp, train_tiny};
use data::Tokenizer;
use std::collections::HashSet;
use std::path::Path;

/// Width, height and the number of distinct colours (up to 1000) of a PNG.
fn inspect(path: &Path) -> (u32, u32, usize) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(file).read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let samples = info.color_type.samples();
    let mut colours = HashSet::new();
    for px in buf[..info.buffer_size()].chunks(samples) {
        colours.insert(px.to_vec());
        if colours.len() >= 1000 {
            break;
        }
    }
    (info.width, info.height, colours.len())
}

fn assert_picture(path: &Path, size: (u32, u32)) {
    let (w, h, colours) = inspect(path);
    assert_eq!((w, h), size, "{}", path.display());
    assert!(
        colours > 10,
        "{} is blank: {colours} colours",
        path.display()
    );
}

fn train(dir: &Path, extra: &[&str]) {
    let o = train_tiny(dir, extra);
    assert!(
        o.status.success(),
        "training {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn plot_draws_one_run_with_its_training_log() {
    let dir = tmp("plot-one");
    train(&dir, &["--set", "log_interval=5"]);
    // The training loss every log_interval iterations, beside the evaluations.
    let log = std::fs::read_to_string(dir.join("train_log.csv")).unwrap();
    let iters: Vec<&str> = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        log.lines().next(),
        Some("iter,loss,grad_norm,reward,pass_at_k")
    );
    assert_eq!(iters, ["5", "10", "15", "20"], "{log}");
    let out = dir.join("chart.png");
    let stdout = ok(&[
        "plot",
        "--run",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("wrote"), "{stdout}");
    assert_picture(&out, (900, 640));
    // Without --out: loss.png in the run; log scales work too.
    ok(&["plot", "--run", dir.to_str().unwrap(), "--log-x", "--log-y"]);
    assert_picture(&dir.join("loss.png"), (900, 640));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plot_compares_several_runs_on_one_chart() {
    let (a, b) = (tmp("plot-a"), tmp("plot-b"));
    train(&a, &[]);
    train(&b, &["--set", "learning_rate=3e-3", "--set", "n_embd=32"]);
    let out = tmp("plot-compare.png");
    let args = [
        "plot",
        "--run",
        a.to_str().unwrap(),
        "--run",
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    ok(&args);
    assert_picture(&out, (900, 640));
    let mut log = args.to_vec();
    log.push("--log-y");
    ok(&log);
    assert_picture(&out, (900, 640));
    for d in [a, b] {
        std::fs::remove_dir_all(d).unwrap();
    }
    std::fs::remove_file(out).unwrap();
}

#[test]
fn plot_refuses_runs_with_different_tokenizers() {
    let (a, b) = (tmp("plot-tok-a"), tmp("plot-tok-b"));
    train(&a, &[]);
    let text = tmp("plot-tok.txt");
    std::fs::write(&text, "abcd efgh\n".repeat(400)).unwrap();
    train(&b, &["--data", text.to_str().unwrap()]);
    let out = tmp("plot-tok.png");
    let args = [
        "plot",
        "--run",
        a.to_str().unwrap(),
        "--run",
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    check_one_error_line(&args, &gpt(&args), "use different tokenizers");
    assert!(!out.exists());
    for d in [a, b] {
        std::fs::remove_dir_all(d).unwrap();
    }
    std::fs::remove_file(text).unwrap();
}

/// The numbers `gpt attention` draws are the model's attention weights
/// (`Model::attention_maps` of the run's trained model, recomputed here), the picture has
/// one 320-pixel panel per head in a row per layer, and `--layer`/`--head` pick one.
#[test]
fn attention_draws_the_models_weights() {
    let dir = tmp("attention");
    train(&dir, &["--set", "n_layer=2"]);
    let out = dir.join("attention.png");
    let prompt = "ROMEO:\nBut soft";
    let stdout = ok(&[
        "attention",
        "--run",
        dir.to_str().unwrap(),
        "--prompt",
        prompt,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    // 2 layers × 2 heads: 14 + 2 × (40 + 320 + 14) + 110 wide, 40 + 2 × (26 + 320 + 30) + 14 high.
    assert_picture(&out, (872, 806));
    assert_eq!(json["width"], 872);
    assert_eq!(json["height"], 806);
    let tokens: Vec<&str> = json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens[..7], ["R", "O", "M", "E", "O", ":", "\\n"]);
    assert_eq!(tokens[10], "·");

    let run = training::RunDir::open(&dir).unwrap();
    let device = Default::default();
    let model = run.load_model::<Flex>(&device).unwrap();
    let ids: Vec<i64> = run
        .tokenizer()
        .unwrap()
        .encode(prompt)
        .unwrap()
        .into_iter()
        .map(i64::from)
        .collect();
    let t = ids.len();
    let idx = Tensor::<Flex, 1, Int>::from_data(TensorData::new(ids, [t]), &device).reshape([1, t]);
    let maps = model.attention_maps(idx).unwrap();
    let drawn = json["maps"].as_array().unwrap();
    assert_eq!(drawn.len(), 4);
    for map in drawn {
        let (l, h) = (
            map["layer"].as_u64().unwrap() as usize,
            map["head"].as_u64().unwrap() as usize,
        );
        let expected: Vec<f32> = maps[l]
            .clone()
            .slice([0..1, h..h + 1])
            .into_data()
            .to_vec()
            .unwrap();
        let got: Vec<f32> = map["weights"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w.as_f64().unwrap() as f32)
            })
            .collect();
        assert_eq!(got.len(), t * t);
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-6, "layer {l} head {h}: {g} vs {e}");
        }
        // Causal: exactly 0 above the diagonal.
        for i in 0..t {
            assert!(got[i * t + i + 1..(i + 1) * t].iter().all(|&w| w == 0.0));
        }
    }

    // One layer, one head: a single panel.
    let one = dir.join("one.png");
    let stdout = ok(&[
        "attention",
        "--run",
        dir.to_str().unwrap(),
        "--prompt",
        prompt,
        "--layer",
        "1",
        "--head",
        "0",
        "--out",
        one.to_str().unwrap(),
    ]);
    assert!(stdout.contains("wrote"), "{stdout}");
    assert_picture(&one, (498, 430));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn attention_bad_input_is_one_error_line() {
    let dir = tmp("attention-bad");
    train(&dir, &[]);
    let bigram = tmp("attention-bigram");
    train(&bigram, &["--set", "model.model=bigram"]);
    let run = dir.to_str().unwrap();
    let out = tmp("attention-bad.png");
    let out = out.to_str().unwrap();
    let long = "a".repeat(17); // block_size is 16
    for (args, expected) in [
        (
            vec![
                "attention",
                "--run",
                run,
                "--prompt",
                long.as_str(),
                "--out",
                out,
            ],
            "block_size) is 16",
        ),
        (
            vec![
                "attention",
                "--run",
                run,
                "--prompt",
                "ab",
                "--layer",
                "1",
                "--out",
                out,
            ],
            "layer 1 does not exist",
        ),
        (
            vec![
                "attention",
                "--run",
                run,
                "--prompt",
                "ab",
                "--head",
                "2",
                "--out",
                out,
            ],
            "head 2 does not exist",
        ),
        (
            vec!["attention", "--run", run, "--prompt", "ab€", "--out", out],
            "cannot be encoded",
        ),
        (
            vec!["attention", "--run", run, "--prompt", "", "--out", out],
            "the prompt is empty",
        ),
        (
            vec![
                "attention",
                "--run",
                bigram.to_str().unwrap(),
                "--prompt",
                "ab",
                "--out",
                out,
            ],
            "no attention",
        ),
    ] {
        check_one_error_line(&args, &gpt(&args), expected);
    }
    assert!(!Path::new(out).exists());
    for d in [dir, bigram] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
