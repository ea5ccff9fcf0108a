//! `strata-web-bench [MODEL_FILE_NAME] [N]`: strata (wasm CPU and WebGPU) against wllama
//! (llama.cpp in wasm) on the same GGUF in the same headless Chromium, one thread each;
//! prints the page's JSON (web/bench/). wllama comes from $STRATA_CACHE/tools/npm
//! (scripts/bench_browser.sh installs it).

use std::time::Duration;

use strata_conformance::models;
use strata_web_driver::server::Server;
use strata_web_driver::webdriver::Browser;

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| models::SMOLLM2.to_string());
    let n: usize = std::env::args().nth(2).and_then(|v| v.parse().ok()).unwrap_or(32);
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cache = models::cache_dir();
    let server = Server::start(
        vec![("/".into(), web), ("/models/".into(), cache.join("models")), ("/vendor/".into(), cache.join("tools/npm/node_modules"))],
        0,
    )
    .expect("server");
    let browser = Browser::start().expect("headless chromium");
    let runs = std::env::var("STRATA_BENCH_RUNS").unwrap_or_else(|_| "strata-wasm,strata-webgpu,wllama".into());
    browser.goto(&server.url(&format!("/bench/?model=/models/{name}&n={n}&runs={runs}"))).unwrap();
    let r = browser.wait_for("window.__bench && window.__bench.done && window.__bench", Duration::from_secs(3600)).unwrap();
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
}
