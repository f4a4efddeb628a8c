//! Helpers shared by the end-to-end tests: run the `gpt` binary, which finds Tiny
//! Shakespeare as a user's does (`BURNGPT_DATA_DIR`, which CI points at its shared copy;
//! else the cache, filled by one download).

#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Overrides that make a model small enough to train in well under a second.
pub const TINY: &[&str] = &[
    "--set",
    "n_layer=1",
    "--set",
    "n_head=2",
    "--set",
    "n_embd=16",
    "--set",
    "block_size=16",
    "--set",
    "batch_size=4",
    "--set",
    "eval_iters=2",
    "--set",
    "eval_interval=10",
    "--set",
    "max_iters=20",
];

/// Tiny Shakespeare's verified local copy.
pub fn shakespeare_path() -> PathBuf {
    data::source::named_path("tinyshakespeare").expect("Tiny Shakespeare")
}

/// A fresh, empty path for this test process.
pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burngpt-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `gpt args…`, ready to run or spawn.
pub fn gpt_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpt"));
    cmd.args(args);
    cmd
}

pub fn gpt(args: &[&str]) -> Output {
    gpt_command(args).output().expect("the gpt binary runs")
}

/// Runs `gpt args…`, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = gpt(args);
    assert!(
        o.status.success(),
        "gpt {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The JSON object on the last line of `text`.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.lines().last().unwrap_or_default()).expect("one JSON object")
}

/// The arguments of `gpt train` into `dir` with the tiny model and `extra` arguments.
pub fn tiny_train_args<'a>(dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--out-dir",
        dir.to_str().unwrap(),
        "--sample-tokens",
        "0",
    ];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    args
}

/// `gpt train` into `dir` with the tiny model and extra arguments.
pub fn train_tiny(dir: &Path, extra: &[&str]) -> Output {
    gpt(&tiny_train_args(dir, extra))
}

/// Non-zero exit, and stderr is one `error:` line containing `expected` (no panic, no
/// backtrace).
pub fn check_one_error_line(args: &[&str], o: &std::process::Output, expected: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "gpt {args:?} should fail");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "gpt {args:?}: expected one line, got:\n{err}"
    );
    assert!(lines[0].starts_with("error: "), "gpt {args:?}: {err}");
    assert!(
        lines[0].contains(expected),
        "gpt {args:?}: expected {expected:?} in:\n{err}"
    );
}

/// The one conversation the chat tests teach: two turns, learned by heart.
pub const GREETING: &str = "hello there";
pub const GREETING_REPLY: &str = "Hi! I am a tiny bot.";
pub const QUESTION: &str = "what is your name?";
pub const QUESTION_REPLY: &str = "My name is burngpt.";

/// Writes that conversation `copies` times as a conversations file.
pub fn write_conversations(path: &Path, copies: usize) {
    let line = serde_json::json!({"messages": [
        {"role": "user", "content": GREETING},
        {"role": "assistant", "content": GREETING_REPLY},
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": QUESTION_REPLY},
    ]});
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{line}\n").repeat(copies)).unwrap();
}

/// A model just big enough to learn the conversation by heart, with room for both turns.
pub const SFT: &[&str] = &[
    "--set",
    "n_layer=2",
    "--set",
    "n_head=2",
    "--set",
    "n_embd=32",
    "--set",
    "block_size=128",
    "--set",
    "batch_size=8",
    "--set",
    "eval_iters=2",
    "--set",
    "eval_interval=100",
    "--set",
    "learning_rate=3e-3",
    "--set",
    "warmup_iters=10",
    "--set",
    "max_iters=300",
    "--sample-tokens",
    "0",
];

/// `DIR/chat`: a chat run trained from scratch on the conversation (`DIR/chat.jsonl`).
pub fn train_chat(dir: &Path) -> PathBuf {
    let data = dir.join("chat.jsonl");
    write_conversations(&data, 8);
    let run = dir.join("chat");
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out-dir",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(SFT);
    let stdout = ok(&args);
    assert!(stdout.contains("talk to it: gpt chat --run"), "{stdout}");
    run
}

/// A running `gpt serve` on a free loopback port, killed when dropped (its log printed
/// when a test fails); its stderr collected as it comes.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Server {
    /// `gpt serve --run RUN --addr 127.0.0.1:0 extra…`, once it listens.
    pub fn start(run: &Path, extra: &[&str]) -> Self {
        let mut args = vec![
            "serve",
            "--run",
            run.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut child = gpt_command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpt serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    // "serving RUN on http://127.0.0.1:PORT/ (…)"
                    if line.starts_with("serving ")
                        && let Some(addr) = line
                            .split_once(" on http://")
                            .and_then(|(_, rest)| rest.split_once('/'))
                            .and_then(|(addr, _)| addr.parse::<SocketAddr>().ok())
                    {
                        let _ = tx.send(addr);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        let mut server = Server {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
            reader: Some(reader),
        };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => server.addr = addr,
            Err(_) => panic!("gpt serve did not start:\n{}", server.log()),
        }
        server
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Waits for the process to end by itself, then for the rest of its stderr.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "gpt serve did not exit within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("gpt serve's log:\n{}", self.log());
        }
    }
}
