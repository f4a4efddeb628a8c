//! `gpt tokenizer` end to end: a BPE trained on Tiny Shakespeare, inspected (info, encode,
//! decode, on it, on `gpt2` and on a run's characters), then everything else takes it:
//! `gpt prepare --tokenizer FILE`, a run trained, sampled, evaluated and exported on that
//! data, pinned to the file; data prepared with another tokenizer is refused for it. A
//! base run on it grows into a chat run that `gpt chat` talks to; training reads what
//! `gpt prepare` reads and draws its progress on a terminal.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
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

/// With `BURNGPT_TRANSFORMERS_PYTHON` set (a python with transformers): the ids that
/// `AutoTokenizer.from_pretrained(export)` gives `text` (a plain text), or a conversation's
/// messages through its chat template (`chat`, with the reply's opening).
fn transformers_ids(export: &Path, what: &str, input: &str) -> Option<serde_json::Value> {
    let python = std::env::var("BURNGPT_TRANSFORMERS_PYTHON").ok()?;
    let script = r#"
import json, sys
from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained(sys.argv[1])
if sys.argv[2] == "chat":
    ids = t.apply_chat_template(json.loads(sys.argv[3]), tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
else:
    ids = t.encode(sys.argv[3], add_special_tokens=False)
print(json.dumps(ids))
"#;
    let o = std::process::Command::new(python)
        .args(["-c", script, export.to_str().unwrap(), what, input])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(json(&String::from_utf8(o.stdout).unwrap()))
}

/// A JSON file, whole.
fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `gpt tokenizer train --input tinyshakespeare --vocab-size N --out FILE`.
fn train_args(vocab_size: &str, out: &Path) -> Vec<String> {
    [
        "tokenizer",
        "train",
        "--input",
        "tinyshakespeare",
        "--vocab-size",
    ]
    .into_iter()
    .map(String::from)
    .chain([vocab_size.into(), "--out".into(), out.display().to_string()])
    .collect()
}

/// `gpt prepare --tokenizer FILE --input tinyshakespeare --out DIR --val-fraction 0.1`.
fn prepare_shakespeare(tokenizer: &Path, out: &Path) {
    ok(&[
        "prepare",
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--input",
        "tinyshakespeare",
        "--out",
        out.to_str().unwrap(),
        "--val-fraction",
        "0.1",
    ]);
}

#[test]
fn a_trained_bpe_is_inspected_prepared_trained_sampled_and_exported() {
    let dir = tmp("tokenizer");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokenizer.json");
    let f = file.to_str().unwrap();
    let train = train_args("512", &file);
    let train: Vec<&str> = train.iter().map(String::as_str).collect();
    let o = gpt(&train);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("512 tokens (250 merges, 6 specials)"));
    // Not replaced without --force; too small a vocabulary is refused.
    check_one_error_line(&train, &gpt(&train), "exists: add --force");
    let small = dir.join("small.json");
    let args = train_args("100", &small);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
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
    // Ids as a JSON list, on standard input or by --ids; what is not an id is refused.
    assert_eq!(
        piped(&["tokenizer", "decode", f], &format!("{:?}", ids)),
        text
    );
    let args = ["tokenizer", "decode", f, "--ids", "1, x"];
    check_one_error_line(&args, &gpt(&args), "\"x\" is not a token id");
    let args = ["tokenizer", "decode", f, "--ids", "{\"ids\": [1, -2]}"];
    check_one_error_line(&args, &gpt(&args), "expected a list of token ids");
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
    prepare_shakespeare(&file, &data);
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    // Tied, so that it exports as GPT-2.
    let o = train_tiny(&run, &["--data", d, "--set", "tie_weights=true"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = json(&ok(&["info", "--run", r, "--json"]));
    assert_eq!(info["tokenizer"], "bpe");
    assert_eq!(info["config"]["model"]["vocab_size"], 507);
    let sha256 = json(&ok(&["tokenizer", "info", f, "--json"]))["sha256"].clone();
    assert_eq!(info["tokenizer_sha256"], sha256);
    let marker = read_json(&run.join("run.json"));
    assert_eq!(marker["tokenizer_sha256"], sha256);
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
    // transformers reads the export as `gpt` does: a special's text is text.
    let text = "ROMEO: <|endoftext|> Привет 😀";
    if let Some(theirs) = transformers_ids(&out, "text", text) {
        let ours = ok(&["tokenizer", "encode", f, "--text", text, "--json"]);
        assert_eq!(theirs, json(&ours)["ids"]);
    }
    let run_tok = json(&ok(&["tokenizer", "info", &format!("run:{r}"), "--json"]));
    assert_eq!(run_tok["vocab_size"], 507);

    // Another tokenizer's data is refused for this run, naming both: to evaluate it, to
    // resume it, and to start a new run from its weights.
    let other = dir.join("other.json");
    let args = train_args("600", &other);
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let data2 = dir.join("data2");
    let d2 = data2.to_str().unwrap();
    prepare_shakespeare(&other, &data2);
    let args = ["eval", "--run", r, "--data", d2, "--allow-data-change"];
    let o = gpt(&args);
    let sha = |p: &Path| {
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
    let args = [
        "train",
        "--resume",
        "--out-dir",
        r,
        "--data",
        d2,
        "--allow-data-change",
    ];
    check_one_error_line(
        &args,
        &gpt(&args),
        &format!("prepared with the bpe {} tokenizer", sha(&other)),
    );
    let from = dir.join("from");
    let args = tiny_train_args(&from, &["--init-from", r, "--data", d2]);
    let o = gpt(&args);
    check_one_error_line(&args, &o, "the tokenizer differs");
    check_one_error_line(
        &args,
        &o,
        &format!(
            "uses the bpe {} tokenizer (507 tokens), this run's data the bpe {} tokenizer",
            sha(&file),
            sha(&other)
        ),
    );
    assert!(!from.exists());

    // run.json pins the file: a run whose tokenizer.json is not the pinned file is refused.
    let marker = run.join("run.json");
    let pinned = std::fs::read_to_string(&marker).unwrap();
    let sha = sha256.as_str().unwrap();
    std::fs::write(&marker, pinned.replace(sha, &"0".repeat(64))).unwrap();
    let args = ["sample", "--run", r, "--max-new-tokens", "5"];
    check_one_error_line(
        &args,
        &gpt(&args),
        "run.json pins the tokenizer file with sha256 000000000000",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A base run on a trained BPE, finetuned on conversations (`--init-from`), is a chat run
/// of the same file: its chat tokens are the file's, `gpt chat` answers with what it
/// learned and writes any script, and its export carries the chat template.
#[test]
fn a_bpe_base_grows_into_a_chat_run() {
    let dir = tmp("tokenizer-chat");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokenizer.json");
    ok(&train_args("512", &file)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let data = dir.join("data");
    prepare_shakespeare(&file, &data);
    // The base: SFT's shape (tied, so that it exports as GPT-2), a few steps on Tiny
    // Shakespeare.
    let base = dir.join("base");
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out-dir",
        base.to_str().unwrap(),
    ];
    args.extend_from_slice(SFT);
    args.extend_from_slice(&["--set", "max_iters=20", "--set", "tie_weights=true"]);
    ok(&args);

    let conversations = dir.join("chat.jsonl");
    write_conversations(&conversations, 8);
    let run = dir.join("chat");
    let mut args = vec![
        "train",
        "--init-from",
        base.to_str().unwrap(),
        "--data",
        conversations.to_str().unwrap(),
        "--out-dir",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(SFT);
    args.extend_from_slice(&["--set", "tie_weights=true"]);
    ok(&args);
    let r = run.to_str().unwrap();
    let info = json(&ok(&["info", "--run", r, "--json"]));
    assert_eq!(info["chat"], true);
    assert_eq!(info["tokenizer"], "bpe");
    // The file's 512 tokens: its chat tokens are the ones the run added.
    assert_eq!(info["config"]["model"]["vocab_size"], 512);
    let saved = read_json(&run.join("tokenizer.json"));
    assert_eq!(
        saved["bpe"],
        std::fs::read_to_string(&file).unwrap().as_str()
    );
    assert_eq!(saved["chat"], true);
    let specials =
        json(&ok(&["tokenizer", "info", &format!("run:{r}"), "--json"]))["specials"].clone();
    let file_specials = json(&ok(&[
        "tokenizer",
        "info",
        file.to_str().unwrap(),
        "--json",
    ]))["specials"]
        .clone();
    assert_eq!(specials, file_specials);

    let greedy = [
        "chat",
        "--run",
        r,
        "--top-k",
        "1",
        "--message",
        GREETING,
        "--message",
        QUESTION,
    ];
    assert_eq!(ok(&greedy), format!("{GREETING_REPLY}\n{QUESTION_REPLY}\n"));
    // Bytes: a message in any script is the run's to read (a character run refuses it).
    ok(&[
        "chat",
        "--run",
        r,
        "--message",
        "Привет, 你好! 😀",
        "--max-new-tokens",
        "5",
    ]);

    let out = dir.join("hf");
    ok(&["export", "--run", r, "--out", out.to_str().unwrap()]);
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["bos_token_id"], 507);
    assert_eq!(config["eos_token_id"], 511);
    let tokenizer_config = read_json(&out.join("tokenizer_config.json"));
    assert_eq!(tokenizer_config["bos_token"], "<|bos|>");
    assert_eq!(tokenizer_config["eos_token"], "<|assistant_end|>");
    assert!(
        tokenizer_config["chat_template"]
            .as_str()
            .unwrap()
            .contains("<|assistant_start|>")
    );
    // transformers' chat template gives the ids `gpt chat` reads.
    let conversation = serde_json::json!([
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": GREETING},
        {"role": "assistant", "content": "Привет 😀"},
        {"role": "user", "content": QUESTION},
    ]);
    if let Some(theirs) = transformers_ids(&out, "chat", &conversation.to_string()) {
        let messages: Vec<data::conversation::Message> =
            serde_json::from_value(conversation).unwrap();
        let tokenizer: data::TextTokenizer = serde_json::from_value(saved).unwrap();
        let ours = data::conversation::render(&messages, &tokenizer)
            .unwrap()
            .ids;
        assert_eq!(theirs, serde_json::json!(ours));
    }
    // Exported again into the same folder: an earlier export is replaced.
    ok(&["export", "--run", r, "--out", out.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Training reads `gpt prepare`'s inputs: a directory of `.txt` files and `.jsonl` files
/// (their `text` fields, not the JSON around them); a bad input is one error line and
/// writes nothing. A run's characters are inspected as `char:RUN`.
#[test]
fn trains_on_prepares_inputs_and_inspects_a_runs_characters() {
    let dir = tmp("tokenizer-inputs");
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(corpus.join("more")).unwrap();
    std::fs::write(corpus.join("a.txt"), "the quokka smiles. ".repeat(300)).unwrap();
    let line = serde_json::json!({"text": "ein Zyzzyva summt. "});
    std::fs::write(corpus.join("more/b.jsonl"), format!("{line}\n").repeat(300)).unwrap();
    std::fs::write(corpus.join("more/notes.md"), "ignored").unwrap();
    let file = dir.join("tokenizer.json");
    let f = file.to_str().unwrap();
    let c = corpus.to_str().unwrap();
    let args = [
        "tokenizer",
        "train",
        "--input",
        c,
        "--vocab-size",
        "300",
        "--out",
        f,
    ];
    let o = gpt(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Both files' words are single tokens; the JSON's key is no word of the text.
    for word in [" quokka", " Zyzzyva", " smiles", " summt"] {
        let ids = ok(&["tokenizer", "encode", f, "--text", word]);
        assert_eq!(ids.split_whitespace().count(), 1, "{word:?}: {ids}");
    }
    let ids = ok(&["tokenizer", "encode", f, "--text", "{\"text\": \""]);
    assert!(ids.split_whitespace().count() > 3, "{ids}");

    let bad = corpus.join("more/c.jsonl");
    std::fs::write(&bad, "{\"text\": \"fine\"}\n{\"txt\": 1}\n").unwrap();
    let out = dir.join("bad.json");
    let args = [
        "tokenizer",
        "train",
        "--input",
        c,
        "--vocab-size",
        "300",
        "--out",
        out.to_str().unwrap(),
    ];
    check_one_error_line(&args, &gpt(&args), "c.jsonl line 2");
    let missing = dir.join("missing.txt");
    let args = [
        "tokenizer",
        "train",
        "--input",
        missing.to_str().unwrap(),
        "--vocab-size",
        "300",
        "--out",
        out.to_str().unwrap(),
    ];
    check_one_error_line(&args, &gpt(&args), "missing.txt");
    assert!(!out.exists());
    let args = ["tokenizer", "info", "nowhere.json"];
    check_one_error_line(&args, &gpt(&args), "nowhere.json");

    let run = dir.join("run");
    let o = train_tiny(&run, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let chars = format!("char:{}", run.display());
    let info = json(&ok(&["tokenizer", "info", &chars, "--json"]));
    assert_eq!(info["kind"], "char");
    assert_eq!(info["vocab_size"], 65);
    let ids = ok(&["tokenizer", "encode", &chars, "--text", "ROMEO: hi"]);
    assert_eq!(ids.split_whitespace().count(), 9);
    assert_eq!(
        ok(&["tokenizer", "decode", &chars, "--ids", ids.trim()]),
        "ROMEO: hi"
    );
    let args = ["tokenizer", "encode", &chars, "--text", "é"];
    check_one_error_line(&args, &gpt(&args), "'é'");
    let args = ["tokenizer", "info", "char:nowhere"];
    check_one_error_line(&args, &gpt(&args), "nowhere");
    let _ = std::fs::remove_dir_all(&dir);
}

/// On a terminal, training draws the trainer's progress bars.
#[test]
fn training_on_a_terminal_shows_progress() {
    let dir = tmp("tokenizer-progress");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokenizer.json");
    let command = format!(
        "{} {}",
        env!("CARGO_BIN_EXE_gpt"),
        train_args("400", &file).join(" ")
    );
    let mut p = rexpect::spawn(&command, Some(60_000)).unwrap();
    p.exp_string("Compute merges").unwrap();
    p.exp_string("trained").unwrap();
    p.exp_eof().unwrap();
    match p.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, 0) => {}
        other => panic!("gpt tokenizer train ended with {other:?}"),
    }
    assert!(file.is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
