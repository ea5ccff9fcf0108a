//! Model conformance on the wgpu backend: real models, wgpu vs the CPU reference backend.
//! For each prompt: final logits cosine >= 0.9999 after the prompt and after each of 8
//! greedy steps; the device's own argmax (on-device top-k) equals the CPU's top-1 at every
//! step where the CPU's top-1 leads by >= 0.1 logits (f16 weights may flip exact
//! near-ties; they are counted and printed). Both backends are fed the CPU's token, so one
//! flipped near-tie cannot cascade. Needs the models (scripts/fetch_models.sh) and an
//! adapter (lavapipe in CI: STRATA_REQUIRE_WGPU=1).

use strata::backend::webgpu::{WgpuBackend, WgpuOptions};
use strata_conformance::engine::{compare_with_cpu, wgpu_or_skip};
use strata_conformance::models;

const MIN_COSINE: f64 = 0.9999;
const MARGIN: f32 = 0.1;

fn wgpu(f16: bool) -> Option<WgpuBackend> {
    let mut opts = WgpuOptions::default();
    if f16 {
        // The f16 variant where the adapter has it (hardware GPUs' default).
        let shader_f16 = pollster::block_on(strata::backend::webgpu::adapters()).first().is_some_and(|a| a.shader_f16);
        opts.f16 = Some(true).filter(|_| shader_f16);
    }
    wgpu_or_skip(opts)
}

/// Returns (near-ties skipped, worst cosine).
fn compare(file: &str, f16: bool, prompts: &[&str], steps: usize) -> Option<(usize, f64)> {
    let path = models::find(file)?;
    let b = wgpu(f16)?;
    Some(compare_with_cpu(b, &path, prompts, steps, MIN_COSINE, MARGIN))
}

/// In the f16 variant (dequantised weights held in f16) where the adapter has it.
#[test]
fn smollm2_wgpu_matches_cpu() {
    compare(models::SMOLLM2, true, &["The capital of France is", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"], 8);
}

/// Gemma 3: its 168 MiB Q8_0 embedding (also the tied output head) exceeds lavapipe's
/// 128 MiB binding limit, so this runs the split-weight path on a real model.
#[test]
fn gemma3_wgpu_matches_cpu() {
    compare(models::GEMMA3, false, &["The capital of France is"], 2);
}
