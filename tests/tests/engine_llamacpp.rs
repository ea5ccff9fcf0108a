//! The CPU engines (the reference, and the fast backend) against llama.cpp on the real
//! quantised models (fixtures from scripts/make_reference_fixtures.py), by the
//! margin-aware checks of `strata_conformance::llamacpp`.

use strata::backend::Backend;
use strata_conformance::engine::{fast_cpu, CpuModel};
use strata_conformance::llamacpp;
use strata_conformance::models;

/// Gemma 3's BOS-less single-token prompt: that token acts as the attention sink, with
/// activations large enough that llama.cpp's 8-bit activation quantisation moves a few
/// logits by up to ~1.1 (top-20 overlap 17). transformers, computing in f32 with the same
/// weights, agrees with strata to 1e-4 there (engine_hf.rs). For this case alone the
/// top-20 overlap is reported, not asserted; every other check still applies.
const OVERLAP_EXCUSED: &[(&str, &str)] = &[("gemma3", "single")];

fn check_model(key: &str, file: &str) {
    let Some(path) = models::find(file) else { return };
    check_on(&CpuModel::load(&path), &path, key);
}

fn check_on<B: Backend>(m: &CpuModel<B>, path: &std::path::Path, key: &str) {
    let excused: Vec<&str> = OVERLAP_EXCUSED.iter().filter(|(k, _)| *k == key).map(|(_, n)| *n).collect();
    llamacpp::check(m, path, key, llamacpp::Bounds::QUANTISED, llamacpp::Excused { overlap: &excused, top1: &[] });
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model("smollm2", models::SMOLLM2);
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model("gemma3", models::GEMMA3);
}

#[test]
fn smollm2_matches_llama_cpp_on_the_fast_cpu_backend() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    check_on(&CpuModel::load_on(fast_cpu(), &path), &path, "smollm2");
}

#[test]
fn gemma3_matches_llama_cpp_on_the_fast_cpu_backend() {
    let Some(path) = models::find(models::GEMMA3) else { return };
    check_on(&CpuModel::load_on(fast_cpu(), &path), &path, "gemma3");
}
