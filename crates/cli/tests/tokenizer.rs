//! `gpt tokenizer` end to end: a BPE trained on Tiny Shakespeare, inspected (info, encode,
//! decode, on it, on `gpt2` and on a run's characters), then everything else takes it:
//! `gpt prepare --tokenizer FILE`, a run trained, sampled, evaluated and exported on that
//! data, pinned to the file; data prepared with another tokenizer is refused for it.

mod common;

use common::*;
use std::io::Write;
use std::process::Stdio;

/// `gpt args…` with `input` on standard input; asserts success, returns stdout.
fn piped(args: &[&str], input: &str) -> String {
    let mut child = gpt_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "gpt {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn a_trained_bpe_is_inspected_prepared_trained_sampled_and_exported() {
    let dir = tmp("tokenizer");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokenizer.json");
    let f = file.to_str().unwrap();
    let train = [
        "tokenizer",
        "train",
        "--input",
        "tinyshakespeare",
        "--vocab-size",
        "512",
        "--out",
        f,
    ];
    let o = gpt(&train);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("512 tokens (250 merges, 6 specials)"));
    // Not replaced without --force; too small a vocabulary is refused.
    check_one_error_line(&train, &gpt(&train), "exists: add --force");
    let small = dir.join("small.json");
    let args = [
        "tokenizer",
        "train",
        "--input",
        "tinyshakespeare",
        "--vocab-size",
        "100",
        "--out",
        small.to_str().unwrap(),
    ];
    check_one_error_line(&args, &gpt(&args), "at least 262 tokens");
    assert!(!small.exists());

    let info = json(&ok(&["tokenizer", "info", f, "--json"]));
    assert_eq!(info["kind"], "bpe");
    assert_eq!(info["vocab_size"], 512);
    assert_eq!(info["merges"], 250);
    assert_eq!(info["specials"]["<|endoftext|>"], 506);
    assert_eq!(info["specials"]["<|assistant_end|>"], 511);
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);

    // Encode from stdin, decode back, in any script; a special's text is text.
    let text = "ROMEO: Привет, 你好 <|endoftext|> 😀\n";
    let encoded = json(&piped(&["tokenizer", "encode", f, "--json"], text));
    let ids: Vec<u64> = serde_json::from_value(encoded["ids"].clone()).unwrap();
    assert!(ids.iter().all(|&id| id < 506), "{ids:?}");
    assert_eq!(
        piped(&["tokenizer", "decode", f], &encoded.to_string()),
        text
    );
    let plain = ok(&["tokenizer", "encode", f, "--text", "ROMEO: hi"]);
    assert_eq!(
        ok(&["tokenizer", "decode", f, "--ids", plain.trim()]),
        "ROMEO: hi"
    );
    let args = ["tokenizer", "decode", f, "--ids", "1 99999"];
    check_one_error_line(&args, &gpt(&args), "outside the vocabulary of 512");
    // GPT-2's the same way.
    let gpt2 = ok(&["tokenizer", "encode", "gpt2", "--text", "Hello world"]);
    assert_eq!(gpt2.trim(), "15496 995");
    assert_eq!(
        json(&ok(&["tokenizer", "info", "gpt2", "--json"]))["vocab_size"],
        50257
    );

    // Prepared with it, a run trains, samples, evaluates and exports on it.
    let data = dir.join("data");
    let d = data.to_str().unwrap();
    ok(&[
        "prepare",
        "--tokenizer",
        f,
        "--input",
        "tinyshakespeare",
        "--out",
        d,
        "--val-fraction",
        "0.1",
    ]);
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    // Tied, so that it exports as GPT-2.
    let o = train_tiny(&run, &["--data", d, "--set", "tie_weights=true"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = json(&ok(&["info", "--run", r, "--json"]));
    assert_eq!(info["tokenizer"], "bpe");
    assert_eq!(info["config"]["model"]["vocab_size"], 507);
    let saved = json(&std::fs::read_to_string(run.join("tokenizer.json")).unwrap());
    assert_eq!(saved["kind"], "bpe");
    let trained = std::fs::read_to_string(&file).unwrap();
    assert_eq!(saved["bpe"], trained.as_str());
    let sample = ok(&[
        "sample",
        "--run",
        r,
        "--prompt",
        "ROMEO: héllo",
        "--max-new-tokens",
        "20",
    ]);
    assert!(sample.starts_with("ROMEO: héllo"), "{sample}");
    let eval = json(&ok(&["eval", "--run", r, "--json"]));
    assert!(eval["val_loss"].as_f64().unwrap() > 1.0, "{eval}");
    let out = dir.join("hf");
    ok(&["export", "--run", r, "--out", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out.join("tokenizer.json")).unwrap(),
        trained
    );
    assert!(out.join("tokenizer_config.json").is_file());
    let run_tok = json(&ok(&["tokenizer", "info", &format!("run:{r}"), "--json"]));
    assert_eq!(run_tok["vocab_size"], 507);

    // Another tokenizer's data is refused for this run, naming both.
    let other = dir.join("other.json");
    let o2 = other.to_str().unwrap();
    ok(&[
        "tokenizer",
        "train",
        "--input",
        "tinyshakespeare",
        "--vocab-size",
        "600",
        "--out",
        o2,
    ]);
    let data2 = dir.join("data2");
    let d2 = data2.to_str().unwrap();
    ok(&[
        "prepare",
        "--tokenizer",
        o2,
        "--input",
        "tinyshakespeare",
        "--out",
        d2,
        "--val-fraction",
        "0.1",
    ]);
    let args = ["eval", "--run", r, "--data", d2, "--allow-data-change"];
    let o = gpt(&args);
    let sha = |p: &std::path::Path| {
        let info = json(&ok(&["tokenizer", "info", p.to_str().unwrap(), "--json"]));
        info["sha256"].as_str().unwrap()[..12].to_string()
    };
    check_one_error_line(
        &args,
        &o,
        &format!("prepared with the bpe {} tokenizer", sha(&other)),
    );
    check_one_error_line(
        &args,
        &o,
        &format!("this run uses the bpe {} tokenizer", sha(&file)),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
