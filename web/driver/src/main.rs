//! `strata-web-serve [PORT]`: serves the demo page, the npm package (web/pkg, built by
//! scripts/build_web.sh) and the model cache on http://127.0.0.1:PORT (default 8080):
//! open /demo/?model=/models/SmolLM2-135M-Instruct.Q4_1.gguf. Range requests work, so the
//! package's resumable downloads can be tried here.

use std::path::Path;

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        None => 8080,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            eprintln!("usage: strata-web-serve [PORT]");
            std::process::exit(2);
        }
    };
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cache = strata_conformance::models::cache_dir();
    if !web.join("pkg/strata_web_bg.wasm").exists() {
        eprintln!("note: web/pkg is not built yet: run scripts/build_web.sh");
    }
    let server = match strata_web_driver::server::Server::start(vec![("/".into(), web), ("/models/".into(), cache.join("models"))], port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("strata-web-serve: port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("serving {} (models from {})", server.url("/demo/"), cache.join("models").display());
    loop {
        std::thread::park();
    }
}
