//! After warm-up, a decode step on the wgpu backend creates no buffer and no bind group
//! (issue 16, item 5): activations come back from the backend's free list, parameter
//! blocks and host uploads go to per-submission arenas, bind groups are cached
//! (`runtime/src/backend/webgpu/reuse.rs`). The backend's own creation counter proves it;
//! the first, cold step shows that the counter counts. Whether the reused buffers compute
//! the right thing is engine_wgpu.rs's and ops_wgpu.rs's job (they run on the same path).

use strata::backend::webgpu::{Creations, WgpuBackend, WgpuOptions};
use strata::backend::Backend;
use strata::kv_cache::KvCache;
use strata_conformance::engine::{decode_three, wgpu_or_skip, ModelOn, THREE_PROMPTS};
use strata_conformance::models;

/// Top-k the sampler asks the device for (`Session`'s default sampling path).
const TOP_K: usize = 40;

fn creations_since(b: &WgpuBackend, before: Creations) -> Creations {
    let now = b.creations();
    Creations { buffers: now.buffers - before.buffers, bind_groups: now.bind_groups - before.bind_groups }
}

/// One greedy decode step as a session takes it: the forward pass, then the device top-k.
fn step(m: &ModelOn<WgpuBackend>, kv: &mut KvCache<WgpuBackend>, tok: u32) -> u32 {
    let logits = m.run_last(kv, &[tok]);
    let best = pollster::block_on(m.b.top_k(&logits, m.model.config.vocab_size as usize, TOP_K)).unwrap();
    best[0].0
}

/// Prefills `prompt`, takes `warm` steps, and returns what `steps` more created.
fn decode_creations(file: &str, prompt: &[u32], warm: usize, steps: usize) -> Option<(Creations, Creations)> {
    let path = models::find(file)?;
    let m = ModelOn::load(wgpu_or_skip(WgpuOptions::default())?, &path);
    let mut kv = m.cache(64);
    let loaded = m.b.creations();
    let logits = m.run_last(&mut kv, prompt);
    let mut tok = pollster::block_on(m.b.top_k(&logits, m.model.config.vocab_size as usize, TOP_K)).unwrap()[0].0;
    drop(logits);
    tok = step(&m, &mut kv, tok);
    let cold = creations_since(&m.b, loaded);
    for _ in 1..warm {
        tok = step(&m, &mut kv, tok);
    }
    let before = m.b.creations();
    for _ in 0..steps {
        tok = step(&m, &mut kv, tok);
    }
    assert_eq!(kv.len, prompt.len() + warm + steps, "every step appended to the cache");
    Some((cold, creations_since(&m.b, before)))
}

#[test]
fn a_warm_decode_step_creates_no_buffer_or_bind_group() {
    let Some((cold, warm)) = decode_creations(models::SMOLLM2, &[1, 504, 3458, 282], 3, 5) else { return };
    // The counter counts: the prompt and the first step made their buffers and bind groups.
    assert!(cold.buffers > 10 && cold.bind_groups > 30 * 5, "cold: {cold:?}");
    assert_eq!(warm, Creations::default(), "5 warm decode steps of SmolLM2 created these");
}

/// Gemma 3 records more ops per step than one submission holds, so its steps submit
/// mid-pass (the arenas start over, RoPE tables are uploaded again), and its embedding
/// is split over several buffers on lavapipe: still nothing created.
#[test]
fn a_warm_gemma3_step_submitting_mid_pass_creates_nothing() {
    let Some((cold, warm)) = decode_creations(models::GEMMA3, &[2, 818, 5279, 529], 2, 2) else { return };
    assert!(cold.bind_groups > 0, "cold: {cold:?}");
    assert_eq!(warm, Creations::default(), "2 warm decode steps of Gemma 3 created these");
}

/// Continuous batching's steady state: three sequences decoding together.
#[test]
fn a_warm_batched_decode_step_creates_nothing() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let Some(b) = wgpu_or_skip(WgpuOptions::default()) else { return };
    let m = ModelOn::load(b, &path);
    let mut kvs: Vec<_> = (0..3).map(|_| m.cache(64)).collect();
    for (kv, p) in kvs.iter_mut().zip(THREE_PROMPTS) {
        drop(m.run_last(kv, p));
    }
    let step = |kvs: &mut [KvCache<WgpuBackend>], tok: u32| {
        let logits = decode_three(&m.net(), kvs, tok);
        // Read back like a server step does: every sequence's row.
        pollster::block_on(m.b.read(&logits, 0, 3 * m.model.config.vocab_size as usize)).unwrap();
    };
    for tok in [30, 378, 2396] {
        step(&mut kvs, tok);
    }
    let before = m.b.creations();
    for tok in [1536, 42, 99, 7] {
        step(&mut kvs, tok);
    }
    assert_eq!([kvs[0].len, kvs[1].len, kvs[2].len], [11, 9, 10], "every step appended to every cache");
    assert_eq!(creations_since(&m.b, before), Creations::default(), "4 warm batched steps of 3 sequences created these");
}
