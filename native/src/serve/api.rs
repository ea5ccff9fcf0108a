//! The OpenAI request shapes `strata serve` accepts, read field by field so that a wrong
//! value is a 400 naming the field (`param`) the way OpenAI's API names it, and the error
//! body every failure answers with: `{"error": {"message", "type", "param", "code"}}`.

use serde_json::{json, Map, Value};
use strata::chat::Message;
use strata::sampler::{SamplerConfig, MAX_TOP_LOGPROBS};

/// A request the server refuses, with the HTTP status and OpenAI's error fields.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `server_error`, ...
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError { status: 400, message: message.into(), kind: "invalid_request_error", param: Some(param.into()), code: None }
    }

    pub fn new(status: u16, kind: &'static str, code: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

/// What a completion request asks for, whichever endpoint it came through.
#[derive(Clone, Debug)]
pub struct Ask {
    pub prompt: Prompt,
    pub max_tokens: Option<usize>,
    pub sampler: SamplerConfig,
    /// Texts that end the completion where they first appear (never sent).
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// Report each sampled token's log-probability and this many alternatives'.
    pub logprobs: Option<usize>,
}

#[derive(Clone, Debug)]
pub enum Prompt {
    Text(String),
    /// Token ids as given (`/v1/completions`' `prompt` as a list of integers): no BOS added.
    Tokens(Vec<u32>),
    Chat(Vec<Message>),
}

/// Which endpoint: the response's `object` and its text's place differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completion,
}

/// The request body as a JSON object (anything else: 400).
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid("body", format!("the request body is not valid JSON: {e}")))?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::invalid("body", format!("the request body must be a JSON object, not {}", type_name(&other)))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(param: &str, want: &str, got: &Value) -> ApiError {
    ApiError::invalid(param, format!("'{param}': expected {want}, got {}", type_name(got)))
}

/// A field that may be absent or null.
fn field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn number(m: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match field(m, key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| wrong(key, "a number", v)),
    }
}

fn count(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match field(m, key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| wrong(key, "a non-negative integer", v)),
    }
}

fn boolean(m: &Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match field(m, key) {
        None => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| wrong(key, "a boolean", v)),
    }
}

/// `model`: when given, it must name the model this server holds (its id or file name).
pub fn check_model(m: &Map<String, Value>, ids: &[String]) -> Result<(), ApiError> {
    match field(m, "model") {
        None => Ok(()),
        Some(Value::String(s)) if ids.iter().any(|id| id == s) => Ok(()),
        Some(Value::String(s)) => Err(ApiError::invalid("model", format!("the model '{s}' does not exist: this server serves '{}'", ids[0])).with_code("model_not_found")),
        Some(v) => Err(wrong("model", "a string", v)),
    }
}

/// `/v1/chat/completions` or `/v1/completions`.
pub fn ask(kind: Kind, m: &Map<String, Value>) -> Result<Ask, ApiError> {
    let prompt = match kind {
        Kind::Chat => Prompt::Chat(messages(m)?),
        Kind::Completion => match field(m, "prompt") {
            Some(Value::String(s)) => Prompt::Text(s.clone()),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => Prompt::Text(a[0].as_str().unwrap_or_default().to_owned()),
            Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_number) => {
                let ids = a.iter().map(|v| v.as_u64().and_then(|id| u32::try_from(id).ok())).collect::<Option<Vec<u32>>>();
                Prompt::Tokens(ids.ok_or_else(|| ApiError::invalid("prompt", "'prompt': token ids must be integers from 0 to 2^32 - 1"))?)
            }
            Some(Value::Array(_)) => return Err(ApiError::invalid("prompt", "'prompt': one string, a list of one string, or a list of token ids: several prompts per request are not supported")),
            Some(v) => return Err(wrong("prompt", "a string", v)),
            None => return Err(ApiError::invalid("prompt", "'prompt' is required")),
        },
    };
    if let Some(n) = count(m, "n")? {
        if n != 1 {
            return Err(ApiError::invalid("n", format!("'n' = {n}: only 1 choice per request is supported")));
        }
    }
    // `max_completion_tokens` is the newer name of `max_tokens`.
    let max_tokens = match count(m, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => count(m, "max_tokens")?,
    }
    .map(|n| n as usize);
    let mut sampler = SamplerConfig::default();
    if let Some(t) = number(m, "temperature")? {
        sampler.temperature = t as f32;
    }
    if let Some(p) = number(m, "top_p")? {
        sampler.top_p = p as f32;
    }
    // llama-server's extensions, which its clients send.
    if let Some(k) = count(m, "top_k")? {
        sampler.top_k = k as usize;
    }
    if let Some(p) = number(m, "min_p")? {
        sampler.min_p = p as f32;
    }
    if let Some(p) = number(m, "repeat_penalty")? {
        sampler.repetition_penalty = p as f32;
    }
    if let Some(seed) = field(m, "seed") {
        // OpenAI's seed is any integer; a negative one is taken as its two's complement.
        sampler.seed = seed.as_u64().or_else(|| seed.as_i64().map(|s| s as u64)).ok_or_else(|| wrong("seed", "an integer", seed))?;
    }
    if let Some(p) = number(m, "presence_penalty")? {
        sampler.presence_penalty = p as f32;
    }
    if let Some(p) = number(m, "frequency_penalty")? {
        sampler.frequency_penalty = p as f32;
    }
    sampler.validate().map_err(|e| {
        use strata::settings::Setting;
        let param = match e.setting {
            Setting::Temperature => "temperature",
            Setting::TopP => "top_p",
            Setting::MinP => "min_p",
            Setting::RepetitionPenalty => "repeat_penalty",
            Setting::PresencePenalty => "presence_penalty",
            Setting::FrequencyPenalty => "frequency_penalty",
            Setting::Context | Setting::MaxMemory => "body",
        };
        ApiError::invalid(param, format!("'{param}' = {}: expected {}", e.value, e.expected))
    })?;
    let logprobs = logprobs(kind, m)?;
    let stop = match field(m, "stop") {
        None => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().map(|s| s.as_str().map(str::to_owned).ok_or_else(|| wrong("stop", "a string or a list of strings", s))).collect::<Result<_, _>>()?,
        Some(v) => return Err(wrong("stop", "a string or a list of strings", v)),
    };
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "'stop': up to 4 non-empty strings"));
    }
    let stream = boolean(m, "stream")?;
    let include_usage = match field(m, "stream_options") {
        None => false,
        Some(Value::Object(o)) => boolean(o, "include_usage").map_err(|mut e| {
            e.param = Some("stream_options.include_usage".into());
            e
        })?,
        Some(v) => return Err(wrong("stream_options", "an object", v)),
    };
    Ok(Ask { prompt, max_tokens, sampler, stop, stream, include_usage, logprobs })
}

/// Chat: `logprobs` (a boolean) and `top_logprobs` (0..=20, only with `logprobs`).
/// Completions: `logprobs` is the number of alternatives (0..=20; OpenAI allows 5).
fn logprobs(kind: Kind, m: &Map<String, Value>) -> Result<Option<usize>, ApiError> {
    let limit = |param: &str, n: u64| {
        if n as usize > MAX_TOP_LOGPROBS {
            Err(ApiError::invalid(param, format!("'{param}' = {n}: expected 0 to {MAX_TOP_LOGPROBS}")))
        } else {
            Ok(n as usize)
        }
    };
    match kind {
        Kind::Chat => {
            let top = count(m, "top_logprobs")?.map(|n| limit("top_logprobs", n)).transpose()?;
            match (boolean(m, "logprobs")?, top) {
                (true, top) => Ok(Some(top.unwrap_or(0))),
                (false, Some(_)) => Err(ApiError::invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true")),
                (false, None) => Ok(None),
            }
        }
        Kind::Completion => count(m, "logprobs")?.map(|n| limit("logprobs", n)).transpose(),
    }
}

/// `messages`: roles and text contents (a string, or a list of text parts).
fn messages(m: &Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let list = match field(m, "messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(ApiError::invalid("messages", "'messages' is empty")),
        Some(v) => return Err(wrong("messages", "an array", v)),
        None => return Err(ApiError::invalid("messages", "'messages' is required")),
    };
    list.iter()
        .enumerate()
        .map(|(i, msg)| {
            let at = |what: &str| format!("messages[{i}].{what}");
            let o = msg.as_object().ok_or_else(|| wrong(&format!("messages[{i}]"), "an object", msg))?;
            let role = match o.get("role") {
                Some(Value::String(r)) if ["system", "developer", "user", "assistant", "tool"].contains(&r.as_str()) => if r == "developer" { "system" } else { r.as_str() },
                Some(Value::String(r)) => return Err(ApiError::invalid(&at("role"), format!("'{}' = '{r}': expected system, developer, user, assistant or tool", at("role")))),
                Some(v) => return Err(wrong(&at("role"), "a string", v)),
                None => return Err(ApiError::invalid(&at("role"), format!("'{}' is required", at("role")))),
            };
            let content = match o.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                            (Some("text"), Some(t)) => text.push_str(t),
                            _ => return Err(ApiError::invalid(&format!("messages[{i}].content[{j}]"), "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported")),
                        }
                    }
                    text
                }
                Some(v) => return Err(wrong(&at("content"), "a string or a list of content parts", v)),
            };
            Ok(Message::new(role, &content))
        })
        .collect()
}

/// Why a completion ended, as OpenAI names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, or the slot's context is full.
    Length,
}

impl Finish {
    pub fn name(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Token counts of a finished completion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: usize,
    pub completion: usize,
    /// Prompt tokens whose K/V the slot already held (not recomputed).
    pub cached: usize,
}

impl Usage {
    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        })
    }
}

/// One token as `logprobs` name it.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// Its text; where it holds only part of a character, that part replaced (U+FFFD).
    pub text: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// A sampled token and the most likely alternatives at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub chosen: Piece,
    pub top: Vec<Piece>,
}

/// `logprobs` of a choice for `tokens`. Chat: `{"content": [{token, logprob, bytes,
/// top_logprobs}]}`. Completions (OpenAI's legacy shape): parallel `tokens`,
/// `token_logprobs`, `top_logprobs` (text -> logprob) and `text_offset` (characters from
/// the completion's start; `offset` is where these tokens start, and is moved past them).
pub fn logprobs_json(kind: Kind, tokens: &[TokenLogprob], offset: &mut usize) -> Value {
    let start = *offset;
    *offset += tokens.iter().map(|t| t.chosen.text.chars().count()).sum::<usize>();
    match kind {
        Kind::Chat => {
            let piece = |p: &Piece| json!({"token": p.text, "logprob": p.logprob, "bytes": p.bytes});
            let content: Vec<Value> = tokens
                .iter()
                .map(|t| {
                    let mut v = piece(&t.chosen);
                    v["top_logprobs"] = t.top.iter().map(piece).collect();
                    v
                })
                .collect();
            json!({"content": content, "refusal": null})
        }
        Kind::Completion => {
            let mut at = start;
            let text_offset: Vec<usize> = tokens
                .iter()
                .map(|t| {
                    let here = at;
                    at += t.chosen.text.chars().count();
                    here
                })
                .collect();
            json!({
                "tokens": tokens.iter().map(|t| t.chosen.text.clone()).collect::<Vec<_>>(),
                "token_logprobs": tokens.iter().map(|t| t.chosen.logprob).collect::<Vec<_>>(),
                "top_logprobs": tokens.iter().map(|t| t.top.iter().map(|p| (p.text.clone(), json!(p.logprob))).collect::<Map<_, _>>()).collect::<Vec<_>>(),
                "text_offset": text_offset,
            })
        }
    }
}

/// A whole (non-streamed) response; `logprobs` from [`logprobs_json`] when asked for.
pub fn response(kind: Kind, id: &str, created: u64, model: &str, text: &str, finish: Finish, usage: Usage, logprobs: Option<Value>) -> Value {
    let choice = match kind {
        Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs, "finish_reason": finish.name()}),
        Kind::Completion => json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish.name()}),
    };
    let object = match kind {
        Kind::Chat => "chat.completion",
        Kind::Completion => "text_completion",
    };
    json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice], "usage": usage.json()})
}

/// One streamed chunk: the role opener (`role`), a piece of text (with its tokens'
/// `logprobs` when asked for), or the end (`finish`).
pub fn chunk(kind: Kind, id: &str, created: u64, model: &str, role: bool, text: Option<&str>, logprobs: Option<Value>, finish: Option<Finish>) -> Value {
    let finish = finish.map(Finish::name);
    let choice = match kind {
        Kind::Chat => {
            let mut delta = Map::new();
            if role {
                delta.insert("role".into(), "assistant".into());
                delta.insert("content".into(), "".into());
            }
            if let Some(t) = text {
                delta.insert("content".into(), t.into());
            }
            json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
        }
        Kind::Completion => json!({"index": 0, "text": text.unwrap_or(""), "logprobs": logprobs, "finish_reason": finish}),
    };
    let object = match kind {
        Kind::Chat => "chat.completion.chunk",
        Kind::Completion => "text_completion",
    };
    json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]})
}

/// The usage chunk `stream_options.include_usage` asks for: no choices.
pub fn usage_chunk(kind: Kind, id: &str, created: u64, model: &str, usage: Usage) -> Value {
    let object = match kind {
        Kind::Chat => "chat.completion.chunk",
        Kind::Completion => "text_completion",
    };
    json!({"id": id, "object": object, "created": created, "model": model, "choices": [], "usage": usage.json()})
}
