//! `gpt serve`: a run behind an OpenAI-compatible HTTP API and a web page, as llama.cpp's
//! server, vLLM and Ollama serve theirs, so that any OpenAI client or chat front end works
//! against it.
//!
//! - `GET /health`, `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions`
//!   (a chat run's; messages go through the one chat template), `POST /v1/attention` (the
//!   page's attention maps), `GET /` (the page, compiled in).
//! - Answers in OpenAI's shapes, streamed as server-sent events with `stream: true`
//!   (`data: [DONE]` last); errors are OpenAI error objects with their status.
//! - Requests wait in a bounded queue for the model workers (`worker.rs`), which decode up
//!   to `--batch` of them together; a full queue is 503 with `Retry-After`. A client that
//!   disconnects stops its generation.
//! - Loopback by default; a key (`--api-key`) makes every `/v1/` request need
//!   `Authorization: Bearer KEY`. SIGTERM or Ctrl-C stops accepting, lets the requests in
//!   flight finish, and exits 0 (a connection still sending its request does not hold it).

mod api;
mod worker;

use crate::backend::{self, Inner};
use crate::prompt::RunArg;
use anyhow::{Context, Result, bail};
use api::{ApiError, Input, Limits, Shape};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use burn::prelude::*;
use data::conversation::render;
use data::{TextTokenizer, Tokenizer};
use model::Sampling;
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use training::RunDir;
use worker::{Event, Job, Queue};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArg,
    /// Where to listen. Loopback by default; another address without --api-key warns.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Require `Authorization: Bearer KEY` on every /v1/ request.
    #[arg(long)]
    api_key: Option<String>,
    /// The largest max_tokens a request may ask for (also a chat request's default).
    #[arg(long, default_value_t = 1024)]
    max_tokens: usize,
    /// Requests that may wait for a worker; more are answered 503.
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// Model workers, each with its own copy of the model.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Requests a worker decodes together, one token for each per step (1: one request
    /// at a time).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Seconds a client has to send a request's headers, and then its body; a
    /// connection kept open with no request is closed after as long.
    #[arg(long, default_value_t = 30.0)]
    read_timeout: f64,
    /// Which weights: the final model or the checkpoint with the best val loss.
    #[arg(long, value_parser = ["final", "best"], default_value = "final")]
    weights: String,
}

/// What every request handler reads.
struct Served {
    queue: Queue,
    tokenizer: TextTokenizer,
    limits: Limits,
    api_key: Option<String>,
    /// For `/v1/attention`: the model, read on a blocking thread (never while the
    /// workers need the CPU more: it is one forward pass of at most block_size tokens).
    model: std::sync::Mutex<model::Model<Inner>>,
    device: crate::backend::Dev,
    block_size: Option<usize>,
    /// How long a request's body may take to arrive.
    read_timeout: Duration,
    next_id: AtomicU64,
}

// The CPU backend's device is Copy, a GPU backend's is not.
#[allow(clippy::clone_on_copy)]
pub fn run(args: Args, device: Option<usize>) -> Result<()> {
    if args.workers == 0 || args.batch == 0 || args.queue == 0 || args.max_tokens == 0 {
        bail!("--workers, --batch, --queue and --max-tokens must be at least 1");
    }
    let read_timeout = Duration::try_from_secs_f64(args.read_timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .with_context(|| {
            format!(
                "--read-timeout must be a number of seconds > 0, got {}",
                args.read_timeout
            )
        })?;
    let run = args.run.open()?;
    let tokenizer = run.tokenizer()?;
    if run.config()?.task().is_some() {
        bail!(
            "{} is an arithmetic run: its answers come from `gpt sample --prompt 12+34=`, not from a text API",
            run.path().display()
        );
    }
    let device = backend::device(device)?;
    let weights = args.weights.clone();
    let load = {
        let (run, device) = (RunDir::new(run.path()), device.clone());
        move || crate::sample::load_weights::<Inner>(&run, &weights, &device)
    };
    let model = load()?;
    let block_size = model::LanguageModel::<Inner>::context_size(&model);
    let (queue, workers) = worker::start(
        args.workers,
        args.batch,
        args.queue,
        tokenizer.clone(),
        load,
        device.clone(),
    )?;
    let name = run
        .path()
        .file_name()
        .map_or("model".into(), |n| n.to_string_lossy().into_owned());
    let served = Arc::new(Served {
        queue,
        tokenizer,
        limits: Limits {
            model: name,
            max_tokens: args.max_tokens,
        },
        api_key: args.api_key.clone(),
        model: std::sync::Mutex::new(model),
        device,
        block_size,
        read_timeout,
        next_id: AtomicU64::new(1),
    });
    if !args.addr.ip().is_loopback() && args.api_key.is_none() {
        eprintln!(
            "warning: serving on {} without --api-key: anyone who can reach it can use the model",
            args.addr
        );
    }
    let app = Router::new()
        .route("/", get(|| async { Html(include_str!("page.html")) }))
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/attention", post(attention))
        .fallback(unknown)
        .method_not_allowed_fallback(
            |method: Method| async move { error(&method_not_allowed(&method)) },
        )
        .layer(DefaultBodyLimit::disable())
        .with_state((served.clone(), args.max_body_bytes));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let pending = served.queue.pending();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "serving {} on http://{addr}/ (OpenAI API under /v1/; Ctrl-C stops)",
            run.path().display()
        );
        accept(listener, app, read_timeout, shutdown()).await;
        // Stopping, the server waits for the answers in flight, which are the model's
        // jobs: once none is left, a connection still sending its request does not hold
        // the exit.
        tokio::task::spawn_blocking(move || wait_drained(&pending)).await?;
        anyhow::Ok(())
    })?;
    // The HTTP side is done (dropping the runtime closes the connections still open):
    // the workers finish their jobs and end with the queue.
    drop(runtime);
    drop(served);
    for w in workers {
        let _ = w.join();
    }
    eprintln!("stopped");
    Ok(())
}

/// Serves the connections `listener` accepts until `stop` resolves, then accepts no
/// more; the connections open finish the request they are on, then close. Each has
/// `read_timeout` to send a request's headers (counted from the connection's start or
/// the end of its last answer), so a client that trickles them in, or keeps an idle
/// connection open, does not hold its socket for ever.
async fn accept(
    listener: tokio::net::TcpListener,
    app: Router,
    read_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let (closing, _) = tokio::sync::watch::channel(());
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, or a connection reset before it was taken:
                // the listener itself is fine.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut closed = closing.subscribe();
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(read_timeout);
            let io = hyper_util::rt::TokioIo::new(stream);
            let mut connection = std::pin::pin!(http.serve_connection(io, service));
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closed.changed() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    // Dropping the sender tells every connection.
    drop(closing);
}

/// Returns once no job has been pending for a second (time for the last answers to be
/// written).
fn wait_drained(pending: &AtomicUsize) {
    let mut quiet_since = None;
    loop {
        if pending.load(Ordering::SeqCst) == 0 {
            let since = *quiet_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= std::time::Duration::from_secs(1) {
                return;
            }
        } else {
            quiet_since = None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    eprintln!("stopping: no new requests; finishing those in flight");
}

type AppState = State<(Arc<Served>, usize)>;

fn error(e: &ApiError) -> Response {
    (e.status, axum::Json(e.body())).into_response()
}

fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message:
            "no such endpoint: see GET /v1/models, POST /v1/completions, POST /v1/chat/completions"
                .into(),
        kind: "invalid_request_error",
        param: None,
    }
}

/// A known path asked with a method it does not take (axum adds the `Allow` header).
fn method_not_allowed(method: &Method) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("this endpoint does not take {method} requests: see its Allow header"),
        kind: "invalid_request_error",
        param: None,
    }
}

/// The key check, then the body read within its limit.
async fn admit(
    served: &Served,
    limit: usize,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    if let Some(key) = &served.api_key {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: "a valid API key is needed: send Authorization: Bearer KEY".into(),
                kind: "authentication_error",
                param: None,
            });
        }
    }
    let read = tokio::time::timeout(served.read_timeout, axum::body::to_bytes(body, limit));
    let Ok(body) = read.await else {
        return Err(ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "the request body did not arrive within this server's {} s",
                served.read_timeout.as_secs_f64()
            ),
            kind: "invalid_request_error",
            param: None,
        });
    };
    body.map_err(|_| ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("the request body is larger than this server's limit of {limit} bytes"),
        kind: "invalid_request_error",
        param: None,
    })
}

/// A path no route serves: 404, after the key check under `/v1/`, so that a client without
/// the key learns nothing of which endpoints exist there.
async fn unknown(
    State((served, limit)): AppState,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if uri.path().starts_with("/v1/")
        && let Err(e) = admit(&served, limit, &headers, body).await
    {
        return error(&e);
    }
    error(&not_found())
}

async fn models(State((served, limit)): AppState, headers: HeaderMap, body: Body) -> Response {
    if let Err(e) = admit(&served, limit, &headers, body).await {
        return error(&e);
    }
    axum::Json(json!({"object": "list", "data": [{
        "id": served.limits.model,
        "object": "model",
        "created": 0,
        "owned_by": "burngpt",
        "chat": served.tokenizer.is_chat(),
    }]}))
    .into_response()
}

async fn completions(State((served, limit)): AppState, headers: HeaderMap, body: Body) -> Response {
    respond(&served, limit, &headers, body, false)
        .await
        .unwrap_or_else(|e| error(&e))
}

async fn chat_completions(
    State((served, limit)): AppState,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(&served, limit, &headers, body, true)
        .await
        .unwrap_or_else(|e| error(&e))
}

/// Checks, tokenizes and queues a request, then answers it whole or as a stream.
async fn respond(
    served: &Arc<Served>,
    limit: usize,
    headers: &HeaderMap,
    body: Body,
    chat: bool,
) -> Result<Response, ApiError> {
    let body = admit(served, limit, headers, body).await?;
    let limits = &served.limits;
    let request = if chat {
        if !served.tokenizer.is_chat() {
            return Err(ApiError::invalid(
                format!(
                    "{} is not a chat model (its tokenizer has no chat tokens): use /v1/completions, or finetune it on conversations",
                    limits.model
                ),
                Some("messages"),
            ));
        }
        api::chat(&body, limits)?
    } else {
        api::completion(&body, limits)?
    };
    let tokenizer = &served.tokenizer;
    let prompt = match &request.input {
        Input::Prompt(text) => tokenizer.encode(text),
        Input::Messages(messages) => render(messages, tokenizer).map(|r| r.ids),
    }
    .map_err(|e| {
        ApiError::invalid(
            format!("the prompt cannot be written in this model's vocabulary: {e}"),
            Some(if chat { "messages" } else { "prompt" }),
        )
    })?;
    let sampling = Sampling {
        max_new_tokens: request.max_tokens,
        temperature: request.temperature.unwrap_or(1.0),
        top_k: if request.temperature.is_none() {
            Some(1)
        } else {
            request.top_k
        },
        seed: request.seed.unwrap_or_else(rand::random),
        kv_cache: true,
    };
    let prompt_tokens = prompt.len();
    let (events, mut rx) = mpsc::channel(worker::EVENTS);
    let job = Job {
        prompt,
        sampling,
        stop: request.stop.clone(),
        events,
    };
    if !served.queue.offer(job) {
        let e = ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the server is busy: every worker and queue place is taken; retry shortly"
                .into(),
            kind: "server_error",
            param: None,
        };
        let mut response = error(&e);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(response);
    }
    let prefix = if chat { "chatcmpl" } else { "cmpl" };
    let id = format!(
        "{prefix}-{}",
        served.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let model = limits.model.clone();
    if !request.stream {
        let mut text = String::new();
        while let Some(event) = rx.recv().await {
            match event {
                Event::Text(t) => text.push_str(&t),
                Event::Done {
                    reason,
                    completion_tokens,
                } => {
                    let shape = Shape {
                        chat,
                        id: &id,
                        created,
                        model: &model,
                    };
                    let usage = api::usage(prompt_tokens, completion_tokens);
                    return Ok(axum::Json(shape.response(&text, reason, usage)).into_response());
                }
                Event::Failed(e) => return Err(internal(e)),
            }
        }
        return Err(internal("the model worker stopped".into()));
    }
    let include_usage = request.include_usage;
    let stream = async_stream(rx, move |event| {
        let shape = Shape {
            chat,
            id: &id,
            created,
            model: &model,
        };
        match event {
            Streamed::Start if chat => vec![shape.role_chunk()],
            Streamed::Start => Vec::new(),
            Streamed::Event(Event::Text(t)) => vec![shape.chunk(Some(&t), None)],
            Streamed::Event(Event::Done {
                reason,
                completion_tokens,
            }) => {
                let mut chunks = vec![shape.chunk(None, Some(reason))];
                if include_usage {
                    chunks.push(shape.usage_chunk(api::usage(prompt_tokens, completion_tokens)));
                }
                chunks
            }
            Streamed::Event(Event::Failed(e)) => vec![internal(e).body()],
        }
    });
    Ok(Sse::new(stream).into_response())
}

enum Streamed {
    Start,
    Event(Event),
}

/// The SSE stream of a job's events: each mapped to JSON chunks, then `[DONE]`. Dropping
/// it (the client hung up) drops the receiver, which stops the worker's generation.
fn async_stream(
    mut rx: mpsc::Receiver<Event>,
    mut chunks: impl FnMut(Streamed) -> Vec<serde_json::Value> + Send + 'static,
) -> impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let (tx, out) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let send = |v: serde_json::Value| SseEvent::default().data(v.to_string());
        for c in chunks(Streamed::Start) {
            if tx.send(Ok(send(c))).await.is_err() {
                return;
            }
        }
        while let Some(event) = rx.recv().await {
            let last = !matches!(event, Event::Text(_));
            for c in chunks(Streamed::Event(event)) {
                if tx.send(Ok(send(c))).await.is_err() {
                    return;
                }
            }
            if last {
                break;
            }
        }
        let _ = tx.send(Ok(SseEvent::default().data("[DONE]"))).await;
    });
    tokio_stream::wrappers::ReceiverStream::new(out)
}

fn internal(message: String) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message,
        kind: "server_error",
        param: None,
    }
}

/// `POST /v1/attention {"prompt": TEXT}` (or `{"messages": […]}`, a chat run's
/// conversation through the template): the tokens and, for every layer and
/// head, each token's attention weights over the tokens before it (the numbers of
/// `gpt attention`), for the page's view.
async fn attention(State((served, limit)): AppState, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let body = admit(&served, limit, &headers, body).await?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum AttentionBody {
            Prompt(String),
            Messages(Vec<data::conversation::Message>),
        }
        let request: AttentionBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError::invalid(
                format!(
                    "the request body is not {{\"prompt\": TEXT}} or {{\"messages\": […]}}: {e}"
                ),
                None,
            )
        })?;
        let mut ids = match &request {
            AttentionBody::Prompt(text) => served.tokenizer.encode(text),
            AttentionBody::Messages(messages) => render(messages, &served.tokenizer).map(|r| r.ids),
        }
        .map_err(|e| {
            ApiError::invalid(
                format!("the prompt cannot be written in this model's vocabulary: {e}"),
                Some("prompt"),
            )
        })?;
        if ids.is_empty() {
            return Err(ApiError::invalid("prompt is empty", Some("prompt")));
        }
        // The last block_size tokens, as generation sees them.
        let window = served.block_size.unwrap_or(ids.len());
        ids.drain(..ids.len().saturating_sub(window));
        let served = served.clone();
        tokio::task::spawn_blocking(move || attention_maps(&served, &ids))
            .await
            .map_err(|e| internal(e.to_string()))?
    }
    .await;
    result.map_or_else(|e| error(&e), |v| axum::Json(v).into_response())
}

fn attention_maps(served: &Served, ids: &[u32]) -> Result<serde_json::Value, ApiError> {
    let model = served.model.lock().map_err(|e| internal(e.to_string()))?;
    let t = ids.len();
    let idx = Tensor::<Inner, 2, Int>::from_data(
        TensorData::new(
            ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(),
            [1, t],
        ),
        &served.device,
    );
    let maps = model
        .attention_maps(idx)
        .map_err(|e| ApiError::invalid(e.to_string(), None))?;
    let layers: Vec<serde_json::Value> = maps
        .into_iter()
        .map(|m| {
            let [_, heads, _, _] = m.dims();
            let v: Vec<f32> = m.into_data().convert::<f32>().to_vec().expect("f32");
            let heads: Vec<Vec<Vec<f32>>> = (0..heads)
                .map(|h| {
                    (0..t)
                        .map(|i| v[(h * t + i) * t..(h * t + i) * t + i + 1].to_vec())
                        .collect()
                })
                .collect();
            json!(heads)
        })
        .collect();
    let tokens: Vec<String> = ids
        .iter()
        .map(|&id| {
            String::from_utf8_lossy(&served.tokenizer.token_bytes(id).unwrap_or_default())
                .into_owned()
        })
        .collect();
    Ok(json!({"tokens": tokens, "layers": layers}))
}
