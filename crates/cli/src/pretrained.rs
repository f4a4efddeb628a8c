//! `--init-from gpt2|gpt2-medium|gpt2-large|gpt2-xl|HF_DIR`: GPT-2 weights in Hugging
//! Face's layout, from a local directory or downloaded once into the cache.
//!
//! A named checkpoint lives in `<cache>/huggingface/<name>/` (`$BURNGPT_CACHE`, else the
//! platform cache, as the datasets): `model.safetensors` downloaded from the hub
//! (`$BURNGPT_HF_ENDPOINT`, default `https://huggingface.co`, a local mirror or proxy
//! otherwise) and a `config.json` written from the published shapes (nanoGPT's
//! `from_pretrained` hard-codes them the same way). The weights are checked as the
//! datasets are: against the sha256 and size compiled in below where they are pinned, else
//! against the sha256 and size the hub publishes for the file (its `X-Linked-Etag` and
//! `X-Linked-Size` headers, which are the file's sha256 and length), recorded beside the
//! file. A download goes to a temporary file and is renamed into place only once it
//! matches; a cached file is verified again before each use.

use anyhow::{Context, Result, bail};
use model::hf::{CONFIG_FILE, HfGpt2Config, WEIGHTS_FILE};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// One published checkpoint: its hub repository and, where pinned, the sha256 and size
/// of its `model.safetensors`.
pub struct Checkpoint {
    pub name: &'static str,
    pub repo: &'static str,
    pub pinned: Option<(&'static str, u64)>,
}

pub const CHECKPOINTS: &[Checkpoint] = &[
    Checkpoint {
        name: "gpt2",
        repo: "openai-community/gpt2",
        pinned: Some((
            "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707",
            548_105_171,
        )),
    },
    Checkpoint {
        name: "gpt2-medium",
        repo: "openai-community/gpt2-medium",
        pinned: None,
    },
    Checkpoint {
        name: "gpt2-large",
        repo: "openai-community/gpt2-large",
        pinned: None,
    },
    Checkpoint {
        name: "gpt2-xl",
        repo: "openai-community/gpt2-xl",
        pinned: None,
    },
];

/// What `--init-from` names, when it is Hugging Face weights: a published checkpoint or
/// a directory holding `config.json` and `model.safetensors`. `None`: something else (a
/// run directory).
pub fn hf_source(spec: &str) -> Option<HfSource> {
    if let Some(c) = CHECKPOINTS.iter().find(|c| c.name == spec) {
        return Some(HfSource::Named(c));
    }
    let dir = Path::new(spec);
    model::hf::is_hf_dir(dir).then(|| HfSource::Dir(dir.to_path_buf()))
}

pub enum HfSource {
    Named(&'static Checkpoint),
    Dir(PathBuf),
}

impl HfSource {
    /// The local directory holding the weights, downloading a named checkpoint on first
    /// use.
    pub fn locate(&self) -> Result<PathBuf> {
        match self {
            HfSource::Dir(dir) => Ok(dir.clone()),
            HfSource::Named(c) => locate_named(c, &data::source::cache_dir()),
        }
    }
}

/// GPT-2 weights named by `--init-from` (a published name or a Hugging Face directory)
/// and the tokenizer that goes with them: GPT-2's BPE, which needs GPT-2's vocabulary.
pub fn load_for_sampling<B: burn::prelude::Backend>(
    spec: &str,
    device: &B::Device,
) -> Result<(model::Model<B>, data::TextTokenizer)> {
    let Some(source) = hf_source(spec) else {
        bail!(
            "--init-from {spec}: not gpt2, gpt2-medium, gpt2-large or gpt2-xl, nor a directory holding {CONFIG_FILE} and {WEIGHTS_FILE} (to sample from a run, use --run DIR)"
        )
    };
    let dir = source.locate()?;
    let (gpt, config) = model::hf::load_gpt2::<B>(&dir, device)
        .with_context(|| format!("loading {}", dir.display()))?;
    if config.vocab_size != data::tokenizer::GPT2_VOCAB_SIZE {
        bail!(
            "{} has vocab_size {}, not GPT-2's {}: its tokens are not GPT-2's BPE (sample an exported character model from its run with --run)",
            dir.display(),
            config.vocab_size,
            data::tokenizer::GPT2_VOCAB_SIZE
        );
    }
    Ok((model::Model::Gpt(gpt), data::TextTokenizer::gpt2()))
}

/// The hub (or a mirror of it): `$BURNGPT_HF_ENDPOINT`, else huggingface.co.
fn endpoint() -> String {
    std::env::var("BURNGPT_HF_ENDPOINT")
        .unwrap_or_else(|_| "https://huggingface.co".into())
        .trim_end_matches('/')
        .to_string()
}

/// `<cache>/huggingface/<name>/` with a verified `model.safetensors` and its
/// `config.json`, downloading the weights if needed.
pub fn locate_named(c: &Checkpoint, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("huggingface").join(c.name);
    let weights = dir.join(WEIGHTS_FILE);
    let url = format!("{}/{}/resolve/main/{WEIGHTS_FILE}", endpoint(), c.repo);
    if weights.exists() {
        let expected = match c.pinned {
            Some((sha, size)) => Expected {
                sha256: sha.into(),
                size,
            },
            None => Expected::read_beside(&weights)?,
        };
        expected.verify(&weights)?;
    } else {
        download(c, &url, &weights).map_err(|e| {
            anyhow::anyhow!(
                "cannot get {}'s weights from {url}: {e:#}. Offline? Put Hugging Face's config.json and model.safetensors for it in a directory and pass that: --init-from DIR",
                c.name
            )
        })?;
    }
    let config = HfGpt2Config::named(c.name).expect("every listed checkpoint has a shape");
    let json = serde_json::to_string_pretty(&config.to_json(
        0.1,
        serde_json::json!({"bos_token_id": 50256, "eos_token_id": 50256}),
    ))?;
    let config_path = dir.join(CONFIG_FILE);
    if std::fs::read_to_string(&config_path).ok().as_deref() != Some(json.as_str()) {
        data::files::write_atomically(&config_path, json.as_bytes())
            .with_context(|| format!("writing {}", config_path.display()))?;
    }
    Ok(dir)
}

/// The sha256 and size a weights file must have.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub sha256: String,
    pub size: u64,
}

impl Expected {
    fn sidecar(weights: &Path) -> PathBuf {
        weights.with_extension("safetensors.sha256")
    }

    /// What a download recorded for an unpinned checkpoint: "<sha256> <size>".
    fn read_beside(weights: &Path) -> Result<Self> {
        let path = Self::sidecar(weights);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} has no record of its checksum ({}): delete it to download it again",
                weights.display(),
                path.display()
            )
        })?;
        let mut parts = text.split_whitespace();
        match (parts.next(), parts.next().and_then(|s| s.parse().ok())) {
            (Some(sha), Some(size)) if is_sha256(sha) => Ok(Self {
                sha256: sha.into(),
                size,
            }),
            _ => bail!("{} is not a checksum record", path.display()),
        }
    }

    fn verify(&self, path: &Path) -> Result<()> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let size = file.metadata()?.len();
        if size != self.size {
            bail!(
                "{} has {size} bytes, expected {}: delete it to download it again",
                path.display(),
                self.size
            );
        }
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        let digest = format!("{:x}", hasher.finalize());
        if digest != self.sha256 {
            bail!(
                "{} has sha256 {digest}, expected {}: delete it to download it again",
                path.display(),
                self.sha256
            );
        }
        Ok(())
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The sha256 and size the hub publishes for an LFS file, from a response's headers.
fn published(headers: &ureq::http::HeaderMap) -> Option<Expected> {
    let get = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()
            .map(|s| s.trim_matches('"'))
    };
    let sha256 = get("x-linked-etag")
        .filter(|s| is_sha256(s))?
        .to_ascii_lowercase();
    let size = get("x-linked-size")?.parse().ok()?;
    Some(Expected { sha256, size })
}

/// Downloads `url` to `dest` through a temporary file beside it, checking the bytes
/// against the pinned (else published) sha256 and size before renaming it into place.
pub fn download(c: &Checkpoint, url: &str, dest: &Path) -> Result<()> {
    // Redirects are followed by hand: the hub answers with a redirect to its CDN whose
    // headers carry the file's sha256 and size.
    let agent = data::files::http_agent(false);
    let mut url = url.to_string();
    let mut expected = c.pinned.map(|(sha, size)| Expected {
        sha256: sha.into(),
        size,
    });
    let mut response = None;
    for _ in 0..10 {
        let r = agent.get(&url).call()?;
        if expected.is_none() {
            expected = published(r.headers());
        }
        if r.status().is_redirection() {
            let location = r
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .context("a redirect without a Location")?;
            url = if location.starts_with('/') {
                let origin: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
                format!("{origin}{location}")
            } else {
                location.to_string()
            };
            continue;
        }
        response = Some(r);
        break;
    }
    let response = response.context("too many redirects")?;
    let Some(expected) = expected else {
        bail!(
            "the server published no sha256 for the file (X-Linked-Etag), so it cannot be checked"
        )
    };
    let (file, got) =
        data::files::save_download(response.into_body().into_reader(), expected.size, dest)
            .map_err(anyhow::Error::msg)?;
    if got.bytes != expected.size {
        bail!("got {} bytes, expected {}", got.bytes, expected.size);
    }
    if got.sha256 != expected.sha256 {
        bail!("got sha256 {}, expected {}", got.sha256, expected.sha256);
    }
    if c.pinned.is_none() {
        let sidecar = Expected::sidecar(dest);
        data::files::write_atomically(
            &sidecar,
            format!("{} {}\n", expected.sha256, expected.size).as_bytes(),
        )
        .with_context(|| format!("writing {}", sidecar.display()))?;
    }
    file.commit()
        .with_context(|| format!("writing {}", dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};
    use std::net::TcpListener;

    /// A one-thread HTTP server on 127.0.0.1 answering each request with `respond(path)`:
    /// (status, extra headers, body). Returns its base URL.
    fn serve(
        respond: impl Fn(&str) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + 'static,
    ) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                        break;
                    }
                }
                let (status, headers, body) = respond(&path);
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        base
    }

    fn sha(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    static UNPINNED: Checkpoint = Checkpoint {
        name: "gpt2-medium",
        repo: "openai-community/gpt2-medium",
        pinned: None,
    };

    /// First use downloads (following the hub's redirect, checking its published sha256),
    /// caches with a checksum record and writes config.json; later uses read the cache;
    /// a cached file that changed is refused.
    #[test]
    fn download_follows_the_redirect_checks_and_caches() {
        let weights = b"pretend these are GPT-2's weights".to_vec();
        let (digest, size) = (sha(&weights), weights.len());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let body = weights.clone();
        let base = serve(move |path| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if path.ends_with("/resolve/main/model.safetensors") {
                let headers = vec![
                    ("location".into(), "/cdn/blob".into()),
                    ("x-linked-etag".into(), format!("\"{digest}\"")),
                    ("x-linked-size".into(), size.to_string()),
                ];
                (302, headers, Vec::new())
            } else if path == "/cdn/blob" {
                (200, Vec::new(), body.clone())
            } else {
                (404, Vec::new(), Vec::new())
            }
        });
        let cache = tempdir("download");
        let url = format!("{base}/openai-community/gpt2-medium/resolve/main/model.safetensors");
        let dest = cache.join("huggingface/gpt2-medium").join(WEIGHTS_FILE);
        download(&UNPINNED, &url, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), weights);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
        let recorded = Expected::read_beside(&dest).unwrap();
        assert_eq!(recorded.size, weights.len() as u64);
        recorded.verify(&dest).unwrap();
        // Through locate_named: the cache answers, no request; config.json is written.
        unsafe { std::env::set_var("BURNGPT_HF_ENDPOINT", "http://127.0.0.1:9") };
        let dir = locate_named(&UNPINNED, &cache).unwrap();
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
        let config = model::hf::read_config(&dir).unwrap();
        assert_eq!((config.n_layer, config.n_embd), (24, 1024));
        // A cached file that changed is refused before use.
        std::fs::write(&dest, b"pretend these are GPT-2's weightz").unwrap();
        let err = format!("{:#}", locate_named(&UNPINNED, &cache).unwrap_err());
        assert!(err.contains("sha256") && err.contains("delete it"), "{err}");
        let _ = std::fs::remove_dir_all(&cache);
    }

    /// Wrong bytes, a short body, no published checksum or an HTTP error: an error, and
    /// nothing in the cache.
    #[test]
    fn bad_downloads_cache_nothing() {
        let pinned = Checkpoint {
            name: "gpt2",
            repo: "openai-community/gpt2",
            pinned: Some(("0".repeat(64).leak(), 4)),
        };
        let base = serve(|path| match path {
            "/wrong" => (200, Vec::new(), b"abcd".to_vec()),
            "/short" => (200, Vec::new(), b"ab".to_vec()),
            _ => (404, Vec::new(), Vec::new()),
        });
        let cache = tempdir("bad");
        let dest = cache.join("m").join(WEIGHTS_FILE);
        for (c, path, words) in [
            (&pinned, "/wrong", "sha256"),
            (&pinned, "/short", "2 bytes"),
            (&UNPINNED, "/wrong", "published no sha256"),
            (&pinned, "/missing", "404"),
        ] {
            let err = format!(
                "{:#}",
                download(c, &format!("{base}{path}"), &dest).unwrap_err()
            );
            assert!(err.contains(words), "{path}: {err}");
            let left: Vec<_> = std::fs::read_dir(cache.join("m"))
                .map(|d| d.collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{path} left {left:?}");
        }
        let _ = std::fs::remove_dir_all(&cache);
    }

    /// Without a network the error names the flag that takes a local directory.
    #[test]
    fn offline_error_names_the_local_directory_flag() {
        let cache = tempdir("offline");
        unsafe { std::env::set_var("BURNGPT_HF_ENDPOINT", "http://127.0.0.1:9") };
        let c = CHECKPOINTS.iter().find(|c| c.name == "gpt2-xl").unwrap();
        let err = format!("{:#}", locate_named(c, &cache).unwrap_err());
        assert!(
            err.contains("--init-from DIR") && err.contains("gpt2-xl"),
            "{err}"
        );
        assert!(
            !cache
                .join("huggingface/gpt2-xl")
                .join(WEIGHTS_FILE)
                .exists()
        );
        let _ = std::fs::remove_dir_all(&cache);
    }

    #[test]
    fn names_and_directories_are_told_apart() {
        assert!(matches!(hf_source("gpt2-large"), Some(HfSource::Named(_))));
        assert!(hf_source("runs/shakespeare_char_cpu").is_none());
        let fixture = model::hf::gpt2_fixture_dir();
        assert!(matches!(
            hf_source(fixture.to_str().unwrap()),
            Some(HfSource::Dir(_))
        ));
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "burngpt-pretrained-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
