//! `strata run` / `logits` end to end on SmolLM2, against HF transformers' greedy tokens
//! and logits (tests/fixtures/reference/smollm2.hf.json). The HF-exact checks (1e-3) run on
//! the CPU reference (`--backend ref`); the default fast CPU backend quantises activations
//! to 8 bits and is held to HF's greedy tokens where HF's margins are wide.

use std::process::Command;

use serde_json::Value as Json;
use strata_conformance::models;

fn hf() -> Json {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/smollm2.hf.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn strata(args: &[&str]) -> (bool, Json, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata")).args(args).output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
    (out.status.success(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn run_json_greedy_equals_hf() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let case = &hf()["cases"][1]; // "The capital of France is"
    let (ok, v, stderr) = strata(&["run", "--backend", "ref", "--json", "--temp", "0", "-n", "12", "-m", path.to_str().unwrap(), "The capital of France is"]);
    assert!(ok, "{stderr}");
    assert_eq!(v["prompt_tokens"], case["prompt_ids"]);
    let want: Vec<Json> = case["greedy"].as_array().unwrap()[..12].to_vec();
    assert_eq!(v["tokens"].as_array().unwrap(), &want);
    assert!(v["text"].as_str().unwrap().starts_with(" Paris."), "{}", v["text"]);
    assert!(v["timings"]["generated_tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn logits_json_equals_hf() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let (ok, v, stderr) = strata(&["logits", "--backend", "ref", "--json", "--top", "5", "-m", path.to_str().unwrap(), "The capital of France is"]);
    assert!(ok, "{stderr}");
    let case = &hf()["cases"][1];
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    for (ours, theirs) in top.iter().zip(case["top5"][0]["ids"].as_array().unwrap()) {
        assert_eq!(&ours["id"], theirs);
    }
    let l: Vec<f64> = top.iter().map(|t| t["logit"].as_f64().unwrap()).collect();
    assert!(l.windows(2).all(|w| w[0] >= w[1]), "highest first");
    let hf_l = case["top5"][0]["logits"][0].as_f64().unwrap();
    assert!((l[0] - hf_l).abs() < 1e-3, "{} vs {hf_l}", l[0]);
}

#[test]
fn prompt_past_the_context_is_a_clear_error() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let long = "word ".repeat(40);
    let (ok, _, stderr) = strata(&["run", "--ctx", "16", "-n", "4", "-m", path.to_str().unwrap(), &long]);
    assert!(!ok);
    assert!(stderr.contains("do not fit the context of 16"), "{stderr}");
}

/// Whether `STRATA_REQUIRE_<what>=1` makes a missing device a failure.
fn required(what: &str) -> bool {
    std::env::var(format!("STRATA_REQUIRE_{what}")).as_deref() == Ok("1")
}

/// `strata run --backend <backend>`, 4 greedy tokens of "The capital of France is".
fn greedy_on(backend: &str, path: &std::path::Path) -> (bool, Json, String) {
    strata(&["run", "--backend", backend, "--json", "--temp", "0", "-n", "4", "-m", path.to_str().unwrap(), "The capital of France is"])
}

/// The run succeeded on `backend` and produced HF's first 4 greedy tokens.
fn assert_hf_greedy(backend: &str, (ok, v, stderr): (bool, Json, String)) {
    assert!(ok, "{stderr}");
    assert!(v["backend"].as_str().unwrap().starts_with(backend), "{}", v["backend"]);
    let want: Vec<Json> = hf()["cases"][1]["greedy"].as_array().unwrap()[..4].to_vec();
    assert_eq!(v["tokens"].as_array().unwrap(), &want);
}

/// `--backend cuda` end to end: HF's greedy tokens on a GPU machine; elsewhere a clear
/// error naming what is missing (and `auto` still runs, on wgpu or the CPU).
#[test]
fn run_on_cuda_greedy_equals_hf_or_says_why_not() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let (ok, v, stderr) = greedy_on("cuda", &path);
    if !ok && !required("CUDA") {
        assert!(stderr.contains("--backend cuda: device error: no CUDA driver") || stderr.contains("NVRTC") || stderr.contains("cuInit"), "{stderr}");
        return;
    }
    assert_hf_greedy("cuda", (ok, v, stderr));
}

/// The default backend on a machine without CUDA or a hardware GPU is the fast CPU one:
/// HF's first 4 greedy tokens (" Paris.\n\n", each with a wide margin).
#[test]
fn run_on_the_fast_cpu_backend_greedy_equals_hf() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let (ok, v, stderr) = greedy_on("cpu", &path);
    assert!(v["backend"].as_str().is_some_and(|b| b.contains("threads,")), "the fast backend names its instruction set: {}", v["backend"]);
    assert_hf_greedy("cpu", (ok, v, stderr));
}

/// `--backend wgpu` end to end (Session, on-device argmax): HF's greedy tokens.
#[test]
fn run_on_wgpu_greedy_equals_hf() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let (ok, v, stderr) = greedy_on("wgpu", &path);
    if !ok && !required("WGPU") && stderr.contains("--backend wgpu") {
        eprintln!("SKIPPED: {stderr}");
        return;
    }
    assert_hf_greedy("wgpu", (ok, v, stderr));
}

#[test]
fn devices_lists_adapters_with_limits() {
    let (ok, v, stderr) = strata(&["devices", "--json"]);
    assert!(ok, "{stderr}");
    assert!(v["cpu"].as_str().unwrap().starts_with("cpu"));
    let cuda = &v["cuda"];
    assert!(cuda["devices"].is_array(), "{cuda}");
    if !strata_cuda::driver_present() {
        assert!(cuda["error"].as_str().unwrap().contains("no CUDA driver"), "{cuda}");
    }
    if required("CUDA") {
        assert!(!cuda["devices"].as_array().unwrap().is_empty(), "{cuda}");
    }
    let adapters = v["wgpu"].as_array().unwrap();
    if required("WGPU") {
        assert!(!adapters.is_empty(), "no wgpu adapter listed");
        for a in adapters {
            assert!(a["max_storage_buffer_binding_size"].as_u64().unwrap() >= 128 << 20, "{a}");
            assert!(a["name"].as_str().is_some_and(|n| !n.is_empty()));
        }
    }
}
