//! The download path of named datasets, against a tiny HTTP server on 127.0.0.1 (loopback
//! only, no network): a first use downloads Tiny Shakespeare into an empty cache, verified
//! by sha256; a server that sends other bytes gives the checksum error and leaves nothing
//! in the cache; `BURNGPT_MIRROR` redirects `load_text`'s download to a mirror.
//!
//! The served bytes are Tiny Shakespeare as the data crate finds it (`BURNGPT_DATA_DIR`,
//! the cache, or one download).

use data::source::{Manifest, TextSource, load_text, locate};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Held by each test for its whole run: one of them sets environment variables, which
/// `std::env::set_var` allows only while no other thread may read the environment (the
/// HTTP client reads it too, for proxies).
static ENV: Mutex<()> = Mutex::new(());

fn lock_env() -> std::sync::MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|e| e.into_inner())
}

fn shared_copy() -> Vec<u8> {
    // Found as users find it: `BURNGPT_DATA_DIR` (CI's shared copy), the cache, or one
    // download. Callers hold the environment lock and read it before changing anything.
    let path = data::source::named_path("tinyshakespeare").expect("Tiny Shakespeare");
    std::fs::read(path).expect("a verified copy reads")
}

/// An HTTP/1.1 server on 127.0.0.1 answering `GET <path>` with `body` (404 for any other
/// path); it counts the requests and records their paths.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    served: Arc<AtomicUsize>,
}

impl Server {
    fn start(path: &str, body: Vec<u8>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(AtomicUsize::new(0));
        let (log, count, path) = (requests.clone(), served.clone(), path.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Headers, up to the blank line.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 0) && header != "\r\n" {
                    header.clear();
                }
                let target = request_line.split_whitespace().nth(1).unwrap_or_default();
                log.lock().unwrap().push(target.to_string());
                let (status, body): (&str, &[u8]) = if target == path {
                    count.fetch_add(1, Ordering::SeqCst);
                    ("200 OK", &body)
                } else {
                    ("404 Not Found", b"not found")
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
                let _ = stream.flush();
            }
        });
        Server {
            base,
            requests,
            served,
        }
    }
}

/// A fresh empty directory under the system temp dir.
fn empty_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "burngpt-download-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn first_use_downloads_into_the_cache_then_reads_it_from_there() {
    let _env = lock_env();
    let bytes = shared_copy();
    let server = Server::start("/input.txt", bytes.clone());
    let mut manifest = Manifest::named("tinyshakespeare").unwrap();
    manifest.url = format!("{}/input.txt", server.base);
    let cache = empty_dir("cache");

    let path = locate(&manifest, None, &cache).unwrap();
    assert_eq!(path, cache.join("tinyshakespeare/input.txt"));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(
        files_under(&cache),
        std::slice::from_ref(&path),
        "no temporary file is left"
    );
    assert_eq!(server.served.load(Ordering::SeqCst), 1);

    // The second use finds the verified cached copy and does not download again.
    assert_eq!(locate(&manifest, None, &cache).unwrap(), path);
    assert_eq!(server.served.load(Ordering::SeqCst), 1);

    // A data dir without the dataset falls through to the cache as well.
    let empty_data_dir = empty_dir("data");
    assert_eq!(
        locate(&manifest, Some(&empty_data_dir), &cache).unwrap(),
        path
    );
    assert_eq!(server.served.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(&cache);
    let _ = std::fs::remove_dir_all(&empty_data_dir);
}

#[test]
fn wrong_bytes_are_a_checksum_error_and_leave_nothing_in_the_cache() {
    let _env = lock_env();
    let mut bytes = shared_copy();
    // Same size, one byte changed: only the sha256 can tell.
    bytes[1000] ^= 0x20;
    let server = Server::start("/input.txt", bytes);
    let mut manifest = Manifest::named("tinyshakespeare").unwrap();
    manifest.url = format!("{}/input.txt", server.base);
    let cache = empty_dir("bad");

    let err = locate(&manifest, None, &cache).unwrap_err().to_string();
    assert!(err.contains("sha256"), "{err}");
    assert!(err.contains("tinyshakespeare"), "{err}");
    assert_eq!(server.served.load(Ordering::SeqCst), 1);
    assert!(files_under(&cache).is_empty(), "{:?}", files_under(&cache));

    // A truncated download is refused by its size.
    let short = Server::start("/input.txt", b"First Citizen:\n".to_vec());
    manifest.url = format!("{}/input.txt", short.base);
    let err = locate(&manifest, None, &cache).unwrap_err().to_string();
    assert!(err.contains("bytes, expected"), "{err}");
    assert!(files_under(&cache).is_empty(), "{:?}", files_under(&cache));

    // An HTTP error is a download error naming the URL, and nothing is cached either.
    manifest.url = format!("{}/missing.txt", server.base);
    let err = locate(&manifest, None, &cache).unwrap_err().to_string();
    assert!(err.contains("missing.txt"), "{err}");
    assert!(files_under(&cache).is_empty(), "{:?}", files_under(&cache));
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn load_text_downloads_from_the_mirror_in_burngpt_mirror() {
    let _env = lock_env();
    let bytes = shared_copy();
    let server = Server::start("/mirror/tinyshakespeare/input.txt", bytes.clone());
    let cache = empty_dir("mirror");
    let text = {
        let saved: Vec<_> = ["BURNGPT_MIRROR", "BURNGPT_CACHE", "BURNGPT_DATA_DIR"]
            .into_iter()
            .map(|k| (k, std::env::var_os(k)))
            .collect();
        // SAFETY: every test in this file runs holding ENV, so no other thread of this
        // process reads the environment meanwhile.
        unsafe {
            // A trailing slash on the mirror is allowed.
            std::env::set_var("BURNGPT_MIRROR", format!("{}/mirror/", server.base));
            std::env::set_var("BURNGPT_CACHE", &cache);
            std::env::remove_var("BURNGPT_DATA_DIR");
        }
        let text = load_text(&TextSource::Named("tinyshakespeare".into()));
        for (k, v) in saved {
            // SAFETY: as above.
            unsafe {
                match v {
                    Some(v) => std::env::set_var(k, v),
                    None => std::env::remove_var(k),
                }
            }
        }
        text
    };
    let text = text
        .unwrap_or_else(|e| panic!("{e}; the server saw {:?}", server.requests.lock().unwrap()));
    assert_eq!(text.as_bytes(), bytes.as_slice());
    assert_eq!(
        *server.requests.lock().unwrap(),
        ["/mirror/tinyshakespeare/input.txt"]
    );
    assert_eq!(
        std::fs::read(cache.join("tinyshakespeare/input.txt")).unwrap(),
        bytes
    );
    let _ = std::fs::remove_dir_all(&cache);
}
