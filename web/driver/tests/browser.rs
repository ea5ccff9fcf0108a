//! The browser target in headless Chromium (SwiftShader WebGPU where there is no GPU):
//! - the conformance page runs the native case definitions in wasm: every loader case,
//!   every op case on WebGPU against the wasm CPU reference, and the SmolLM2 model case on
//!   WebGPU and on wasm CPU (the fast backend's SIMD128 kernels), whose greedy tokens must
//!   equal the native CPU reference's and the native fast CPU backend's (which agree on
//!   this prompt);
//! - the demo page, end to end: load SmolLM2 from a local URL, send a prompt, wait for
//!   the reply, save a screenshot (target/artifacts/demo.png).
//!
//! Needs `scripts/build_web.sh` (web/pkg, web/conformance/pkg) and chromium +
//! chromium-driver; without them the tests skip, unless STRATA_REQUIRE_BROWSER=1 (set by
//! scripts/test.sh), which makes them fail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use strata::source::{ByteSource, FileSource};
use strata_conformance::models;
use strata_web::engine::Engine;
use strata_web::options::{generate_options, load_options};
use strata_web_driver::server::Server;
use strata_web_driver::webdriver::Browser;

/// One browser at a time: two headless Chromiums on a 2-core machine only slow each other.
static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

const PROMPT: &str = "The capital of France is";
/// Greedy tokens compared: " Paris.\n\n The", each with a wide margin. (The 6th is a
/// near-tie that the fast CPU backend's 8-bit activations decide differently from f32.)
const TOKENS: usize = 5;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ready() -> bool {
    let built = root().join("web/pkg/strata_web_bg.wasm").exists() && root().join("web/conformance/pkg/strata_web_conformance_bg.wasm").exists();
    let chromium = Path::new(&std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())).exists();
    if built && chromium {
        return true;
    }
    let why = format!("browser tests need scripts/build_web.sh (built: {built}) and chromium (found: {chromium})");
    if std::env::var("STRATA_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("{why} (STRATA_REQUIRE_BROWSER=1)");
    }
    eprintln!("skipping: {why}");
    false
}

fn serve() -> Server {
    let models = models::cache_dir().join("models");
    Server::start(vec![("/".into(), root().join("web")), ("/models/".into(), models)], 0).expect("starting the static server")
}

fn artifacts() -> PathBuf {
    let d = root().join("target/artifacts");
    std::fs::create_dir_all(&d).expect("target/artifacts");
    d
}

/// Greedy tokens of the native CPU reference backend (a plain session).
fn reference_tokens(path: &Path) -> Vec<u32> {
    let model = strata::model::load(path).expect("load");
    let tok = strata::tokenizer::Tokenizer::from_gguf(model.files.gguf.as_ref().unwrap()).unwrap();
    let src = FileSource::open(path).expect("open");
    let mut s = strata::session::Session::new(strata::backend::cpu::CpuBackend::new(), model, &[&src], 256, &mut |_, _| {}).expect("session");
    let ids = tok.encode(PROMPT, true, false).unwrap();
    let mut sampler = strata::sampler::Sampler::new(strata::sampler::SamplerConfig::greedy());
    pollster::block_on(s.generate(&tok, &ids, TOKENS, &mut sampler, &mut |_| true)).expect("generate").tokens
}

/// Greedy tokens of the native fast CPU backend through the same engine code as wasm.
fn native_tokens(path: &Path) -> Vec<u32> {
    let src: Arc<dyn ByteSource> = Arc::new(FileSource::open(path).expect("open"));
    let mut e = pollster::block_on(Engine::load(src, &load_options(r#"{"backend":"wasm","contextLength":256}"#).unwrap(), &mut |_, _| {})).expect("native load");
    e.begin(PROMPT, &generate_options(&format!(r#"{{"maxTokens":{TOKENS},"temperature":0}}"#)).unwrap()).unwrap();
    while pollster::block_on(e.step()).unwrap().is_some() {}
    e.stats()["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

#[test]
fn conformance_suite_in_headless_chromium() {
    if !ready() {
        return;
    }
    let Some(model) = models::find(models::SMOLLM2) else { return };
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let want = native_tokens(&model);
    assert_eq!(want.len(), TOKENS, "the native reference stopped early: {want:?}");
    assert_eq!(reference_tokens(&model), want, "the native reference and fast CPU backends disagree on this prompt");
    let server = serve();
    let browser = Browser::start().expect("headless chromium");
    let ops = std::env::var("STRATA_BROWSER_OPS").unwrap_or_default();
    let url = server.url(&format!(
        "/conformance/?model=/models/{}&n={TOKENS}&prompt={}&ops={}",
        models::SMOLLM2,
        PROMPT.replace(' ', "%20"),
        ops
    ));
    browser.goto(&url).unwrap();
    let r = browser.wait_for("window.__strata && window.__strata.done && window.__strata", Duration::from_secs(1800)).unwrap();
    std::fs::write(artifacts().join("browser-conformance.json"), serde_json::to_string_pretty(&r).unwrap()).unwrap();

    let mut passed = 0;
    let mut failures: Vec<String> = r["errors"].as_array().unwrap().iter().map(|e| e.to_string()).collect();
    let loader = &r["loader"];
    let n_loader = strata_conformance::loader_cases::cases().len();
    passed += loader["passed"].as_u64().unwrap_or(0) as usize;
    for c in loader["cases"].as_array().into_iter().flatten().filter(|c| c["ok"] != json!(true)) {
        failures.push(format!("loader {}: {}", c["name"], c["error"]));
    }
    if loader["passed"].as_u64() != Some(n_loader as u64) {
        failures.push(format!("loader: {} of {n_loader} cases passed", loader["passed"]));
    }
    let ops_report = &r["ops"];
    let n_ops = strata_conformance::ops::filter(strata_conformance::ops::cases(), &ops).len();
    passed += ops_report["passed"].as_u64().unwrap_or(0) as usize;
    for l in ops_report["lines"].as_array().into_iter().flatten().filter_map(Value::as_str).filter(|l| !l.starts_with("PASS")) {
        failures.push(format!("op {l}"));
    }
    if ops_report["passed"].as_u64() != Some(n_ops as u64) {
        failures.push(format!("ops: {} of {n_ops} cases passed", ops_report["passed"]));
    }
    for backend in ["webgpu", "wasm"] {
        let m = &r[format!("model_{backend}")];
        let got: Vec<u32> = m["stats"]["tokens"].as_array().into_iter().flatten().filter_map(Value::as_u64).map(|v| v as u32).collect();
        if m["info"]["backend"] != json!(backend) {
            failures.push(format!("model on {backend}: ran on {}", m["info"]["backend"]));
        } else if got != want {
            failures.push(format!("model on {backend}: greedy tokens {got:?}, native CPU {want:?}"));
        } else {
            passed += 1;
        }
        eprintln!(
            "SmolLM2 on {backend} ({}): TTFT {:.0} ms, decode {:.2} tok/s, text {:?}",
            m["info"]["backendName"],
            m["stats"]["timeToFirstTokenMs"].as_f64().unwrap_or(f64::NAN),
            m["stats"]["decodeTokensPerS"].as_f64().unwrap_or(f64::NAN),
            m["text"]
        );
    }
    eprintln!("adapter: {}", r["ops"]["adapter"]);
    eprintln!("worst NMSE per op family: {}", r["ops"]["worst"]);
    println!("browser conformance: {passed} passed, {} failed", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn demo_page_loads_a_model_and_chats() {
    if !ready() {
        return;
    }
    if models::find(models::SMOLLM2).is_none() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let server = serve();
    let browser = Browser::start().expect("headless chromium");
    // `/cut/` drops the first (full) download half way: the package must resume it with a
    // range request and still load the model.
    let model_path = format!("/cut/models/{}", models::SMOLLM2);
    browser.goto(&server.url(&format!("/demo/?model={model_path}"))).unwrap();
    browser.wait_for("document.getElementById('load') && !document.getElementById('load').disabled", Duration::from_secs(30)).unwrap();
    browser.eval("document.getElementById('max-tokens').value = '4'; document.getElementById('temperature').value = '0';", json!([])).unwrap();
    // A file that is not a GGUF: the runtime's error reaches the page as an Error.
    browser.eval("document.getElementById('model-url').value = location.origin + '/demo/demo.css';", json!([])).unwrap();
    browser.click("#load").unwrap();
    let bad = browser.wait_for("(s => s.classList.contains('error') ? s.textContent : null)(document.getElementById('status'))", Duration::from_secs(60)).unwrap();
    assert!(bad.as_str().unwrap().contains("demo.css") && bad.as_str().unwrap().contains("magic"), "{bad}");
    browser.eval(&format!("document.getElementById('model-url').value = location.origin + '{model_path}';"), json!([])).unwrap();
    browser.click("#load").unwrap();
    let status = browser
        .wait_for("(s => s.textContent === 'Ready.' || s.classList.contains('error') ? s.textContent : null)(document.getElementById('status'))", Duration::from_secs(900))
        .unwrap();
    assert_eq!(status, json!("Ready."), "loading failed");
    // The download is now in OPFS and offered as a cached model.
    let listed = format!("[...document.getElementById('cached').options].map(o => o.value).find(v => v.endsWith('{model_path}'))");
    let cached = browser.wait_for(&listed, Duration::from_secs(30)).unwrap();
    assert!(cached.as_str().unwrap().ends_with(&model_path), "{cached}");
    let info = browser.eval("return document.getElementById('info').textContent;", json!([])).unwrap();
    assert!(info.as_str().unwrap().contains("backend"), "{info}");
    browser.eval("document.getElementById('prompt').value = 'What is the capital of France?'; document.getElementById('composer').requestSubmit();", json!([])).unwrap();
    let reply = browser
        .wait_for("(m => m && m.dataset.done ? {text: m.textContent, error: m.classList.contains('error')} : null)(document.querySelector('.msg.assistant'))", Duration::from_secs(900))
        .unwrap();
    let png = browser.screenshot().unwrap();
    std::fs::write(artifacts().join("demo.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert_eq!(reply["error"], json!(false), "generation failed: {}", reply["text"]);
    let text = reply["text"].as_str().unwrap();
    assert!(!text.trim().is_empty(), "no text appeared");
    let speed = browser.eval("return document.getElementById('speed').textContent;", json!([])).unwrap();
    eprintln!("demo: {info} | reply {text:?} | {speed}");
    // The download was cut and resumed from where it stopped.
    let reqs: Vec<_> = server.requests().into_iter().filter(|r| r.path == model_path).collect();
    assert!(reqs.iter().any(|r| r.status == 200 && r.range.is_none()), "{reqs:?}");
    assert!(reqs.iter().any(|r| r.status == 206 && r.range.as_deref().is_some_and(|h| h.starts_with("bytes=") && !h.starts_with("bytes=0-"))), "no resumed range request: {reqs:?}");
}

/// The package's API from a page: an ArrayBuffer source, progress phases, abort() after a
/// few pieces, `break` out of `for await`, a second generate while one runs, a misspelt
/// option (the runtime's message as an Error), dispose, and `maxMemory` (layers streamed
/// from a Blob give the resident tokens). On wasm CPU (quick).
#[test]
fn package_api_abort_break_busy_errors_and_streaming() {
    if !ready() {
        return;
    }
    if models::find(models::SMOLLM2).is_none() {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let server = serve();
    let browser = Browser::start().expect("headless chromium");
    browser.goto(&server.url("/demo/")).unwrap();
    let script = r#"
window.__api = null;
(async () => {
  const out = {};
  try {
    const { load } = await import('/pkg/index.js');
    const phases = new Set();
    const buf = await (await fetch(arguments[0])).arrayBuffer();
    const m = await load(buf, { backend: 'wasm', contextLength: 512, onProgress: (p) => phases.add(p.phase) });
    out.info = m.info;
    out.phases = [...phases];
    let n = 0;
    for await (const piece of m.generate('Once upon a time', { maxTokens: 200, temperature: 0 })) {
      if (++n === 3) m.abort();
    }
    out.abortStats = m.lastStats;
    let k = 0;
    for await (const piece of m.generate('Hello', { maxTokens: 200 })) {
      if (++k === 2) break;
    }
    out.breakStats = m.lastStats;
    const running = m.generate('x', { maxTokens: 3 });
    try { m.generate('y'); out.busy = 'no error'; } catch (e) { out.busy = e.message; }
    for await (const piece of running) {}
    try { for await (const piece of m.generate('x', { maxToken: 3 })) {} out.badOption = 'no error'; } catch (e) { out.badOption = e.message; }
    for await (const piece of m.generate('The capital of France is', { maxTokens: 6, temperature: 0 })) {}
    out.residentTokens = m.lastStats.tokens;
    await m.dispose();
    try { m.generate('z'); out.disposed = 'no error'; } catch (e) { out.disposed = e.message; }
    // Under a 40 MB budget most layers stream from the Blob: same tokens.
    const s = await load(new Blob([buf]), { backend: 'wasm', contextLength: 512, maxMemory: 40e6 });
    out.streamMemory = s.info.memory;
    for await (const piece of s.generate('The capital of France is', { maxTokens: 6, temperature: 0 })) {}
    out.streamedTokens = s.lastStats.tokens;
    await s.dispose();
  } catch (e) {
    out.error = e.message;
  }
  window.__api = out;
})();
"#;
    browser.eval(script, json!([format!("/models/{}", models::SMOLLM2)])).unwrap();
    let r = browser.wait_for("window.__api", Duration::from_secs(600)).unwrap();
    eprintln!("package API: {}", serde_json::to_string(&r).unwrap().chars().take(600).collect::<String>());
    assert!(r["error"].is_null(), "{}", r["error"]);
    assert_eq!(r["info"]["backend"], json!("wasm"));
    assert!(r["phases"].as_array().unwrap().contains(&json!("weights")), "{}", r["phases"]);
    let aborted = r["abortStats"]["tokens"].as_array().unwrap().len();
    assert_eq!(r["abortStats"]["stop"], json!("Cancelled"));
    assert!((3..10).contains(&aborted), "abort() after 3 pieces stopped at {aborted} tokens");
    assert_eq!(r["breakStats"]["stop"], json!("Cancelled"));
    assert!(r["busy"].as_str().unwrap().contains("already running"), "{}", r["busy"]);
    assert!(r["badOption"].as_str().unwrap().contains("unknown field `maxToken`"), "{}", r["badOption"]);
    assert!(r["disposed"].as_str().unwrap().contains("disposed"), "{}", r["disposed"]);
    assert!(r["streamMemory"]["streamedLayers"].as_u64().unwrap() > 0, "{}", r["streamMemory"]);
    assert_eq!(r["residentTokens"].as_array().unwrap().len(), 6);
    assert_eq!(r["streamedTokens"], r["residentTokens"], "streamed and resident greedy tokens differ");
}
