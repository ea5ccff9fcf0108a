//! `strata serve` end to end over real HTTP on SmolLM2: what a completion returns equals
//! what `strata run` (the single-sequence path, itself checked against Hugging Face)
//! generates for the same prompt, alone or with other requests batched beside it; streamed
//! equals non-streamed; stop strings cut the text where they first appear and are never
//! sent; a conversation's next turn reuses its slot's cache; every bad request is an
//! OpenAI-shaped error with the right status; SIGTERM exits 0. The server runs on the CPU
//! reference backend so that batched and alone are bit-identical (engine_sequences.rs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata_conformance::models;

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(extra: &[&str]) -> Option<Server> {
        let path = models::find(models::SMOLLM2)?;
        // Defaults, each unless `extra` gives its own (clap refuses a flag given twice).
        let mut args = vec!["serve", "--port", "0", "-m", path.to_str().unwrap()];
        for (flag, value) in [("--backend", "ref"), ("--parallel", "3"), ("--ctx", "768")] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the server prints its address").unwrap();
            if let Some(a) = line.strip_prefix("strata serve: listening on http://") {
                break a.to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || lines.for_each(drop));
        let s = Server { child, addr };
        let t0 = Instant::now();
        while s.get("/health").0 != 200 {
            assert!(t0.elapsed() < Duration::from_secs(120), "the model loads");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(s)
    }

    /// `(status, headers, body)` of one request on its own connection.
    fn request(&self, method: &str, path: &str, headers: &[&str], body: &[u8]) -> (u16, String, Vec<u8>) {
        let mut c = TcpStream::connect(&self.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n", self.addr, body.len());
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(body).unwrap();
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let mut body = raw[split + 4..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        (status, head, body)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = self.request("GET", path, &[], b"");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    fn post(&self, path: &str, v: &Value) -> (u16, Value) {
        let (status, _, body) = self.request("POST", path, &["Content-Type: application/json"], v.to_string().as_bytes());
        (status, serde_json::from_slice(&body).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&body)})))
    }

    /// A streamed request's `data:` payloads, in order.
    fn stream(&self, path: &str, v: &Value) -> Vec<String> {
        let (status, head, body) = self.request("POST", path, &["Content-Type: application/json"], v.to_string().as_bytes());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
        String::from_utf8(body).unwrap().split("\n\n").filter_map(|e| e.strip_prefix("data: ").map(str::to_owned)).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line + 2..line + 2 + size]);
        b = &b[line + 2 + size + 2..];
    }
}

/// `strata run`'s greedy text for `prompt` on the same backend.
fn run_alone(prompt: &str, n: usize) -> String {
    run_with(prompt, n, &[])
}

/// `strata run`'s greedy text for `prompt` with `extra` flags.
fn run_with(prompt: &str, n: usize, extra: &[&str]) -> String {
    let path = models::find(models::SMOLLM2).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata")).args(["run", "--backend", "ref", "--json", "--temp", "0", "-n", &n.to_string(), "-m", path.to_str().unwrap()]).args(extra).arg(prompt).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["text"].as_str().unwrap().to_owned()
}

fn completion(prompt: &str, n: usize) -> Value {
    json!({"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": prompt, "temperature": 0, "max_tokens": n})
}

const PROMPTS: [&str; 3] = ["The capital of France is", "Once upon a time, there was a", "The three primary colors are"];

#[test]
fn completions_alone_and_batched_equal_strata_run() {
    let Some(s) = Server::start(&[]) else { return };
    let want: Vec<String> = PROMPTS.iter().map(|p| run_alone(p, 16)).collect();
    let (status, v) = s.post("/v1/completions", &completion(PROMPTS[0], 16));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], want[0].as_str());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 16);
    assert_eq!(v["usage"]["total_tokens"], v["usage"]["prompt_tokens"].as_u64().unwrap() + 16);

    // All three at once, several times: they share slots and forward passes.
    for round in 0..2 {
        std::thread::scope(|scope| {
            let handles: Vec<_> = PROMPTS.iter().map(|p| scope.spawn(|| s.post("/v1/completions", &completion(p, 16)))).collect();
            for (i, h) in handles.into_iter().enumerate() {
                let (status, v) = h.join().unwrap();
                assert_eq!(status, 200, "{v}");
                assert_eq!(v["choices"][0]["text"], want[i].as_str(), "round {round}, prompt {i} batched");
            }
        });
    }

    // OpenAI's penalties reach the sampler: the reply is `strata run`'s with the same
    // penalties, and not the unpenalized one (greedy over 32 tokens repeats itself).
    let penalized = run_with(PROMPTS[1], 32, &["--presence-penalty", "0.5", "--frequency-penalty", "1.5"]);
    assert_ne!(penalized, run_alone(PROMPTS[1], 32), "the penalties change this reply");
    let mut ask = completion(PROMPTS[1], 32);
    ask["presence_penalty"] = json!(0.5);
    ask["frequency_penalty"] = json!(1.5);
    let (status, v) = s.post("/v1/completions", &ask);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], penalized.as_str());
}

#[test]
fn streamed_equals_whole_and_stop_strings_cut() {
    let Some(s) = Server::start(&[]) else { return };
    let ask = json!({"messages": [{"role": "user", "content": "Name three fruits."}], "temperature": 0, "max_tokens": 24});
    let (status, whole) = s.post("/v1/chat/completions", &ask);
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    let text = whole["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    assert!(!text.is_empty());

    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let events = s.stream("/v1/chat/completions", &streamed);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "the first chunk opens the assistant's turn");
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"] && c["object"] == "chat.completion.chunk"), "one id for all chunks");
    let joined: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(joined, text, "streamed text == whole text");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], whole["choices"][0]["finish_reason"]);
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], whole["usage"]["completion_tokens"]);

    // A stop string from the middle of the reply, long enough to span tokens (so that
    // its first tokens arrive before it is complete): the text ends right before it.
    let want = run_alone(PROMPTS[0], 16);
    let cut = want.char_indices().nth(want.chars().count() / 3).unwrap().0;
    let stop: String = want[cut..].chars().take(12).collect();
    assert_eq!(stop.chars().count(), 12, "{want:?}");
    let at = want.find(&stop).unwrap();
    let mut ask = completion(PROMPTS[0], 16);
    ask["stop"] = json!(["never appears", stop]);
    let (status, v) = s.post("/v1/completions", &ask);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], &want[..at], "cut before the stop string {stop:?}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    ask["stream"] = json!(true);
    let joined: String = s.stream("/v1/completions", &ask).iter().filter_map(|e| serde_json::from_str::<Value>(e).ok()).filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_owned)).collect();
    assert_eq!(joined, &want[..at], "streamed: the stop string is never sent, even in pieces");
}

#[test]
fn the_next_turn_reuses_the_conversation() {
    let Some(s) = Server::start(&[]) else { return };
    let mut messages = vec![json!({"role": "user", "content": "Write a haiku about the sea."})];
    let (status, first) = s.post("/v1/chat/completions", &json!({"messages": messages, "temperature": 0, "max_tokens": 20}));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    messages.push(first["choices"][0]["message"].clone());
    messages.push(json!({"role": "user", "content": "Now one about the mountains."}));
    let (status, second) = s.post("/v1/chat/completions", &json!({"messages": messages, "temperature": 0, "max_tokens": 8}));
    assert_eq!(status, 200, "{second}");
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    let first_prompt = first["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(cached >= first_prompt, "the second turn reuses at least the first turn's prompt: {cached} of {}", second["usage"]);
}

#[test]
fn bad_requests_are_openai_errors() {
    let Some(s) = Server::start(&["--max-body", "4K"]) else { return };
    let check = |what: &str, (status, v): (u16, Value), want_status: u16, param: Option<&str>, code: Option<&str>| {
        assert_eq!(status, want_status, "{what}: {v}");
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
        assert!(e["type"].is_string(), "{what}: {v}");
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{what}: {v}");
        }
        if let Some(c) = code {
            assert_eq!(e["code"], c, "{what}: {v}");
        }
    };
    let raw = s.request("POST", "/v1/chat/completions", &["Content-Type: application/json"], b"{\"messages\": [");
    check("malformed JSON", (raw.0, serde_json::from_slice(&raw.2).unwrap()), 400, Some("body"), None);
    let msgs = json!([{"role": "user", "content": "hi"}]);
    check("n = 2", s.post("/v1/chat/completions", &json!({"messages": msgs, "n": 2})), 400, Some("n"), None);
    check("a wrong type", s.post("/v1/chat/completions", &json!({"messages": msgs, "temperature": "hot"})), 400, Some("temperature"), None);
    check("out of range", s.post("/v1/chat/completions", &json!({"messages": msgs, "top_p": 2})), 400, Some("top_p"), None);
    check("a penalty past 2", s.post("/v1/chat/completions", &json!({"messages": msgs, "presence_penalty": 2.5})), 400, Some("presence_penalty"), None);
    check("a penalty past -2", s.post("/v1/completions", &json!({"prompt": "a", "frequency_penalty": -3})), 400, Some("frequency_penalty"), None);
    check("no messages", s.post("/v1/chat/completions", &json!({"model": "SmolLM2-135M-Instruct.Q4_1"})), 400, Some("messages"), None);
    check("a bad role", s.post("/v1/chat/completions", &json!({"messages": [{"role": "wizard", "content": "hi"}]})), 400, Some("messages[0].role"), None);
    check("an unknown model", s.post("/v1/chat/completions", &json!({"model": "gpt-9", "messages": msgs})), 400, Some("model"), Some("model_not_found"));
    check("stop of a number", s.post("/v1/completions", &json!({"prompt": "a", "stop": 3})), 400, Some("stop"), None);
    // 768 positions over 3 slots: 256 each; this prompt is about 600 tokens.
    check("a prompt past the context", s.post("/v1/completions", &json!({"prompt": "word ".repeat(300)})), 400, None, Some("context_length_exceeded"));
    check("a body past --max-body", s.post("/v1/completions", &json!({"prompt": "x".repeat(5000)})), 413, None, None);
    check("an unknown endpoint", s.get("/v1/nothing"), 404, None, None);
    check("a token past the vocabulary", s.post("/detokenize", &json!({"tokens": [1, 99999999]})), 400, Some("tokens"), None);
    // The server is still well after all of that.
    let (status, v) = s.post("/tokenize", &json!({"content": "The capital of France is"}));
    assert_eq!(status, 200, "{v}");
    let (status, back) = s.post("/detokenize", &json!({"tokens": v["tokens"]}));
    assert_eq!((status, back["content"].as_str()), (200, Some("The capital of France is")), "{back}");
    let (status, v) = s.get("/v1/models");
    assert_eq!((status, v["data"][0]["id"].as_str()), (200, Some("SmolLM2-135M-Instruct.Q4_1")), "{v}");
}

#[test]
fn api_key_and_sigterm() {
    let Some(mut s) = Server::start(&["--api-key", "sesame"]) else { return };
    let ask = completion(PROMPTS[0], 2).to_string();
    let (status, _, body) = s.request("POST", "/v1/completions", &["Content-Type: application/json"], ask.as_bytes());
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = s.request("POST", "/v1/completions", &["Authorization: Bearer wrong"], ask.as_bytes());
    assert_eq!(status, 401);
    let (status, _, body) = s.request("POST", "/v1/completions", &["Authorization: Bearer sesame"], ask.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(s.get("/health").0, 200, "health needs no key");

    let kill = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "SIGTERM stops the server");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "SIGTERM exits 0: {status}");
}

/// The unmodified OpenAI Python client (PyPI `openai`, in the venv scripts/test.sh keeps):
/// completions, chat, streaming with usage, the model list, typed errors.
#[test]
fn the_openai_python_client_works_unmodified() {
    let python = std::env::var("STRATA_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_client = Command::new(&python).args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success());
    if !has_client {
        assert!(std::env::var("STRATA_REQUIRE_OPENAI").as_deref() != Ok("1"), "{python} has no `openai` package (scripts/test.sh installs it)");
        eprintln!("skipping: {python} has no `openai` package");
        return;
    }
    let Some(s) = Server::start(&[]) else { return };
    let want = run_alone(PROMPTS[0], 16);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = Command::new(&python).arg(script).args([&format!("http://{}", s.addr), "SmolLM2-135M-Instruct.Q4_1", PROMPTS[0], &want]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("openai client: ok"), "{stdout}");
}

/// A gauge or counter's value in `/metrics` (the first line starting with `name`).
fn metric(s: &Server, name: &str) -> f64 {
    let (status, _, body) = s.request("GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let line = text.lines().find(|l| l.starts_with(name) && !l.starts_with('#')).unwrap_or_else(|| panic!("{name} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < Duration::from_secs(60), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One slot and room for one waiting request: a third is 503 with Retry-After; a client
/// that disconnects mid-stream frees its slot for the waiting one, whose reply is whole;
/// /metrics counts all of it.
#[test]
fn queue_full_disconnect_and_metrics() {
    let Some(s) = Server::start(&["--parallel", "1", "--queue", "1", "--ctx", "400"]) else { return };
    // A: streams until its slot's context is full unless cancelled.
    let mut a = TcpStream::connect(&s.addr).unwrap();
    let body = json!({"prompt": PROMPTS[1], "temperature": 0, "stream": true}).to_string();
    write!(a, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = a.read(&mut buf).unwrap();
        assert!(n > 0, "A's stream starts");
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(metric(&s, "strata_slots_busy"), 1.0);
    // B waits for the slot; C finds the queue full.
    std::thread::scope(|scope| {
        let b = scope.spawn(|| s.post("/v1/completions", &completion(PROMPTS[0], 16)));
        wait_for("B is queued", || metric(&s, "strata_queue_depth") == 1.0);
        let (status, head, body) = s.request("POST", "/v1/completions", &["Content-Type: application/json"], completion(PROMPTS[2], 4).to_string().as_bytes());
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["error"]["code"], "queue_full");
        // A hangs up: its slot goes to B, whose reply is what it is alone.
        drop(a);
        let (status, v) = b.join().unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["choices"][0]["text"], run_alone(PROMPTS[0], 16).as_str());
    });
    wait_for("the slot is free", || metric(&s, "strata_slots_busy") == 0.0);
    let generated = metric(&s, "strata_generated_tokens_total");
    // A alone runs to its slot's 400 positions (greedy, it meets no end-of-generation
    // token: `strata run -n 380` stops at MaxTokens); cancelled, it stopped early.
    let a_tokens = generated - 16.0;
    assert!(a_tokens >= 1.0 && a_tokens < 300.0, "A generated {a_tokens} tokens after its client left");
    assert_eq!(metric(&s, "strata_requests_total{endpoint=\"/v1/completions\",status=\"503\"}"), 1.0);
    assert_eq!(metric(&s, "strata_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"), 2.0);
    assert_eq!(metric(&s, "strata_time_to_first_token_seconds_count"), 2.0, "A and B each had a first token");
    assert_eq!(metric(&s, "strata_time_per_output_token_seconds_count"), generated - 2.0, "a gap before every later token");
    assert_eq!(metric(&s, "strata_queue_depth"), 0.0);
}

/// Logprobs against Hugging Face transformers (tests/fixtures/reference/smollm2.hf.json,
/// the same Q4_1 weights in f32): a prompt given as token ids, greedy, 5 alternatives.
/// The first token's alternatives are the log-softmax of transformers' final logits; every
/// token's own logprob is its best alternative's (greedy); the greedy tokens are
/// transformers' and their texts spell the completion.
#[test]
fn logprobs_follow_transformers() {
    use strata_conformance::fixtures::{self, ids};
    let Some(s) = Server::start(&[]) else { return };
    let r = fixtures::json("reference/smollm2.hf.json");
    let case = &r["cases"][1];
    let (prompt, mut greedy) = (ids(&case["prompt_ids"]), ids(&case["greedy"]));
    // transformers went on past `<|im_end|>` (2), where strata stops.
    greedy.truncate(greedy.iter().position(|&t| t == 2).unwrap_or(greedy.len()));
    let hf = fixtures::f32s(&format!("reference/{}", case["final_logits_file"].as_str().unwrap()));
    let max = hf.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = (hf.iter().map(|&l| ((l - max) as f64).exp()).sum::<f64>()).ln() as f32 + max;
    let n = greedy.len();
    let (status, v) = s.post("/v1/completions", &json!({"prompt": prompt, "max_tokens": n, "temperature": 0, "logprobs": 5}));
    assert_eq!(status, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    let (_, want) = s.post("/detokenize", &json!({"tokens": greedy}));
    assert_eq!(text, want["content"].as_str().unwrap(), "transformers' greedy tokens");
    assert_eq!(v["usage"]["prompt_tokens"], prompt.len());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let lp = &v["choices"][0]["logprobs"];
    let tokens: Vec<&str> = lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tokens.len(), n);
    assert_eq!(tokens.concat(), text);
    let offsets: Vec<usize> = lp["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap() as usize).collect();
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).zip(&tokens).all(|(w, t)| w[1] - w[0] == t.chars().count()), "{offsets:?}");
    for i in 0..n {
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert!(top.len() <= 5 && top.len() >= 4, "5 alternatives (two may share a text): {top:?}");
        let best = top.values().map(|x| x.as_f64().unwrap()).fold(f64::NEG_INFINITY, f64::max);
        assert!((lp["token_logprobs"][i].as_f64().unwrap() - best).abs() < 1e-6, "token {i}: greedy takes the best");
        assert!(best <= 0.0);
    }
    let first = lp["top_logprobs"][0].as_object().unwrap();
    let hf_top: Vec<u32> = case["top5"][0]["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    for id in hf_top {
        let (_, t) = s.post("/detokenize", &json!({"tokens": [id]}));
        let ours = first.get(t["content"].as_str().unwrap()).unwrap_or_else(|| panic!("token {id} among {first:?}")).as_f64().unwrap() as f32;
        let theirs = hf[id as usize] - log_sum;
        assert!((ours - theirs).abs() < 2e-3, "token {id}: logprob {ours} vs transformers {theirs}");
    }
    // A token id past the vocabulary is the prompt's fault.
    let (status, v) = s.post("/v1/completions", &json!({"prompt": [1, 49152], "max_tokens": 1}));
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("prompt")), "{v}");
}

/// Chat logprobs: streamed equal whole, each token's bytes spell the reply, its
/// alternatives are as many as asked and the greedy token is the first of them; the
/// fields' limits are 400s.
#[test]
fn chat_logprobs_streamed_equal_whole() {
    let Some(s) = Server::start(&[]) else { return };
    let ask = json!({"messages": [{"role": "user", "content": "Say hello in French."}], "temperature": 0, "max_tokens": 12, "logprobs": true, "top_logprobs": 3});
    let (status, whole) = s.post("/v1/chat/completions", &ask);
    assert_eq!(status, 200, "{whole}");
    let content = whole["choices"][0]["logprobs"]["content"].as_array().unwrap().clone();
    assert_eq!(content.len() as u64, whole["usage"]["completion_tokens"].as_u64().unwrap());
    let bytes: Vec<u8> = content.iter().flat_map(|t| t["bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8)).collect();
    assert_eq!(String::from_utf8(bytes).unwrap(), whole["choices"][0]["message"]["content"].as_str().unwrap());
    for t in &content {
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{t}");
        assert_eq!(top[0]["token"], t["token"], "{t}");
        assert_eq!(top[0]["logprob"], t["logprob"], "{t}");
        assert!(top.windows(2).all(|w| w[0]["logprob"].as_f64() >= w[1]["logprob"].as_f64()), "{t}");
    }
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let events = s.stream("/v1/chat/completions", &streamed);
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let pieces: Vec<Value> = chunks.iter().filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array()).flatten().cloned().collect();
    assert_eq!(pieces, content);
    // Without logprobs the field is null.
    let (_, plain) = s.post("/v1/chat/completions", &json!({"messages": ask["messages"], "max_tokens": 2}));
    assert!(plain["choices"][0]["logprobs"].is_null(), "{plain}");
    let msgs = ask["messages"].clone();
    let (status, v) = s.post("/v1/chat/completions", &json!({"messages": msgs, "top_logprobs": 2}));
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("top_logprobs")), "without logprobs: {v}");
    let (status, v) = s.post("/v1/chat/completions", &json!({"messages": msgs, "logprobs": true, "top_logprobs": 21}));
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("top_logprobs")), "past 20: {v}");
    let (status, v) = s.post("/v1/completions", &json!({"prompt": "a", "logprobs": true}));
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("logprobs")), "completions take a count: {v}");
}

/// Tokens slot A streams while slot B's ~600-token prompt is prefilled, with B's prompt
/// in chunks of `batch_tokens` (A's decode goes first in every step).
fn decodes_during_prefill(batch_tokens: &str) -> Option<usize> {
    let s = Server::start(&["--backend", "cpu", "--parallel", "2", "--ctx", "2048", "--batch-tokens", batch_tokens])?;
    let mut a = TcpStream::connect(&s.addr).unwrap();
    let body = json!({"prompt": PROMPTS[1], "temperature": 0, "max_tokens": 1000, "stream": true}).to_string();
    write!(a, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    // A's events as they arrive, timed, on their own thread.
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let reader = a.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(reader).lines();
        while let Some(Ok(line)) = lines.next() {
            if line.starts_with("data: ") && tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    for _ in 0..3 {
        rx.recv_timeout(Duration::from_secs(60)).expect("A streams");
    }
    let sent = Instant::now();
    let (status, v) = s.post("/v1/completions", &json!({"prompt": "word ".repeat(600), "temperature": 0, "max_tokens": 1}));
    let done = Instant::now();
    assert_eq!(status, 200, "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 500, "{v}");
    let during = rx.try_iter().filter(|t| *t > sent && *t < done).count();
    drop(a);
    Some(during)
}

/// A long prompt joins in chunks: the running decode goes on beside it (a token per step,
/// about 600 / 31 steps) instead of waiting for the whole prefill. The same prompt in one
/// chunk (--batch-tokens 1024) stalls it: a few tokens meanwhile (those of the steps before B joins).
#[test]
fn a_long_prompt_does_not_stall_running_decodes() {
    let Some(chunked) = decodes_during_prefill("32") else { return };
    let whole = decodes_during_prefill("1024").unwrap();
    println!("A's tokens during B's prefill: {chunked} in chunks of 32, {whole} in one chunk");
    assert!(chunked >= 12, "A streamed {chunked} tokens while B's prompt was prefilled in chunks of 32");
    assert!(whole <= 6, "A streamed {whole} tokens while B's prompt was prefilled whole");
}
