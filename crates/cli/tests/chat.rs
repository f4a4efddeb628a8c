//! The lecture's last chapter end to end: a GPT finetuned on conversations answers them.
//! Training on a conversations file (from scratch and from a base run, whose vocabulary
//! grows), `gpt chat` in its script modes, and every malformed file as one `error:` line.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

fn chat(run: &Path, extra: &[&str]) -> String {
    let mut args = vec!["chat", "--run", run.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&args)
}

/// Trained from scratch on one conversation, greedy `gpt chat` gives its replies back
/// word for word, turn after turn; the cache changes nothing, also when sampling; and
/// the same messages on standard input give the same replies.
#[test]
fn a_tiny_sft_answers_the_conversation_it_learned() {
    let dir = tmp("chat-overfit");
    let run = train_chat(&dir);
    let info = json(&ok(&["info", "--run", run.to_str().unwrap(), "--json"]));
    assert_eq!(info["chat"], true);

    let greedy = ["--top-k", "1", "--message", GREETING, "--message", QUESTION];
    let replies = chat(&run, &greedy);
    assert_eq!(replies, format!("{GREETING_REPLY}\n{QUESTION_REPLY}\n"));
    let mut no_cache = greedy.to_vec();
    no_cache.push("--no-kv-cache");
    assert_eq!(chat(&run, &no_cache), replies);

    // Sampled: a multi-turn chat through the cache draws what recomputing draws.
    let sampled = [
        "--temperature",
        "2.0",
        "--seed",
        "7",
        "--max-new-tokens",
        "30",
        "--message",
        GREETING,
        "--message",
        "a bot?",
        "--message",
        QUESTION,
    ];
    let with_cache = chat(&run, &sampled);
    let mut without = sampled.to_vec();
    without.push("--no-kv-cache");
    assert_eq!(chat(&run, &without), with_cache);

    // Standard input that is not a terminal: one message per line, /reset between.
    let mut child = gpt_command(&["chat", "--run", run.to_str().unwrap(), "--top-k", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = format!("{GREETING}\n\n/reset\n{GREETING}\n{QUESTION}\n/quit\nignored\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{GREETING_REPLY}\n{GREETING_REPLY}\n{QUESTION_REPLY}\n")
    );

    // On a terminal: a prompt, line editing and history, Ctrl-C clears the line, Ctrl-D
    // leaves with success.
    repl(&run);

    // `gpt eval` scores the replies.
    let eval = json(&ok(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "--full",
        "--json",
    ]));
    assert_eq!(eval["loss_on"], "assistant_tokens");
    assert!(eval["full_val_loss"].as_f64().unwrap() < 0.1, "{eval}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A base run trained on text becomes a chat run: its characters, then the chat tokens;
/// a message with a character outside them is one error in the REPL's place, and the
/// conversations the base cannot write are left out with a note.
#[test]
fn a_base_run_grows_into_a_chat_run() {
    let dir = tmp("chat-grow");
    let base = dir.join("base");
    let text = dir.join("text.txt");
    std::fs::create_dir_all(&dir).unwrap();
    // Every character of the conversation, and one more line a conversation cannot use.
    std::fs::write(
        &text,
        format!("{GREETING} {GREETING_REPLY} {QUESTION} {QUESTION_REPLY}\n").repeat(40),
    )
    .unwrap();
    let o = train_tiny(
        &base,
        &["--data", text.to_str().unwrap(), "--set", "block_size=128"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = dir.join("chat.jsonl");
    write_conversations(&data, 8);
    let odd = serde_json::json!({"messages": [
        {"role": "user", "content": "42 + 1 = ?"},
        {"role": "assistant", "content": "43"},
    ]});
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&data)
        .unwrap();
    writeln!(file, "{odd}").unwrap();

    let run = dir.join("chat");
    let args = tiny_train_args(
        &run,
        &[
            "--init-from",
            base.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--set",
            "block_size=128",
        ],
    );
    let o = gpt(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("note: 1 of 9 conversations use characters outside the char tokenizer"),
        "{err}"
    );
    let tok = |run: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(run.join("tokenizer.json")).unwrap()).unwrap()
    };
    let (theirs, ours) = (tok(&base), tok(&run));
    assert_eq!(theirs["chars"], ours["chars"]);
    assert_eq!(ours["chat"], true);
    assert!(theirs.get("chat").is_none());
    let info = json(&ok(&["info", "--run", run.to_str().unwrap(), "--json"]));
    assert_eq!(
        info["config"]["model"]["vocab_size"].as_u64().unwrap(),
        json(&ok(&["info", "--run", base.to_str().unwrap(), "--json"]))["config"]["model"]
            ["vocab_size"]
            .as_u64()
            .unwrap()
            + 5
    );
    // The REPL's errors: a message with a character the run cannot write.
    let args = ["chat", "--run", run.to_str().unwrap(), "--message", "7"];
    check_one_error_line(&args, &gpt(&args), "'7'");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_conversation_files_are_one_error_line_each() {
    let dir = tmp("chat-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let good =
        r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}"#;
    let cases = [
        ("{\"messages\": [", "line 2: EOF while parsing"),
        (
            r#"{"messages":[{"role":"bot","content":"hi"},{"role":"assistant","content":"yo"}]}"#,
            "line 2: unknown variant `bot`",
        ),
        (
            r#"{"messages":[{"role":"user","content":""},{"role":"assistant","content":"yo"}]}"#,
            "line 2: message 1 (User) is empty",
        ),
        (
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            "line 2: the conversation has no assistant message",
        ),
        (
            r#"{"messages":[{"role":"assistant","content":"hi"}]}"#,
            "line 2: message 1 is from Assistant where User speaks",
        ),
    ];
    for (i, (line, why)) in cases.into_iter().enumerate() {
        let data = dir.join(format!("bad{i}.jsonl"));
        std::fs::write(&data, format!("{good}\n{line}\n")).unwrap();
        let out = dir.join(format!("run{i}"));
        let args = tiny_train_args(&out, &["--data", data.to_str().unwrap()]);
        check_one_error_line(&args, &gpt(&args), why);
        assert!(
            check_names_file(&gpt(&args), &data),
            "the error names {}",
            data.display()
        );
        assert!(!out.exists(), "a refused file makes no run");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_names_file(o: &std::process::Output, path: &Path) -> bool {
    String::from_utf8_lossy(&o.stderr).contains(&path.display().to_string())
}

/// A run without chat tokens (text, or arithmetic) is pointed at `gpt sample`; bad
/// options are refused before the model loads.
#[test]
fn chat_needs_a_chat_run() {
    let dir = tmp("chat-plain");
    let run = dir.join("run");
    assert!(train_tiny(&run, &[]).status.success());
    let args = ["chat", "--run", run.to_str().unwrap(), "--message", "hi"];
    check_one_error_line(&args, &gpt(&args), "is not a chat run");
    assert!(String::from_utf8_lossy(&gpt(&args).stderr).contains("gpt sample"));
    for (bad, why) in [
        (["--message", ""], "--message is empty"),
        (["--temperature", "0"], "temperature"),
        (["--max-new-tokens", "0"], "--max-new-tokens"),
    ] {
        let mut args = vec!["chat", "--run", run.to_str().unwrap()];
        args.extend_from_slice(&bad);
        check_one_error_line(&args, &gpt(&args), why);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn repl(run: &Path) {
    let gpt = env!("CARGO_BIN_EXE_gpt");
    let command = format!("{gpt} chat --run {} --top-k 1", run.display());
    let mut p = rexpect::spawn(&command, Some(60_000)).unwrap();
    p.exp_string("/quit (or Ctrl-D) leaves").unwrap();
    p.exp_string("> ").unwrap();
    p.send_line(GREETING).unwrap();
    p.exp_string(GREETING_REPLY).unwrap();
    p.exp_string("> ").unwrap();
    // A line typed, then Ctrl-C: cleared, not sent.
    p.send("what").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("> ").unwrap();
    // The conversation goes on from the first turn; after /reset, Up (three times)
    // recalls the first message, which starts the conversation again.
    p.send_line(QUESTION).unwrap();
    p.exp_string(QUESTION_REPLY).unwrap();
    p.send_line("/reset").unwrap();
    p.exp_string("(a new conversation)").unwrap();
    p.send("\x1b[A\x1b[A\x1b[A").unwrap();
    p.send_line("").unwrap();
    p.exp_string(GREETING_REPLY).unwrap();
    p.send_line("/nonsense").unwrap();
    p.exp_string("error: unknown command").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    match p.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, 0) => {}
        other => panic!("gpt chat ended with {other:?}"),
    }
}
