//! `gpt serve` against real clients: the official `openai` Python client (completions
//! and chat completions, whole and streamed, its error types, an API key) and the page at
//! `/` in headless Chromium driven by Selenium (a prompt typed and sent, the text streamed
//! in, a chat, the attention view), each compared with what `gpt sample` and `gpt chat`
//! print for the same greedy decoding.
//!
//! The clients come from outside cargo: `BURNGPT_CLIENTS_PYTHON`, a Python with the
//! packages of `tests/clients/requirements.txt` (`.ci/run` makes that venv), and
//! Debian's `chromium chromium-driver` (`BURNGPT_CHROMIUM`, `BURNGPT_CHROMEDRIVER`
//! override /usr/bin/chromium and /usr/bin/chromedriver). Without them each test is
//! skipped with one line saying what to set or install; under
//! `BURNGPT_REQUIRE_SYSTEM_PACKAGES=1` (which `cargo xtask ci --require-system-packages`
//! and CI set) their absence fails instead.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

const PROMPT: &str = "ROMEO:";
const MAX_TOKENS: usize = 40;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Where tests leave what a person may want to look at: `target/test-artefacts`.
fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_gpt"))
        .parent()
        .and_then(Path::parent)
        .expect("the binary lies in target/<profile>/")
        .join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The external programs a test needs.
struct Clients {
    python: PathBuf,
    chromium: PathBuf,
    chromedriver: PathBuf,
}

/// The clients, or `None` when they are missing and not required (the test is then
/// skipped, with one line saying what to set or install). `browser`: Chromium and its
/// driver are needed too.
fn clients(test: &str, browser: bool) -> Option<Clients> {
    let path = |var: &str, default: &str| {
        std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
    };
    let python = std::env::var_os("BURNGPT_CLIENTS_PYTHON").map(PathBuf::from);
    let found = Clients {
        python: python.clone().unwrap_or_default(),
        chromium: path("BURNGPT_CHROMIUM", "/usr/bin/chromium"),
        chromedriver: path("BURNGPT_CHROMEDRIVER", "/usr/bin/chromedriver"),
    };
    let mut missing = Vec::new();
    match &python {
        None => missing.push(format!(
            "BURNGPT_CLIENTS_PYTHON is not set: set it to a Python with `pip install -r {}`",
            clients_dir().join("requirements.txt").display()
        )),
        Some(p) if !p.is_file() => missing.push(format!(
            "BURNGPT_CLIENTS_PYTHON={} is not a file",
            p.display()
        )),
        Some(_) => {}
    }
    if browser && !(found.chromium.is_file() && found.chromedriver.is_file()) {
        missing.push(format!(
            "no {} or {}: `apt-get install chromium chromium-driver` (or set BURNGPT_CHROMIUM, BURNGPT_CHROMEDRIVER)",
            found.chromium.display(),
            found.chromedriver.display()
        ));
    }
    if missing.is_empty() {
        return Some(found);
    }
    let why = missing.join("; ");
    assert!(
        std::env::var("BURNGPT_REQUIRE_SYSTEM_PACKAGES").as_deref() != Ok("1"),
        "{test} needs its clients (required by BURNGPT_REQUIRE_SYSTEM_PACKAGES=1): {why}"
    );
    eprintln!("skipped {test}: {why}");
    None
}

/// Runs a script of `tests/clients/` with `spec` as its one argument; returns the JSON
/// object it prints.
fn python(clients: &Clients, script: &str, spec: &Value) -> Value {
    let started = Instant::now();
    let o = std::process::Command::new(&clients.python)
        .arg(clients_dir().join(script))
        .arg(spec.to_string())
        .output()
        .expect("the clients' Python runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "{script} failed ({}):\n{stderr}\n{stdout}",
        o.status
    );
    eprintln!("{script}: {:.1} s", started.elapsed().as_secs_f64());
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// A tiny character-level run on Tiny Shakespeare: greedy text to continue.
fn train_text(dir: &Path) -> PathBuf {
    let run = dir.join("text");
    ok(&[
        "train",
        "--out-dir",
        run.to_str().unwrap(),
        "--sample-tokens",
        "0",
        "--set",
        "n_layer=1",
        "--set",
        "n_head=2",
        "--set",
        "n_embd=32",
        "--set",
        "block_size=32",
        "--set",
        "batch_size=16",
        "--set",
        "eval_iters=2",
        "--set",
        "eval_interval=300",
        "--set",
        "max_iters=300",
        "--set",
        "learning_rate=3e-3",
        "--set",
        "warmup_iters=10",
    ]);
    run
}

/// `gpt sample`'s greedy continuation of `prompt` (it prints the prompt, the
/// continuation and a newline).
fn sampled(run: &Path, prompt: &str, max_new_tokens: usize) -> String {
    let n = max_new_tokens.to_string();
    let out = ok(&[
        "sample",
        "--run",
        run.to_str().unwrap(),
        "--prompt",
        prompt,
        "--top-k",
        "1",
        "--max-new-tokens",
        &n,
    ]);
    let rest = out
        .strip_prefix(prompt)
        .unwrap_or_else(|| panic!("gpt sample's output starts with the prompt: {out:?}"));
    rest.strip_suffix('\n').unwrap_or(rest).to_string()
}

/// `gpt chat`'s greedy replies to `messages`, one conversation, one line each.
fn chatted(run: &Path, messages: &[&str]) -> Vec<String> {
    let mut args = vec!["chat", "--run", run.to_str().unwrap(), "--top-k", "1"];
    for m in messages {
        args.extend(["--message", m]);
    }
    ok(&args).lines().map(str::to_string).collect()
}

fn assert_error(errors: &Value, name: &str, kind: &str, status: u64, says: &str) {
    let e = &errors[name];
    assert_eq!(e["type"], kind, "{name}: {e}");
    assert_eq!(e["status"], status, "{name}: {e}");
    assert!(
        e["message"].as_str().unwrap_or_default().contains(says),
        "{name}: {e}"
    );
}

/// The official client gets `gpt sample`'s and `gpt chat`'s greedy text, whole and
/// streamed; a bad request is its `BadRequestError`, an unknown model its
/// `NotFoundError`, a wrong key its `AuthenticationError`, and the right key works.
#[test]
fn the_openai_client_gets_what_gpt_sample_and_gpt_chat_print() {
    let Some(clients) = clients("the openai client test", false) else {
        return;
    };
    let started = Instant::now();
    let dir = tmp("serve-openai");
    let text = train_text(&dir);
    let chat = train_chat(&dir);

    // Completions, from a text run with a key.
    let continuation = sampled(&text, PROMPT, MAX_TOKENS);
    assert_eq!(continuation.chars().count(), MAX_TOKENS, "{continuation:?}");
    let server = Server::start(&text, &["--api-key", "sesame"]);
    let got = python(
        &clients,
        "openai_client.py",
        &json!({
            "base_url": server.url("/v1"),
            "api_key": "sesame",
            "completion": {"prompt": PROMPT, "max_tokens": MAX_TOKENS},
            "chat": null,
        }),
    );
    drop(server);
    assert_eq!(got["models"], json!(["text"]), "{got}");
    let whole = &got["completion"];
    assert_eq!(whole["object"], "text_completion", "{got}");
    assert_eq!(whole["text"], continuation.as_str(), "{got}");
    assert_eq!(whole["finish_reason"], "length", "{got}");
    assert_eq!(
        whole["usage"],
        json!({"prompt_tokens": PROMPT.len(), "completion_tokens": MAX_TOKENS}),
        "{got}"
    );
    let streamed = &got["completion_stream"];
    assert_eq!(streamed["text"], continuation.as_str(), "{got}");
    assert_eq!(streamed["finish_reason"], "length", "{got}");
    assert!(streamed["chunks"].as_u64().unwrap() > 1, "{got}");
    let errors = &got["errors"];
    assert_error(errors, "max_tokens", "BadRequestError", 400, "at least 1");
    assert_error(errors, "model", "NotFoundError", 404, "does not exist");
    assert_error(errors, "wrong_key", "AuthenticationError", 401, "API key");

    // Chat completions, from a chat run without a key: one turn, then two.
    let replies = chatted(&chat, &[GREETING, QUESTION]);
    assert_eq!(replies, [GREETING_REPLY, QUESTION_REPLY]);
    let first = chatted(&chat, &[QUESTION]);
    let server = Server::start(&chat, &[]);
    let conversations = json!([
        [{"role": "user", "content": GREETING}],
        [
            {"role": "user", "content": GREETING},
            {"role": "assistant", "content": replies[0]},
            {"role": "user", "content": QUESTION},
        ],
        [{"role": "user", "content": QUESTION}],
    ]);
    let got = python(
        &clients,
        "openai_client.py",
        &json!({
            "base_url": server.url("/v1"),
            "api_key": null,
            "completion": null,
            "chat": conversations,
        }),
    );
    drop(server);
    assert_eq!(got["models"], json!(["chat"]), "{got}");
    let expected = [&replies[0], &replies[1], &first[0]];
    for (i, want) in expected.iter().enumerate() {
        let whole = &got["chat"][i];
        assert_eq!(whole["object"], "chat.completion", "{got}");
        assert_eq!(whole["role"], "assistant", "{got}");
        assert_eq!(whole["content"], want.as_str(), "{got}");
        assert_eq!(whole["finish_reason"], "stop", "{got}");
        let streamed = &got["chat_stream"][i];
        assert_eq!(streamed["content"], want.as_str(), "{got}");
        assert_eq!(streamed["roles"], json!(["assistant"]), "{got}");
        assert_eq!(streamed["finish_reasons"], json!(["stop"]), "{got}");
        assert!(streamed["chunks"].as_u64().unwrap() > 1, "{got}");
        let tokens = streamed["usage"]["completion_tokens"].as_u64().unwrap();
        // The reply's characters and its end token.
        assert_eq!(tokens as usize, want.chars().count() + 1, "{got}");
    }
    assert_error(
        &got["errors"],
        "chat_max_tokens",
        "BadRequestError",
        400,
        "at least 1",
    );
    eprintln!(
        "openai client test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The page in headless Chromium: a prompt typed and sent streams `gpt sample`'s greedy
/// continuation into the output, and clicking a token shows one map a head; a chat run's
/// page offers Chat, behind a key typed into the page, and answers as `gpt chat` does.
/// Screenshots: `target/test-artefacts/serve-page.png` and `serve-page-chat.png`.
#[test]
fn the_page_streams_text_chats_and_shows_attention_in_chromium() {
    let Some(clients) = clients("the page test", true) else {
        return;
    };
    let started = Instant::now();
    let dir = tmp("serve-page");
    let text = train_text(&dir);
    let chat = train_chat(&dir);

    let continuation = sampled(&text, PROMPT, MAX_TOKENS);
    let server = Server::start(&text, &[]);
    let shot = artefacts().join("serve-page.png");
    let _ = std::fs::remove_file(&shot);
    let got = python(
        &clients,
        "page.py",
        &json!({
            "url": server.url("/"),
            "chromium": clients.chromium,
            "chromedriver": clients.chromedriver,
            "screenshot": shot,
            "key": null,
            "max_tokens": MAX_TOKENS,
            "prompt": PROMPT,
            "messages": null,
        }),
    );
    drop(server);
    assert_eq!(got["title"], "burngpt", "{got}");
    assert_eq!(got["model_label"], "text", "{got}");
    assert_eq!(got["chat_choice_shown"], false, "{got}");
    assert_eq!(got["errors"], json!([]), "{got}");
    assert_eq!(got["console_errors"], json!([]), "{got}");
    assert_eq!(got["prompt_shown"], PROMPT, "{got}");
    assert_eq!(got["generated"], continuation.as_str(), "{got}");
    // Streamed: the output changed piece by piece, not once.
    assert!(got["changes"].as_u64().unwrap() > 2, "{got}");
    // The attention view: the prompt and the text after it, token by token (the last
    // block_size = 32 of them); the last one clicked: one map for each of 1 layer × 2
    // heads, over every token up to it, whose weights add up to 1.
    // (The page shows a line break as ↵.)
    let tokens: Vec<String> = got["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().replace('↵', "\n"))
        .collect();
    let all = format!("{PROMPT}{continuation}");
    assert_eq!(tokens.len(), 32, "{got}");
    assert!(all.ends_with(&tokens.concat()), "{got}");
    check_maps(&got, &["layer 1, head 1", "layer 1, head 2"], 32);
    assert!(shot.is_file(), "no screenshot at {}", shot.display());

    // A chat run, behind a key: the page reads the model once the key is typed, offers
    // Chat, and carries the conversation over two turns.
    let replies = chatted(&chat, &[GREETING, QUESTION]);
    let server = Server::start(&chat, &["--api-key", "sesame"]);
    let shot = artefacts().join("serve-page-chat.png");
    let _ = std::fs::remove_file(&shot);
    let got = python(
        &clients,
        "page.py",
        &json!({
            "url": server.url("/"),
            "chromium": clients.chromium,
            "chromedriver": clients.chromedriver,
            "screenshot": shot,
            "key": "sesame",
            "max_tokens": 100,
            "prompt": null,
            "messages": [GREETING, QUESTION],
        }),
    );
    drop(server);
    assert_eq!(got["model_label"], "chat (chat)", "{got}");
    assert_eq!(got["chat_choice_shown"], true, "{got}");
    assert_eq!(got["reset_shown"], true, "{got}");
    assert_eq!(got["input_placeholder"], "Your message", "{got}");
    assert_eq!(got["errors"], json!([]), "{got}");
    let turns = json!([
        {"class": "turn user", "text": GREETING},
        {"class": "turn assistant", "text": replies[0]},
        {"class": "turn user", "text": QUESTION},
        {"class": "turn assistant", "text": replies[1]},
    ]);
    assert_eq!(got["turns"], turns, "{got}");
    assert!(got["changes"].as_u64().unwrap() > 2, "{got}");
    let n = got["tokens"].as_array().unwrap().len();
    assert!(n > QUESTION.len() + QUESTION_REPLY.len(), "{got}");
    let heads: Vec<String> = (1..=2)
        .flat_map(|l| (1..=2).map(move |h| format!("layer {l}, head {h}")))
        .collect();
    let heads: Vec<&str> = heads.iter().map(String::as_str).collect();
    check_maps(&got, &heads, n);
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    eprintln!(
        "page test: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        artefacts().display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The maps shown for the last of `tokens` tokens: one per head, labelled, each over
/// every token, its weights summing to 1.
fn check_maps(got: &Value, heads: &[&str], tokens: usize) {
    assert_eq!(got["picked"], tokens - 1, "{got}");
    assert_eq!(got["picked_outlined"], true, "{got}");
    let maps = got["maps"].as_array().unwrap();
    let labels: Vec<&str> = maps.iter().map(|m| m["label"].as_str().unwrap()).collect();
    assert_eq!(labels, heads, "{got}");
    for m in maps {
        assert_eq!(m["cells"], tokens, "{got}");
        let sum = m["weight_sum"].as_f64().unwrap();
        assert!((sum - 1.0).abs() < 0.05, "weights sum to {sum}: {got}");
    }
}
