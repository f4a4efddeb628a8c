//! `gpt serve` over real HTTP: OpenAI's shapes, whole and streamed; the same text as
//! `gpt sample` and `gpt chat`; bad requests as OpenAI errors after which it serves on;
//! a full queue as 503; a client that hangs up stops its generation; SIGTERM finishes
//! what is in flight; and a bounded load answers only complete 200s or 503s.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The tiny model, trained on Tiny Shakespeare long enough that its text varies.
fn text_run(dir: &Path) -> PathBuf {
    let run = dir.join("text");
    let o = train_tiny(
        &run,
        &["--set", "max_iters=300", "--set", "eval_interval=300"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    run
}

/// Requests to a running server.
impl Server {
    fn get(&self, path: &str) -> Reply {
        Reply::from(agent().get(self.url(path)).call())
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        post_with(&agent(), &self.url(path), body, None)
    }

    /// A short greedy completion that must be answered whole: the server still serves.
    fn serves(&self, key: Option<&str>) {
        self.serves_within(key, Duration::from_secs(60));
    }

    /// [`Self::serves`], answered within `limit`.
    fn serves_within(&self, key: Option<&str>, limit: Duration) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(limit))
            .build()
            .into();
        let request = json!({"prompt": "ROMEO:", "max_tokens": 8, "temperature": 0});
        let r = post_with(&agent, &self.url("/v1/completions"), &request, key);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["usage"]["completion_tokens"], 8, "{}", r.body);
    }
}

/// An HTTP client that reports every status as a response, never through a proxy.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn post_with(agent: &ureq::Agent, url: &str, body: &Value, key: Option<&str>) -> Reply {
    let mut request = agent.post(url).header("Content-Type", "application/json");
    if let Some(key) = key {
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    Reply::from(request.send(body.to_string()))
}

/// A response: its status, headers (names in lower case) and body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl From<Result<ureq::http::Response<ureq::Body>, ureq::Error>> for Reply {
    fn from(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Self {
        let mut r = r.unwrap_or_else(|e| panic!("no HTTP response: {e}"));
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let body = r.body_mut().read_to_string().expect("the whole body");
        Reply {
            status: r.status().as_u16(),
            headers,
            body,
        }
    }
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// An OpenAI error object with this status; its message.
    fn error(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{:?}",
            self.headers
        );
        let v = self.json();
        let e = &v["error"];
        assert_eq!(e["type"], kind, "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
        e["message"].as_str().expect("a message").to_string()
    }

    /// The `data:` payloads of an event stream, checked: one `data:` line each,
    /// `[DONE]` last and only last; the JSON chunks before it.
    fn events(&self) -> Vec<Value> {
        assert_eq!(self.status, 200, "{}", self.body);
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("text/event-stream")),
            "{:?}",
            self.headers
        );
        let data: Vec<&str> = self
            .body
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                assert!(!e.contains('\n'), "one data line an event: {e:?}");
                e.strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("not a data event: {e:?}"))
            })
            .collect();
        assert!(self.body.ends_with("\n\n"), "{:?}", self.body);
        assert_eq!(data.last(), Some(&"[DONE]"), "{}", self.body);
        data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            .collect()
    }
}

/// A streamed answer's text, finish reason and usage (when asked for), every chunk
/// checked against OpenAI's shape.
fn streamed(reply: &Reply, chat: bool) -> (String, String, Option<Value>) {
    let chunks = reply.events();
    let (object, prefix) = if chat {
        ("chat.completion.chunk", "chatcmpl-")
    } else {
        ("text_completion", "cmpl-")
    };
    let id = chunks[0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with(prefix), "{id}");
    let (mut text, mut reason, mut usage) = (String::new(), None, None);
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["id"], id.as_str(), "one id for the stream: {c}");
        assert_eq!(c["object"], object, "{c}");
        assert!(c["created"].is_u64() && c["model"].is_string(), "{c}");
        assert!(usage.is_none(), "the usage chunk is the last: {c}");
        if let Some(u) = c.get("usage") {
            assert_eq!(c["choices"], json!([]), "{c}");
            usage = Some(u.clone());
            continue;
        }
        assert!(reason.is_none(), "nothing but usage after the finish: {c}");
        let choices = c["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 1, "{c}");
        let choice = &choices[0];
        assert_eq!(choice["index"], 0, "{c}");
        if chat {
            let delta = &choice["delta"];
            if i == 0 {
                assert_eq!(*delta, json!({"role": "assistant", "content": ""}), "{c}");
            } else if let Some(t) = delta.get("content") {
                text.push_str(t.as_str().unwrap());
            }
        } else {
            text.push_str(choice["text"].as_str().unwrap());
        }
        if let Some(r) = choice["finish_reason"].as_str() {
            reason = Some(r.to_string());
        } else {
            assert!(choice["finish_reason"].is_null(), "{c}");
        }
    }
    (text, reason.expect("a chunk with the finish reason"), usage)
}

/// A whole answer's text and finish reason, checked against OpenAI's shape and its usage
/// against `prompt_tokens`.
fn whole(reply: &Reply, chat: bool, model: &str, prompt_tokens: usize) -> (String, String) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v = reply.json();
    let (object, prefix) = if chat {
        ("chat.completion", "chatcmpl-")
    } else {
        ("text_completion", "cmpl-")
    };
    assert_eq!(v["object"], object, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with(prefix), "{v}");
    assert_eq!(v["model"], model, "{v}");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1, "{v}");
    let c = &choices[0];
    assert_eq!(c["index"], 0, "{v}");
    let text = if chat {
        assert_eq!(c["message"]["role"], "assistant", "{v}");
        c["message"]["content"].as_str().unwrap()
    } else {
        c["text"].as_str().unwrap()
    };
    let u = &v["usage"];
    assert_eq!(u["prompt_tokens"], prompt_tokens, "{v}");
    let completion = u["completion_tokens"].as_u64().unwrap();
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        prompt_tokens as u64 + completion,
        "{v}"
    );
    let reason = c["finish_reason"].as_str().unwrap().to_string();
    // Char-level runs: a token is a character, and a chat reply that stops has drawn its
    // end token too.
    let chars = text.chars().count() as u64;
    if reason == "length" {
        assert_eq!(completion, chars, "{v}");
    } else if chat {
        assert_eq!(completion, chars + 1, "{v}");
    }
    (text.to_string(), reason)
}

// --- Raw HTTP over a TcpStream, for what a well-behaved client never sends. ---

/// Sends one request (`Connection: close`); write errors are ignored (a server may
/// answer before it has read a too-large body).
fn send_raw(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{headers}\r\n",
        body.len()
    );
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body));
    s
}

fn post_raw(addr: SocketAddr, body: &Value) -> TcpStream {
    send_raw(
        addr,
        "POST",
        "/v1/completions",
        "",
        body.to_string().as_bytes(),
    )
}

/// Reads a stream from `s` into `buf` until `n` JSON chunks have arrived.
fn read_chunks(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) {
    let mut chunk = [0; 4096];
    while buf.windows(7).filter(|w| w == b"data: {").count() < n {
        let read = s.read(&mut chunk).expect("reading the response");
        assert!(read > 0, "closed early: {}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..read]);
    }
}

/// Reads the rest of the response (to the end of the connection) after `buf`.
fn finish_raw(mut s: TcpStream, mut buf: Vec<u8>) -> Reply {
    let mut chunk = [0; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "reading the response: {e} after {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    parse_raw(&buf)
}

fn raw(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> Reply {
    finish_raw(send_raw(addr, method, path, headers, body), Vec::new())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_raw(bytes: &[u8]) -> Reply {
    let split = find(bytes, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let mut body = &bytes[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let end = find(body, b"\r\n").expect("a chunk size line");
            let size_line = std::str::from_utf8(&body[..end]).unwrap();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("a chunk size: {size_line:?}"));
            body = &body[end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&body[..size]);
            body = &body[size + 2..];
        }
        out
    } else {
        body.to_vec()
    };
    Reply {
        status,
        headers,
        body: String::from_utf8(body).expect("a UTF-8 body"),
    }
}

/// `gpt ARGS…`'s standard output without what it echoes first and the newline it ends
/// with.
fn printed(args: &[&str], echoed: &str) -> String {
    let out = ok(args);
    out.strip_prefix(echoed)
        .and_then(|o| o.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("gpt {args:?} printed {out:?}"))
        .to_string()
}

/// `/health`, `/v1/models`, `/` and `/v1/completions` whole and streamed, with their
/// usage and stop sequences; a run without chat tokens refuses chat completions.
#[test]
fn completions_come_in_openai_shapes() {
    let dir = tmp("serve-shapes");
    let run = text_run(&dir);
    let server = Server::start(&run, &[]);

    let health = server.get("/health");
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    let models = server.get("/v1/models");
    assert_eq!(models.status, 200, "{}", models.body);
    let models = models.json();
    assert_eq!(models["object"], "list", "{models}");
    let data = models["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{models}");
    assert_eq!(data[0]["id"], "text", "the run directory's name: {models}");
    assert_eq!(data[0]["object"], "model", "{models}");
    assert_eq!(data[0]["chat"], false, "{models}");
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );

    let prompt = "ROMEO:";
    let request = json!({"model": "text", "prompt": prompt, "max_tokens": 40, "temperature": 0});
    let (text, reason) = whole(
        &server.post("/v1/completions", &request),
        false,
        "text",
        prompt.len(),
    );
    assert_eq!((text.chars().count(), reason.as_str()), (40, "length"));
    // The model is optional, and greedy decoding gives the same text again.
    let mut again = request.clone();
    again.as_object_mut().unwrap().remove("model");
    let (same, _) = whole(
        &server.post("/v1/completions", &again),
        false,
        "text",
        prompt.len(),
    );
    assert_eq!(same, text);
    // A prompt given as a list of one.
    let mut listed = again.clone();
    listed["prompt"] = json!([prompt]);
    let (same, _) = whole(
        &server.post("/v1/completions", &listed),
        false,
        "text",
        prompt.len(),
    );
    assert_eq!(same, text);
    // The fields of OpenAI's API that this server does not use, at their neutral values,
    // and a temperature too small for an f32: greedy all the same.
    let neutral = json!({"prompt": prompt, "max_tokens": 40, "temperature": 1e-50,
        "top_p": 1, "n": 1, "frequency_penalty": 0, "presence_penalty": 0.0, "best_of": 1,
        "echo": false, "logprobs": null, "logit_bias": {}, "suffix": "", "user": "u"});
    let (same, _) = whole(
        &server.post("/v1/completions", &neutral),
        false,
        "text",
        prompt.len(),
    );
    assert_eq!(same, text);
    // OpenAI's default is 16 tokens.
    let sixteen = json!({"prompt": prompt, "temperature": 0});
    let (t, _) = whole(
        &server.post("/v1/completions", &sixteen),
        false,
        "text",
        prompt.len(),
    );
    assert_eq!(t, text.chars().take(16).collect::<String>());

    // Streamed: the same text in pieces, the finish reason, then [DONE]; usage only
    // when asked for.
    let mut stream = request.clone();
    stream["stream"] = json!(true);
    let (s, r, usage) = streamed(&server.post("/v1/completions", &stream), false);
    assert_eq!(
        (s.as_str(), r.as_str(), usage),
        (text.as_str(), "length", None)
    );
    stream["stream_options"] = json!({"include_usage": true});
    let (s, r, usage) = streamed(&server.post("/v1/completions", &stream), false);
    assert_eq!((s.as_str(), r.as_str()), (text.as_str(), "length"));
    assert_eq!(
        usage,
        Some(json!({"prompt_tokens": 6, "completion_tokens": 40, "total_tokens": 46}))
    );

    // A stop sequence ends the text where it first appears, whole or streamed, and is
    // not part of it.
    let stop: String = text.chars().skip(10).take(2).collect();
    let cut = &text[..text.find(&stop).unwrap()];
    let mut stopped = request.clone();
    stopped["stop"] = json!([stop, "never appears: ~~~"]);
    let (t, r) = whole(
        &server.post("/v1/completions", &stopped),
        false,
        "text",
        prompt.len(),
    );
    assert_eq!((t.as_str(), r.as_str()), (cut, "stop"), "stop {stop:?}");
    stopped["stream"] = json!(true);
    let (t, r, _) = streamed(&server.post("/v1/completions", &stopped), false);
    assert_eq!((t.as_str(), r.as_str()), (cut, "stop"), "stop {stop:?}");

    // No chat tokens, no chat completions.
    let chat = server.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    let message = chat.error(400, "invalid_request_error");
    assert!(message.contains("not a chat model"), "{message}");
    assert_eq!(chat.json()["error"]["param"], "messages");
    server.serves(None);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A greedy completion is `gpt sample --top-k 1`'s text after the prompt, and a seeded
/// one at temperature 1 is `gpt sample --seed`'s, whole and streamed.
#[test]
fn completions_are_what_gpt_sample_prints() {
    let dir = tmp("serve-sample");
    let run = text_run(&dir);
    let server = Server::start(&run, &[]);
    let r = run.to_str().unwrap();
    let mut greedy = Vec::new();
    for (prompt, n) in [
        ("ROMEO:", 80),
        ("First Citizen:\nWe are", 50),
        ("KING:", 70),
    ] {
        let max = n.to_string();
        let expected = printed(
            &[
                "sample",
                "--run",
                r,
                "--prompt",
                prompt,
                "--top-k",
                "1",
                "--max-new-tokens",
                &max,
            ],
            prompt,
        );
        let mut request = json!({"prompt": prompt, "max_tokens": n, "temperature": 0});
        let (text, _) = whole(
            &server.post("/v1/completions", &request),
            false,
            "text",
            prompt.chars().count(),
        );
        assert_eq!(text, expected, "greedy from {prompt:?}");
        request["stream"] = json!(true);
        let (text, _, _) = streamed(&server.post("/v1/completions", &request), false);
        assert_eq!(text, expected, "greedy from {prompt:?}, streamed");
        greedy.push((request, expected));
    }
    // Sent at once, the requests are decoded together, each still its own text.
    std::thread::scope(|s| {
        let answers: Vec<_> = greedy
            .iter()
            .map(|(request, expected)| {
                let server = &server;
                s.spawn(move || {
                    (
                        streamed(&server.post("/v1/completions", request), false).0,
                        expected,
                    )
                })
            })
            .collect();
        for answer in answers {
            let (text, expected) = answer.join().unwrap();
            assert_eq!(&text, expected, "greedy, decoded together");
        }
    });
    let prompt = "KING:";
    let mut seen = Vec::new();
    for seed in [7u64, 1337] {
        let s = seed.to_string();
        #[rustfmt::skip]
        let expected = printed(
            &["sample", "--run", r, "--prompt", prompt, "--seed", &s, "--max-new-tokens", "60"],
            prompt,
        );
        let mut request =
            json!({"prompt": prompt, "max_tokens": 60, "temperature": 1, "seed": seed});
        let (text, _) = whole(&server.post("/v1/completions", &request), false, "text", 5);
        assert_eq!(text, expected, "seed {seed}");
        request["stream"] = json!(true);
        let (text, _, _) = streamed(&server.post("/v1/completions", &request), false);
        assert_eq!(text, expected, "seed {seed}, streamed");
        seen.push(text);
    }
    assert_ne!(seen[0], seen[1], "two seeds, two texts");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A chat run's chat completions, whole and streamed, are `gpt chat`'s replies: greedy,
/// seeded, and a reply to a conversation of several turns; usage counts the template's
/// tokens.
#[test]
fn chat_completions_are_what_gpt_chat_prints() {
    let dir = tmp("serve-chat");
    let run = train_chat(&dir);
    let server = Server::start(&run, &[]);
    let r = run.to_str().unwrap();
    let models = server.get("/v1/models").json();
    assert_eq!(
        (&models["data"][0]["id"], &models["data"][0]["chat"]),
        (&json!("chat"), &json!(true))
    );

    let replies = ok(&[
        "chat",
        "--run",
        r,
        "--top-k",
        "1",
        "--message",
        GREETING,
        "--message",
        QUESTION,
    ]);
    let replies: Vec<&str> = replies.lines().collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    let alone = printed(
        &["chat", "--run", r, "--top-k", "1", "--message", GREETING],
        "",
    );
    assert_eq!(alone, replies[0]);
    assert_eq!(
        alone, GREETING_REPLY,
        "the tiny SFT learned its conversation"
    );

    let one = json!([{"role": "user", "content": GREETING}]);
    // <bos> <user> the message <end of user> <assistant>
    let prompt_tokens = GREETING.len() + 4;
    let mut request = json!({"model": "chat", "messages": one, "temperature": 0});
    let (text, reason) = whole(
        &server.post("/v1/chat/completions", &request),
        true,
        "chat",
        prompt_tokens,
    );
    assert_eq!((text.as_str(), reason.as_str()), (alone.as_str(), "stop"));
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let (text, reason, usage) = streamed(&server.post("/v1/chat/completions", &request), true);
    assert_eq!((text.as_str(), reason.as_str()), (alone.as_str(), "stop"));
    // Every drawn token counts, the end of the reply too.
    let n = alone.chars().count() + 1;
    assert_eq!(
        usage,
        Some(
            json!({"prompt_tokens": prompt_tokens, "completion_tokens": n,
                    "total_tokens": prompt_tokens + n})
        )
    );

    // The second turn, with the first reply in the conversation.
    let two = json!([
        {"role": "user", "content": GREETING},
        {"role": "assistant", "content": replies[0]},
        {"role": "user", "content": QUESTION},
    ]);
    let request = json!({"messages": two, "temperature": 0, "max_completion_tokens": 100});
    let (text, _) = whole(
        &server.post("/v1/chat/completions", &request),
        true,
        "chat",
        GREETING.len() + replies[0].len() + QUESTION.len() + 8,
    );
    assert_eq!(text, replies[1]);

    // Sampled: the same seed draws the same reply.
    for seed in [3u64, 11] {
        let s = seed.to_string();
        #[rustfmt::skip]
        let expected = printed(
            &["chat", "--run", r, "--temperature", "1.5", "--seed", &s,
              "--max-new-tokens", "30", "--message", QUESTION],
            "",
        );
        let mut request = json!({"messages": [{"role": "user", "content": QUESTION}],
                                 "temperature": 1.5, "seed": seed, "max_tokens": 30});
        let (text, _) = whole(
            &server.post("/v1/chat/completions", &request),
            true,
            "chat",
            QUESTION.len() + 4,
        );
        assert_eq!(text, expected, "seed {seed}");
        request["stream"] = json!(true);
        let (text, _, _) = streamed(&server.post("/v1/chat/completions", &request), true);
        assert_eq!(text, expected, "seed {seed}, streamed");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every malformed or refused request is a 4xx with an OpenAI error object, and the
/// server answers a good request after each; with --api-key, /v1/ needs the key.
#[test]
fn bad_requests_are_openai_errors_and_the_server_serves_on() {
    let dir = tmp("serve-bad");
    let run = text_run(&dir);
    let key = "sk-test-123";
    let server = Server::start(
        &run,
        &[
            "--api-key",
            key,
            "--max-body-bytes",
            "4096",
            "--max-tokens",
            "1000",
        ],
    );
    let auth = format!("Authorization: Bearer {key}\r\n");
    let big = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(5000));
    let huge = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(3 << 20));
    let invalid = "invalid_request_error";
    let c = "/v1/completions";
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, u16, &str, &str)] = &[
        // method, path, body, status, type, in the message
        ("POST", c, "{", 400, invalid, "not a valid request"),
        ("POST", c, "", 400, invalid, "not a valid request"),
        ("POST", c, "[1, 2]", 400, invalid, "not a valid request"),
        ("POST", c, "not json at all", 400, invalid, "not a valid request"),
        ("POST", c, r#"{"prompt": 3}"#, 400, invalid, "not a valid request"),
        ("POST", c, r#"{"prompt": "a", "max_tokens": "5"}"#, 400, invalid, "not a valid request"),
        ("POST", c, r#"{"prompt": "a", "stream": "yes"}"#, 400, invalid, "not a valid request"),
        ("POST", c, r#"{"prompt": "a", "seed": -1}"#, 400, invalid, "not a valid request"),
        ("POST", c, r#"{"max_tokens": 3}"#, 400, invalid, "missing field `prompt`"),
        ("POST", c, r#"{"prompt": ""}"#, 400, invalid, "prompt is empty"),
        ("POST", c, r#"{"prompt": ["a", "b"]}"#, 400, invalid, "one string"),
        ("POST", c, r#"{"prompt": "ROMEO: 🦀"}"#, 400, invalid, "vocabulary"),
        ("POST", c, &big, 413, invalid, "limit of 4096 bytes"),
        ("POST", c, &huge, 413, invalid, "limit of 4096 bytes"),
        ("POST", c, r#"{"prompt": "a", "max_tokens": -1}"#, 400, invalid, "at least 1"),
        ("POST", c, r#"{"prompt": "a", "max_tokens": 0}"#, 400, invalid, "at least 1"),
        ("POST", c, r#"{"prompt": "a", "max_tokens": 1001}"#, 400, invalid, "limit of 1000"),
        ("POST", c, r#"{"prompt": "a", "max_tokens": 99999999999999999999}"#, 400, invalid, "not a valid request"),
        ("POST", c, r#"{"prompt": "a", "max_tokens": 1e30}"#, 400, invalid, "not a valid request"),
        ("POST", c, r#"{"prompt": "a", "temperature": -0.5}"#, 400, invalid, "between 0 and 2"),
        ("POST", c, r#"{"prompt": "a", "temperature": 2.5}"#, 400, invalid, "between 0 and 2"),
        ("POST", c, r#"{"prompt": "a", "temperature": NaN}"#, 400, invalid, "not a valid request"),
        ("POST", c, r#"{"prompt": "a", "temperature": 1e999}"#, 400, invalid, "not a valid request"),
        ("POST", c, r#"{"prompt": "a", "frequency_penalty": 0.5}"#, 400, invalid, "frequency_penalty is not supported"),
        ("POST", c, r#"{"prompt": "a", "presence_penalty": -1}"#, 400, invalid, "presence_penalty is not supported"),
        ("POST", c, r#"{"prompt": "a", "best_of": 3}"#, 400, invalid, "best_of is not supported"),
        ("POST", c, r#"{"prompt": "a", "echo": true}"#, 400, invalid, "echo is not supported"),
        ("POST", c, r#"{"prompt": "a", "logprobs": 5}"#, 400, invalid, "logprobs is not supported"),
        ("POST", c, r#"{"prompt": "a", "logit_bias": {"5": -100}}"#, 400, invalid, "logit_bias is not supported"),
        ("POST", c, r#"{"prompt": "a", "suffix": "end"}"#, 400, invalid, "suffix is not supported"),
        ("POST", c, r#"{"prompt": "a", "top_k": 0}"#, 400, invalid, "top_k"),
        ("POST", c, r#"{"prompt": "a", "top_p": 0.5}"#, 400, invalid, "top_p"),
        ("POST", c, r#"{"prompt": "a", "n": 2}"#, 400, invalid, "n must be 1"),
        ("POST", c, r#"{"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}"#, 400, invalid, "stop"),
        ("POST", c, r#"{"prompt": "a", "model": "gpt-4"}"#, 404, invalid, "does not exist"),
        ("POST", "/v1/chat/completions", r#"{"messages": []}"#, 400, invalid, "not a chat model"),
        ("GET", "/v1/nothing", "", 404, invalid, "no such endpoint"),
        ("POST", "/nothing", "{}", 404, invalid, "no such endpoint"),
        ("GET", c, "", 405, invalid, "GET"),
        ("DELETE", "/v1/models", "", 405, invalid, "DELETE"),
        ("POST", "/health", "{}", 405, invalid, "POST"),
    ];
    for &(method, path, body, status, kind, why) in cases {
        let reply = raw(server.addr, method, path, &auth, body.as_bytes());
        let message = reply.error(status, kind);
        let shown = &body[..body.len().min(80)];
        assert!(
            message.contains(why),
            "{method} {path} {shown}: {why:?} not in {message:?}"
        );
        if status == 405 {
            let allow = reply.header("allow").unwrap_or_default();
            assert!(
                !allow.is_empty() && !allow.contains(method),
                "{method} {path}: Allow {allow:?}"
            );
        }
        server.serves(Some(key));
    }
    // The key: missing, wrong, or in another scheme is 401 on every /v1/ path; the
    // right one works; /health needs none.
    let good = json!({"prompt": "ROMEO:", "max_tokens": 3}).to_string();
    for headers in [
        String::new(),
        "Authorization: Bearer sk-wrong\r\n".into(),
        format!("Authorization: Basic {key}\r\n"),
        format!("Authorization: {key}\r\n"),
        format!("Authorization: Bearer {key}x\r\n"),
    ] {
        for (method, path) in [
            ("POST", c),
            ("POST", "/v1/chat/completions"),
            ("GET", "/v1/models"),
            ("GET", "/v1/no-such-endpoint"),
        ] {
            let reply = raw(server.addr, method, path, &headers, good.as_bytes());
            let message = reply.error(401, "authentication_error");
            assert!(message.contains("API key"), "{headers:?}: {message}");
        }
        server.serves(Some(key));
    }
    assert_eq!(raw(server.addr, "GET", "/health", "", b"").status, 200);
    let models = raw(server.addr, "GET", "/v1/models", &auth, b"");
    assert_eq!(models.json()["data"][0]["id"], "text", "{}", models.body);
    // ureq's own request with the key.
    let r = agent()
        .get(server.url("/v1/models"))
        .header("Authorization", format!("Bearer {key}"))
        .call();
    assert_eq!(Reply::from(r).status, 200);
    server.serves(Some(key));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One worker, one place in the queue: with a request in flight and one waiting, the
/// next is 503 with Retry-After and an error object; the waiting one is served once
/// the first hangs up.
#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let dir = tmp("serve-queue");
    let run = text_run(&dir);
    #[rustfmt::skip]
    let server = Server::start(&run, &["--workers", "1", "--batch", "1", "--queue", "1", "--max-tokens", "100000000"]);
    // In flight: a stream that would take hours, not read on (so it waits on us).
    let mut slow = post_raw(
        server.addr,
        &json!({"prompt": "ROMEO:", "max_tokens": 100_000_000, "stream": true}),
    );
    let mut seen = Vec::new();
    read_chunks(&mut slow, &mut seen, 1);
    // Waiting: a short completion.
    let waiting = post_raw(
        server.addr,
        &json!({"prompt": "ROMEO:", "max_tokens": 10, "temperature": 0}),
    );
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let busy = server.post(
            "/v1/completions",
            &json!({"prompt": "ROMEO:", "max_tokens": 5}),
        );
        let message = busy.error(503, "server_error");
        assert!(message.contains("busy"), "{message}");
        let retry = busy.header("retry-after").expect("a Retry-After header");
        assert!(retry.parse::<u64>().is_ok_and(|s| s >= 1), "{retry}");
    }
    // Streamed requests are refused the same way.
    let busy = server.post(
        "/v1/completions",
        &json!({"prompt": "ROMEO:", "max_tokens": 5, "stream": true}),
    );
    busy.error(503, "server_error");
    assert!(busy.header("retry-after").is_some());
    drop(slow);
    let waited = finish_raw(waiting, Vec::new());
    let (text, _) = whole(&waited, false, "text", 6);
    assert_eq!(text.chars().count(), 10);
    server.serves(None);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that stops reading its stream holds up no one: its generation pauses once it
/// is a few events behind, and the rest of its batch, and requests after it, go on.
#[test]
fn a_reader_that_falls_behind_holds_up_no_one() {
    let dir = tmp("serve-behind");
    let run = text_run(&dir);
    #[rustfmt::skip]
    let server = Server::start(&run, &["--workers", "1", "--batch", "2", "--max-tokens", "100000000"]);
    let mut behind = post_raw(
        server.addr,
        &json!({"prompt": "ROMEO:", "max_tokens": 100_000_000, "stream": true}),
    );
    let mut seen = Vec::new();
    read_chunks(&mut behind, &mut seen, 1);
    // Time to fill the sockets' buffers and its events: then it is behind.
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        server.serves_within(None, Duration::from_secs(15));
    }
    // It reads on, and its stream goes on.
    read_chunks(&mut behind, &mut seen, 200);
    drop(behind);
    server.serves_within(None, Duration::from_secs(15));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that trickles its request in is cut off after `--read-timeout`: headers that
/// never end close the connection, a body that never ends is a 408; an idle kept-alive
/// connection is closed too. The server serves on.
#[test]
fn slow_clients_are_timed_out() {
    let dir = tmp("serve-slow");
    let run = text_run(&dir);
    let server = Server::start(&run, &["--read-timeout", "1"]);
    let cut_off = |mut s: TcpStream| {
        let start = Instant::now();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let waited = start.elapsed();
        assert!(
            waited < Duration::from_secs(10),
            "still open after {waited:?}"
        );
        got
    };
    // Headers that never end: closed without an answer, or with hyper's 408.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let got = cut_off(s);
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{got:?}"
    );
    // A body shorter than its Content-Length.
    let body = br#"{"prompt": "ROMEO:", "max_tokens": 5, "#;
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len() + 100
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let reply = parse_raw(&cut_off(s));
    let message = reply.error(408, "invalid_request_error");
    assert!(message.contains("did not arrive"), "{message}");
    // A connection opened and left idle.
    let s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    cut_off(s);
    server.serves(None);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that hangs up, streamed or not, stops its generation: with one worker, the
/// next request is answered at once instead of after hours of tokens.
#[test]
fn a_client_that_hangs_up_stops_its_generation() {
    let dir = tmp("serve-hangup");
    let run = text_run(&dir);
    #[rustfmt::skip]
    let server = Server::start(&run, &["--workers", "1", "--max-tokens", "100000000"]);
    for stream in [true, false] {
        let mut s = post_raw(
            server.addr,
            &json!({"prompt": "ROMEO:", "max_tokens": 100_000_000, "stream": stream}),
        );
        if stream {
            read_chunks(&mut s, &mut Vec::new(), 10);
        } else {
            // Long enough for the worker to be generating it.
            std::thread::sleep(Duration::from_millis(300));
        }
        drop(s);
        // Hours of tokens if the abandoned generation went on.
        server.serves_within(None, Duration::from_secs(15));
    }
    // A client that hangs up while its request waits in the queue costs nothing either.
    let mut a = post_raw(
        server.addr,
        &json!({"prompt": "ROMEO:", "max_tokens": 100_000_000, "stream": true}),
    );
    read_chunks(&mut a, &mut Vec::new(), 1);
    let b = post_raw(
        server.addr,
        &json!({"prompt": "ROMEO:", "max_tokens": 100_000_000}),
    );
    std::thread::sleep(Duration::from_millis(300));
    drop(b);
    drop(a);
    server.serves_within(None, Duration::from_secs(15));
    assert!(!server.log().contains("panicked"), "{}", server.log());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM with a stream in flight and a request waiting: no new connections, both
/// answered whole, then exit 0 with `stopped`, also with connections open that never
/// finish sending their request.
#[test]
fn sigterm_finishes_the_requests_in_flight_then_exits() {
    let dir = tmp("serve-sigterm");
    let run = text_run(&dir);
    // One request at a time, so that the second waits in the queue.
    #[rustfmt::skip]
    let mut server = Server::start(&run, &["--workers", "1", "--batch", "1", "--max-tokens", "100000"]);
    let n = 40_000;
    let mut streaming = post_raw(
        server.addr,
        &json!({"prompt": "ROMEO:", "max_tokens": n, "stream": true,
                "stream_options": {"include_usage": true}}),
    );
    let mut seen = Vec::new();
    read_chunks(&mut streaming, &mut seen, 1);
    let waiting = post_raw(
        server.addr,
        &json!({"prompt": "ROMEO:", "max_tokens": 100, "temperature": 0}),
    );
    // Connections that never finish their request: they do not hold the exit.
    let mut idle = TcpStream::connect(server.addr).unwrap();
    let mut head = TcpStream::connect(server.addr).unwrap();
    head.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut body = TcpStream::connect(server.addr).unwrap();
    body.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Still in flight: the stream, unread, holds the worker, so the request behind it
    // has no answer yet.
    waiting.set_nonblocking(true).unwrap();
    let peeked = waiting.peek(&mut [0; 1]);
    assert!(
        peeked
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::WouldBlock),
        "answered before SIGTERM: {peeked:?}"
    );
    waiting.set_nonblocking(false).unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &server.pid()])
        .status()
        .unwrap();
    assert!(kill.success());
    // The listener closes at once; what was accepted is still answered.
    let start = Instant::now();
    loop {
        match TcpStream::connect(server.addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("connecting after SIGTERM: {e}"),
            Ok(_) => {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "still accepting connections 10 s after SIGTERM:\n{}",
                    server.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let (text, reason, usage) = streamed(&finish_raw(streaming, seen), false);
    assert_eq!((text.chars().count(), reason.as_str()), (n, "length"));
    assert_eq!(usage.unwrap()["completion_tokens"], n);
    let (text, reason) = whole(&finish_raw(waiting, Vec::new()), false, "text", 6);
    assert_eq!((text.chars().count(), reason.as_str()), (100, "length"));
    let status = server.wait(Duration::from_secs(30));
    for s in [&mut idle, &mut head, &mut body] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        // Closed (or reset) without an answer.
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
    let log = server.log();
    assert!(status.success(), "{status}:\n{log}");
    assert!(log.contains("stopping: no new requests"), "{log}");
    assert!(log.ends_with("stopped\n"), "{log}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Debug)]
enum Outcome {
    Complete,
    Busy,
    Wrong(String),
}

/// One request of the load test, and what came back.
fn load_request(agent: &ureq::Agent, url: &str, i: usize) -> Outcome {
    let stream = i % 4 == 3;
    let max_tokens = 20 + (i * 37) % 200;
    let request = json!({"prompt": "ROMEO:", "max_tokens": max_tokens, "stream": stream,
                         "temperature": if i.is_multiple_of(2) { 0.0 } else { 0.8 }});
    let mut call = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(request.to_string());
    let r = match call.as_mut() {
        Ok(r) => r,
        Err(e) => return Outcome::Wrong(format!("no response: {e}")),
    };
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").is_some();
    let body = match r.body_mut().read_to_string() {
        Ok(b) => b,
        Err(e) => return Outcome::Wrong(format!("{status}, a body cut short: {e}")),
    };
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    match status {
        503 => match parsed {
            Some(v) if retry && v["error"]["type"] == "server_error" => Outcome::Busy,
            _ => Outcome::Wrong(format!("503 without Retry-After or error: {body}")),
        },
        200 if stream => {
            let complete =
                body.ends_with("data: [DONE]\n\n") && body.contains(r#""finish_reason":"length""#);
            if complete {
                Outcome::Complete
            } else {
                Outcome::Wrong(format!("an incomplete stream: {body}"))
            }
        }
        200 => match parsed {
            Some(v)
                if v["choices"][0]["finish_reason"] == "length"
                    && v["usage"]["completion_tokens"] == max_tokens =>
            {
                Outcome::Complete
            }
            _ => Outcome::Wrong(format!("an incomplete answer: {body}")),
        },
        _ => Outcome::Wrong(format!("{status}: {body}")),
    }
}

/// 16 clients for 8 s against one worker and four queue places: every answer is a
/// complete 200 or the documented 503, never another error or a dropped connection.
#[test]
fn under_load_every_answer_is_complete_or_503() {
    let dir = tmp("serve-load");
    let run = text_run(&dir);
    let server = Server::start(&run, &["--workers", "1", "--queue", "4"]);
    let url = server.url("/v1/completions");
    let deadline = Instant::now() + Duration::from_secs(8);
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut outcomes = Vec::new();
                let mut i = c;
                while Instant::now() < deadline {
                    let outcome = load_request(&agent, &url, i);
                    if matches!(outcome, Outcome::Busy) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    outcomes.push(outcome);
                    i += 16;
                }
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<Outcome> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let complete = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Complete))
        .count();
    let busy = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Busy))
        .count();
    let wrong: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Wrong(w) => Some(w),
            _ => None,
        })
        .collect();
    eprintln!("load: {complete} complete, {busy} busy (503)");
    assert!(
        wrong.is_empty(),
        "{} of {} wrong, first: {}",
        wrong.len(),
        outcomes.len(),
        wrong[0]
    );
    assert!(complete >= 16, "{complete} complete, {busy} busy");
    server.serves(None);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
