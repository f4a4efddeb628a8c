//! OpenAI's request and response shapes for `/v1/completions` and
//! `/v1/chat/completions`, and the checks a request passes before it is queued. Fields
//! this server does not use (`user`, `top_p` of 1, `frequency_penalty` of 0, …) are
//! accepted and ignored, as llama.cpp's server does; values it cannot honour are a 400.

use super::worker::FinishReason;
use axum::http::StatusCode;
use data::conversation::{Message, check_turns};
use serde::Deserialize;
use serde_json::{Value, json};

/// An OpenAI error object and its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, …
    pub kind: &'static str,
    pub param: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": null,
        }})
    }
}

/// A prompt: one string (OpenAI also takes a list; one string in a list is accepted).
#[derive(Deserialize)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
}

/// `stop`: one string or up to four.
#[derive(Deserialize)]
#[serde(untagged)]
enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// What both endpoints share.
#[derive(Deserialize)]
struct Common {
    model: Option<String>,
    max_tokens: Option<i64>,
    /// The newer name of `max_tokens` in chat requests.
    max_completion_tokens: Option<i64>,
    temperature: Option<f64>,
    top_k: Option<i64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    stop: Option<StopField>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    n: Option<i64>,
    /// OpenAI's, not done here: accepted only at their neutral values.
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    best_of: Option<i64>,
    echo: Option<bool>,
    logprobs: Option<Value>,
    logit_bias: Option<serde_json::Map<String, Value>>,
    suffix: Option<String>,
}

#[derive(Deserialize)]
struct CompletionBody {
    prompt: PromptField,
    #[serde(flatten)]
    common: Common,
}

#[derive(Deserialize)]
struct ChatBody {
    messages: Vec<Message>,
    #[serde(flatten)]
    common: Common,
}

/// A checked request, ready to be tokenized and queued.
#[derive(Debug)]
pub struct Request {
    pub input: Input,
    pub max_tokens: usize,
    /// `None`: greedy (temperature 0).
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

#[derive(Debug)]
pub enum Input {
    Prompt(String),
    Messages(Vec<Message>),
}

/// The server's limits and its model's name, which requests are checked against.
pub struct Limits {
    pub model: String,
    /// The largest `max_tokens` a request may ask for (`--max-tokens`).
    pub max_tokens: usize,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            format!("the request body is not a valid request: {e}"),
            None,
        )
    })
}

pub fn completion(body: &[u8], limits: &Limits) -> Result<Request, ApiError> {
    let body: CompletionBody = parse(body)?;
    let prompt = match body.prompt {
        PromptField::One(p) => p,
        PromptField::Many(mut p) if p.len() == 1 => p.remove(0),
        PromptField::Many(_) => {
            return Err(ApiError::invalid(
                "prompt must be one string (this server answers one prompt per request)",
                Some("prompt"),
            ));
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid("prompt is empty", Some("prompt")));
    }
    // OpenAI's completions default to 16 tokens.
    checked(Input::Prompt(prompt), body.common, 16, limits)
}

pub fn chat(body: &[u8], limits: &Limits) -> Result<Request, ApiError> {
    let body: ChatBody = parse(body)?;
    check_turns(&body.messages).map_err(|e| ApiError::invalid(e, Some("messages")))?;
    if body
        .messages
        .last()
        .is_some_and(|m| m.role != data::conversation::Role::User)
    {
        return Err(ApiError::invalid(
            "the last message must be the user's: it is the one answered",
            Some("messages"),
        ));
    }
    let default = limits.max_tokens;
    checked(Input::Messages(body.messages), body.common, default, limits)
}

fn checked(
    input: Input,
    c: Common,
    default_max_tokens: usize,
    limits: &Limits,
) -> Result<Request, ApiError> {
    if let Some(model) = &c.model
        && *model != limits.model
    {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "the model {model:?} does not exist: this server serves {:?} (GET /v1/models)",
                limits.model
            ),
            kind: "invalid_request_error",
            param: Some("model"),
        });
    }
    if c.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n must be 1", Some("n")));
    }
    let unsupported = [
        (
            "frequency_penalty",
            c.frequency_penalty.is_some_and(|p| p != 0.0),
        ),
        (
            "presence_penalty",
            c.presence_penalty.is_some_and(|p| p != 0.0),
        ),
        ("best_of", c.best_of.is_some_and(|n| n != 1)),
        ("echo", c.echo == Some(true)),
        (
            "logprobs",
            c.logprobs
                .as_ref()
                .is_some_and(|v| !(v.is_null() || *v == json!(false) || *v == json!(0))),
        ),
        (
            "logit_bias",
            c.logit_bias.as_ref().is_some_and(|b| !b.is_empty()),
        ),
        ("suffix", c.suffix.as_ref().is_some_and(|s| !s.is_empty())),
    ];
    if let Some(&(name, _)) = unsupported.iter().find(|(_, asked)| *asked) {
        return Err(ApiError::invalid(
            format!("{name} is not supported by this server (only its default)"),
            Some(name),
        ));
    }
    if c.top_p.is_some_and(|p| p != 1.0) {
        return Err(ApiError::invalid(
            "top_p is not supported (only 1); use top_k",
            Some("top_p"),
        ));
    }
    let max_tokens = match c.max_completion_tokens.or(c.max_tokens) {
        None => default_max_tokens.min(limits.max_tokens),
        Some(n) if n < 1 => {
            return Err(ApiError::invalid(
                format!("max_tokens must be at least 1, got {n}"),
                Some("max_tokens"),
            ));
        }
        Some(n) if n as u64 > limits.max_tokens as u64 => {
            return Err(ApiError::invalid(
                format!(
                    "max_tokens {n} is more than this server's limit of {}",
                    limits.max_tokens
                ),
                Some("max_tokens"),
            ));
        }
        Some(n) => n as usize,
    };
    let temperature = match c.temperature {
        None => Some(1.0),
        Some(t) if !t.is_finite() || !(0.0..=2.0).contains(&t) => {
            return Err(ApiError::invalid(
                format!("temperature must be between 0 and 2, got {t}"),
                Some("temperature"),
            ));
        }
        // Also a temperature too small for an f32: greedy, as 0 is.
        Some(t) if t as f32 == 0.0 => None,
        Some(t) => Some(t as f32),
    };
    let top_k = match c.top_k {
        None => None,
        Some(k) if k < 1 => {
            return Err(ApiError::invalid(
                format!("top_k must be at least 1, got {k}"),
                Some("top_k"),
            ));
        }
        Some(k) => Some(k as usize),
    };
    let stop = match c.stop {
        None => Vec::new(),
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(s)) => s,
    };
    if stop.len() > 4 || stop.iter().any(|s| s.is_empty()) {
        return Err(ApiError::invalid(
            "stop must be up to 4 non-empty strings",
            Some("stop"),
        ));
    }
    Ok(Request {
        input,
        max_tokens,
        temperature,
        top_k,
        seed: c.seed,
        stop,
        stream: c.stream,
        include_usage: c.stream_options.unwrap_or_default().include_usage,
    })
}

/// The response object (or a stream chunk) of either endpoint.
pub struct Shape<'a> {
    pub chat: bool,
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
}

impl Shape<'_> {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.chat, chunk) {
            (false, _) => "text_completion",
            (true, false) => "chat.completion",
            (true, true) => "chat.completion.chunk",
        }
    }

    fn wrap(&self, chunk: bool, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    /// The whole answer.
    pub fn response(&self, text: &str, reason: FinishReason, usage: Value) -> Value {
        let choice = if self.chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text},
                   "finish_reason": reason.as_str(), "logprobs": null})
        } else {
            json!({"index": 0, "text": text, "finish_reason": reason.as_str(), "logprobs": null})
        };
        let mut v = self.wrap(false, json!([choice]));
        v["usage"] = usage;
        v
    }

    /// A streamed piece of text (`reason` on the last chunk).
    pub fn chunk(&self, text: Option<&str>, reason: Option<FinishReason>) -> Value {
        let reason = reason.map(FinishReason::as_str);
        let choice = if self.chat {
            let delta = match text {
                Some(t) => json!({"content": t}),
                None => json!({}),
            };
            json!({"index": 0, "delta": delta, "finish_reason": reason, "logprobs": null})
        } else {
            json!({"index": 0, "text": text.unwrap_or(""), "finish_reason": reason, "logprobs": null})
        };
        self.wrap(true, json!([choice]))
    }

    /// A chat stream's first chunk: the assistant's role.
    pub fn role_chunk(&self) -> Value {
        let choice = json!({"index": 0, "delta": {"role": "assistant", "content": ""},
                            "finish_reason": null, "logprobs": null});
        self.wrap(true, json!([choice]))
    }

    /// `stream_options.include_usage`'s last chunk: no choices, the usage.
    pub fn usage_chunk(&self, usage: Value) -> Value {
        let mut v = self.wrap(true, json!([]));
        v["usage"] = usage;
        v
    }
}

pub fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            model: "m".into(),
            max_tokens: 100,
        }
    }

    #[test]
    fn requests_are_checked_before_they_are_queued() {
        let ok = completion(
            br#"{"prompt":"hi","max_tokens":5,"temperature":0}"#,
            &limits(),
        )
        .unwrap();
        assert_eq!((ok.max_tokens, ok.temperature), (5, None));
        let ok = completion(br#"{"prompt":["hi"],"stop":"x","model":"m"}"#, &limits()).unwrap();
        assert_eq!((ok.max_tokens, ok.stop), (16, vec!["x".to_string()]));
        let bad = |body: &str| completion(body.as_bytes(), &limits()).unwrap_err();
        for (body, why) in [
            ("{", "not a valid request"),
            (r#"{"prompt": 3}"#, "not a valid request"),
            (r#"{"max_tokens": 3}"#, "missing field `prompt`"),
            (r#"{"prompt":""}"#, "prompt is empty"),
            (r#"{"prompt":"a","max_tokens":-1}"#, "at least 1"),
            (r#"{"prompt":"a","max_tokens":1000}"#, "limit of 100"),
            (r#"{"prompt":"a","max_tokens":"5"}"#, "not a valid request"),
            (r#"{"prompt":"a","temperature":-1}"#, "between 0 and 2"),
            (r#"{"prompt":"a","top_k":0}"#, "top_k"),
            (r#"{"prompt":"a","n":2}"#, "n must be 1"),
            (r#"{"prompt":"a","stop":["","x"]}"#, "stop"),
        ] {
            let e = bad(body);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(e.message.contains(why), "{body}: {}", e.message);
        }
        assert_eq!(
            bad(r#"{"prompt":"a","model":"gpt-4"}"#).status,
            StatusCode::NOT_FOUND
        );
        let e = chat(
            br#"{"messages":[{"role":"assistant","content":"x"}]}"#,
            &limits(),
        )
        .unwrap_err();
        assert!(e.message.contains("message 1"), "{}", e.message);
        let e = chat(
            br#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}"#,
            &limits(),
        )
        .unwrap_err();
        assert!(e.message.contains("last message"), "{}", e.message);
    }
}
