//! `strata serve`: an OpenAI-compatible HTTP server (the shape llama-server, ollama and vLLM
//! expose, so unmodified OpenAI clients work). The HTTP side (axum on tokio) reads and checks
//! requests and writes responses; one thread owns the engine and batches every running
//! request into each forward pass (`scheduler.rs`). They talk by messages, so a slow client
//! never holds the engine and a failing request never takes the server down.

pub mod api;
pub mod metrics;
pub mod scheduler;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use api::{ApiError, Kind};
use scheduler::{Event, Job, Msg, Options, Shared, Worker};

/// What `strata serve` was asked for besides the model.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    pub slots: usize,
    /// KV-cache positions of all slots together (each gets `context / slots`), as
    /// llama-server's `-c` with `-np`.
    pub context: usize,
    pub queue: usize,
    pub api_key: Option<String>,
    pub max_body: usize,
    pub batch_tokens: usize,
    /// The id `/v1/models` lists; requests may name it or the model's file name.
    pub model_id: String,
    pub model_names: Vec<String>,
}

struct App {
    tx: mpsc::UnboundedSender<Msg>,
    shared: Arc<Shared>,
    opts: ServeOptions,
    created: u64,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(e.body())).into_response()
}

fn gone() -> ApiError {
    ApiError::new(503, "server_error", None, "the engine has stopped")
}

/// Why the server could not start or stopped early (a request's failure is an
/// [`ApiError`] answer, never this).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot {what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl ServeError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
        let what = what.into();
        move |source| ServeError::Io { what, source }
    }
}

/// Binds, then loads the model on the engine's thread (`load` runs there: `/health`
/// answers 503 until it is done; a load that fails ends the process with its error) and
/// serves until SIGTERM or Ctrl-C, letting the requests in flight finish.
pub fn serve<E: std::fmt::Display>(opts: ServeOptions, load: impl FnOnce(Worker) -> Result<(), E> + Send + 'static) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(ServeError::io("start the server's runtime"))?;
    rt.block_on(async move {
        let addr = format!("{}:{}", opts.host, opts.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(ServeError::io(format!("listen on {addr}")))?;
        let local: SocketAddr = listener.local_addr().map_err(ServeError::io("read the listening address"))?;
        eprintln!("strata serve: listening on http://{local}");
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let options = Options { slots: opts.slots, context: (opts.context / opts.slots).max(1), batch_tokens: opts.batch_tokens };
        let worker = Worker { rx, shared: shared.clone(), options };
        std::thread::Builder::new()
            .name("strata-engine".into())
            .spawn(move || {
                if let Err(e) = load(worker) {
                    eprintln!("strata: {e}");
                    std::process::exit(1);
                }
            })
            .map_err(ServeError::io("start the engine's thread"))?;
        let max_body = opts.max_body;
        let app = Arc::new(App { tx, shared, opts, created: now() });
        let router = Router::new()
            .route("/health", get(health))
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat))
            .route("/v1/completions", post(completions))
            .route("/tokenize", post(tokenize))
            .route("/detokenize", post(detokenize))
            .route("/metrics", get(metrics))
            .fallback(|| async { error(ApiError::new(404, "invalid_request_error", Some("not_found"), "no such endpoint")) })
            .layer(axum::middleware::from_fn_with_state(app.clone(), auth))
            .layer(axum::middleware::from_fn_with_state(app.clone(), count))
            .layer(DefaultBodyLimit::max(max_body))
            .with_state(app);
        axum::serve(listener, router).with_graceful_shutdown(shutdown()).await.map_err(ServeError::io("serve"))?;
        eprintln!("strata serve: stopped");
        Ok(())
    })
}

async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// `--api-key`: every endpoint but `/health` wants `Authorization: Bearer KEY`.
async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(key) = &app.opts.api_key {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if req.uri().path() != "/health" && given != Some(key.as_str()) {
            return error(ApiError::new(401, "authentication_error", Some("invalid_api_key"), "a valid API key is required: send Authorization: Bearer KEY"));
        }
    }
    next.run(req).await
}

/// Counts every response by endpoint and status (`/metrics`).
async fn count(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let endpoint = match req.uri().path() {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/v1/models" => "/v1/models",
        "/health" => "/health",
        "/metrics" => "/metrics",
        "/tokenize" => "/tokenize",
        "/detokenize" => "/detokenize",
        _ => "other",
    };
    let r = next.run(req).await;
    app.shared.metrics.request(endpoint, r.status().as_u16());
    r
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let s = &app.shared;
    let text = s.metrics.text(s.queued.load(Ordering::SeqCst), s.busy.load(Ordering::SeqCst), app.opts.slots);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    if app.shared.ready.load(Ordering::SeqCst) {
        axum::Json(json!({"status": "ok"})).into_response()
    } else {
        error(ApiError::new(503, "unavailable_error", None, "loading the model"))
    }
}

async fn models(State(app): State<Arc<App>>) -> Response {
    axum::Json(json!({"object": "list", "data": [{"id": app.opts.model_id, "object": "model", "created": app.created, "owned_by": "strata"}]})).into_response()
}

/// The body as a JSON object; a body over `--max-body` is a 413.
fn body(body: Result<Bytes, BytesRejection>) -> Result<serde_json::Map<String, Value>, ApiError> {
    let bytes = body.map_err(|e| {
        let status = e.status().as_u16();
        let kind = if status == 413 { "request_too_large" } else { "invalid_request_error" };
        ApiError::new(status, kind, None, e.body_text())
    })?;
    api::object(&bytes)
}

async fn ask_engine<T>(app: &App, msg: impl FnOnce(oneshot::Sender<Result<T, ApiError>>) -> Msg) -> Result<T, ApiError> {
    if !app.shared.ready.load(Ordering::SeqCst) {
        return Err(ApiError::new(503, "unavailable_error", None, "loading the model"));
    }
    let (reply, answer) = oneshot::channel();
    app.tx.send(msg(reply)).map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}

async fn tokenize(State(app): State<Arc<App>>, b: Result<Bytes, BytesRejection>) -> Response {
    let run = async {
        let m = body(b)?;
        let text = m.get("content").and_then(Value::as_str).ok_or_else(|| ApiError::invalid("content", "'content': a string is required"))?.to_owned();
        let add_special = m.get("add_special").and_then(Value::as_bool).unwrap_or(false);
        let tokens = ask_engine(&app, |reply| Msg::Tokenize { text, add_special, reply }).await?;
        Ok::<_, ApiError>(json!({"tokens": tokens}))
    };
    run.await.map_or_else(error, |v| axum::Json(v).into_response())
}

async fn detokenize(State(app): State<Arc<App>>, b: Result<Bytes, BytesRejection>) -> Response {
    let run = async {
        let m = body(b)?;
        let bad = || ApiError::invalid("tokens", "'tokens': a list of token ids is required");
        let list = m.get("tokens").and_then(Value::as_array).ok_or_else(bad)?;
        let tokens = list.iter().map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()).ok_or_else(bad)).collect::<Result<Vec<u32>, _>>()?;
        let content = ask_engine(&app, |reply| Msg::Detokenize { tokens, reply }).await?;
        Ok::<_, ApiError>(json!({"content": content}))
    };
    run.await.map_or_else(error, |v| axum::Json(v).into_response())
}

async fn chat(State(app): State<Arc<App>>, b: Result<Bytes, BytesRejection>) -> Response {
    complete(app, Kind::Chat, b).await.unwrap_or_else(error)
}

async fn completions(State(app): State<Arc<App>>, b: Result<Bytes, BytesRejection>) -> Response {
    complete(app, Kind::Completion, b).await.unwrap_or_else(error)
}

async fn complete(app: Arc<App>, kind: Kind, b: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let arrived = std::time::Instant::now();
    let m = body(b)?;
    api::check_model(&m, &app.opts.model_names)?;
    let ask = api::ask(kind, &m)?;
    let prompt = ask_engine(&app, |reply| Msg::Encode { prompt: ask.prompt.clone(), reply }).await?;
    // The bounded queue: a request waits for a slot only when there is room to wait.
    if app.shared.queued.fetch_add(1, Ordering::SeqCst) >= app.opts.queue {
        app.shared.queued.fetch_sub(1, Ordering::SeqCst);
        let mut r = error(ApiError::new(503, "server_error", Some("queue_full"), format!("the server is busy: {} requests are waiting; retry later", app.opts.queue)));
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(r);
    }
    let (events, mut rx) = mpsc::unbounded_channel();
    let job = Job { prompt, max_tokens: ask.max_tokens, sampler: ask.sampler.clone(), stop: ask.stop.clone(), events, arrived, logprobs: ask.logprobs };
    if app.tx.send(Msg::Job(job)).is_err() {
        app.shared.queued.fetch_sub(1, Ordering::SeqCst);
        return Err(gone());
    }
    let id = format!("{}-{:016x}", if kind == Kind::Chat { "chatcmpl" } else { "cmpl" }, rand_id());
    let created = now();
    let model = app.opts.model_id.clone();
    if !ask.stream {
        let mut text = String::new();
        let mut logprobs = Vec::new();
        loop {
            match rx.recv().await {
                Some(Event::Text(t, lp)) => {
                    text.push_str(&t);
                    logprobs.extend(lp);
                }
                Some(Event::Done(finish, usage)) => {
                    let logprobs = ask.logprobs.map(|_| api::logprobs_json(kind, &logprobs, &mut 0));
                    return Ok(axum::Json(api::response(kind, &id, created, &model, &text, finish, usage, logprobs)).into_response());
                }
                Some(Event::Failed(e)) => return Err(e),
                None => return Err(gone()),
            }
        }
    }
    // Server-sent events: the role first (chat), text pieces, the finish, usage if asked,
    // then [DONE]. If the client goes away the body is dropped, then `rx`, which cancels
    // the request at the engine's next step.
    let (frames, body) = mpsc::unbounded_channel::<Result<String, Infallible>>();
    let frame = |v: Value| Ok(format!("data: {v}\n\n"));
    tokio::spawn(async move {
        if kind == Kind::Chat && frames.send(frame(api::chunk(kind, &id, created, &model, true, None, None, None))).is_err() {
            return;
        }
        // Characters sent so far (completions' `text_offset`).
        let mut offset = 0;
        loop {
            let sent = match rx.recv().await {
                Some(Event::Text(t, lp)) => {
                    let logprobs = ask.logprobs.map(|_| api::logprobs_json(kind, &lp, &mut offset));
                    frames.send(frame(api::chunk(kind, &id, created, &model, false, Some(&t), logprobs, None)))
                }
                Some(Event::Done(finish, usage)) => {
                    let _ = frames.send(frame(api::chunk(kind, &id, created, &model, false, None, None, Some(finish))));
                    if ask.include_usage {
                        let _ = frames.send(frame(api::usage_chunk(kind, &id, created, &model, usage)));
                    }
                    let _ = frames.send(Ok("data: [DONE]\n\n".into()));
                    return;
                }
                Some(Event::Failed(e)) => {
                    let _ = frames.send(frame(e.body()));
                    return;
                }
                None => return,
            };
            if sent.is_err() {
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(body);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::new(500, "server_error", None, e.to_string()))
}

/// A response id: unique enough to tell responses apart (time and a counter).
fn rand_id() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    t ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
