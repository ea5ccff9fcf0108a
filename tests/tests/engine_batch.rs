//! Batched multi-sequence forward (what continuous batching stands on): several sequences,
//! each with its own KV cache, in one pass — prefills beside decodes, sequences joining and
//! leaving — give each sequence exactly what it gets alone; attention never crosses
//! sequences. On the reference backend bit for bit, on every architecture (the tiny HF
//! fixtures: GQA, biases, QK-norm, fused projections, sliding windows, soft-caps,
//! local/global layers) and on the real SmolLM2; on the fast CPU and wgpu backends within
//! the tolerance their chunked prefill already has against one-shot (a batch changes how
//! many rows a matmul tiles together, which may reorder a float sum).

use strata::arch::forward::{Logits, Seq};
use strata::backend::Backend;
use strata_conformance::engine::{assert_batched_equals_alone, fast_cpu, wgpu_or_skip, ModelOn};
use strata_conformance::{fixtures, models};

const PROMPT: &[u32] = &[504, 3458, 282, 4649, 314, 2867, 30, 378, 2396, 1536];
const ARCHS: &[&str] = &["llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3", "qwen2-yarn"];
/// The fast and wgpu backends' tolerance (as for chunked vs one-shot prefill).
const TOL: f32 = 1e-4;

fn tiny<B: Backend>(b: B, arch: &str) -> (ModelOn<B>, Vec<u32>) {
    let m = ModelOn::load(b, &fixtures::path(&format!("tiny/{arch}")));
    let tokens = fixtures::ids(&fixtures::json(&format!("tiny/{arch}/tokens.json"))["tokens"]);
    (m, tokens[..12].to_vec())
}

#[test]
fn reference_every_architecture_bit_identical() {
    for arch in ARCHS {
        println!("{arch}:");
        let (m, prompt) = tiny(strata::backend::cpu::CpuBackend::new(), arch);
        assert_batched_equals_alone(&m, &prompt, 0.0);
    }
}

#[test]
fn reference_smollm2_bit_identical() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    assert_batched_equals_alone(&ModelOn::load(strata::backend::cpu::CpuBackend::new(), &path), PROMPT, 0.0);
}

#[test]
fn fast_cpu_every_architecture() {
    for arch in ARCHS {
        println!("{arch}:");
        let (m, prompt) = tiny(fast_cpu(), arch);
        assert_batched_equals_alone(&m, &prompt, TOL);
    }
}

#[test]
fn fast_cpu_smollm2_and_gemma3() {
    for file in [models::SMOLLM2, models::GEMMA3] {
        let Some(path) = models::find(file) else { return };
        assert_batched_equals_alone(&ModelOn::load(fast_cpu(), &path), PROMPT, TOL);
    }
}

/// On lavapipe (CI) the tiny models only: the per-sequence attention dispatches are what
/// differs from a batch of one, and they run the same on any model size.
#[test]
fn wgpu_sliding_window_fused_and_softcapped() {
    for arch in ["llama", "phi3", "gemma2", "gemma3"] {
        let Some(b) = wgpu_or_skip(Default::default()) else { return };
        println!("{arch}:");
        let (m, prompt) = tiny(b, arch);
        assert_batched_equals_alone(&m, &prompt, TOL);
    }
}

/// Bad batches are typed errors naming the sequence at fault, and no cache advances.
#[test]
fn bad_batches_are_errors_and_advance_nothing() {
    let (m, prompt) = tiny(strata::backend::cpu::CpuBackend::new(), "llama");
    let net = m.net();
    let err = net.forward_batch(&mut []).unwrap_err().to_string();
    assert!(err.contains("empty batch"), "{err}");

    let (mut a, mut b) = (m.cache(16), m.cache(16));
    let err = net
        .forward_batch(&mut [Seq { kv: &mut a, tokens: &prompt[..4], logits: Logits::Last }, Seq { kv: &mut b, tokens: &[], logits: Logits::Last }])
        .unwrap_err()
        .to_string();
    assert!(err.contains("sequence 1 of the batch: no tokens"), "{err}");

    // Sequence 1 overflows its cache: sequence 0's valid part must not advance either.
    let mut small = m.cache(4);
    let err = net
        .forward_batch(&mut [Seq { kv: &mut a, tokens: &prompt[..4], logits: Logits::Last }, Seq { kv: &mut small, tokens: &prompt[..5], logits: Logits::Last }])
        .unwrap_err()
        .to_string();
    assert!(err.contains("sequence 1 of the batch: 5 positions exceed the KV cache capacity 4"), "{err}");
    assert_eq!((a.len, small.len), (0, 0), "no cache advanced");

    // A cache made for another model (Qwen2's tiny model: other widths).
    let (other, _) = tiny(strata::backend::cpu::CpuBackend::new(), "qwen2");
    let mut foreign = other.cache(16);
    assert!(foreign.k_width != a.k_width || foreign.layers.len() != a.layers.len(), "the fixtures differ in cache shape");
    let err = net
        .forward_batch(&mut [Seq { kv: &mut a, tokens: &prompt[..4], logits: Logits::Last }, Seq { kv: &mut foreign, tokens: &prompt[..4], logits: Logits::Last }])
        .unwrap_err()
        .to_string();
    assert!(err.contains("sequence 1 of the batch") && err.contains("a cache made for another model"), "{err}");
    assert_eq!((a.len, foreign.len), (0, 0));
}
