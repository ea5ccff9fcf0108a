//! The CPU reference engine against Hugging Face transformers (float32; fixtures from
//! scripts/make_hf_fixtures.py). transformers dequantises the GGUFs itself, so both sides
//! compute with the same weights: the comparison is close to exact. `smollm2-f32` is the
//! F32 safetensors copy (scripts/gguf_to_safetensors.py --dtype f32), loaded by strata
//! through its safetensors path: max |dlogit| <= 1e-3 and 32 identical greedy tokens.

use strata::arch::forward::Logits;
use strata_conformance::engine::{argmax, CpuModel};
use strata_conformance::fixtures::{self, ids};
use strata_conformance::models;

/// Checks final logits (max |d| <= `tol`), the 32 greedy tokens (generated incrementally
/// with the KV cache; HF recomputed the whole sequence each step) and teacher-forced
/// top-1 at every step.
fn check(key: &str, model_file: &str, tol: f32) {
    let Some(path) = models::find(model_file) else { return };
    let m = CpuModel::load(&path);
    let r = fixtures::json(&format!("reference/{key}.hf.json"));
    assert_eq!(r["vocab_size"].as_u64().unwrap() as usize, m.vocab());
    for (i, case) in r["cases"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&case["prompt_ids"]);
        let want_greedy = ids(&case["greedy"]);
        let want = fixtures::f32s(&format!("reference/{}", case["final_logits_file"].as_str().unwrap()));
        let mut kv = m.cache(prompt.len() + want_greedy.len());
        let mut logits = m.run(&mut kv, &prompt, Logits::Last);
        let d = logits.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("{key} prompt {i} ({} tokens): final max |dlogit| vs HF = {d:.2e}", prompt.len());
        assert!(d <= tol, "{key} prompt {i}: max |dlogit| {d} > {tol}");
        let mut greedy = Vec::new();
        for _ in 0..want_greedy.len() {
            let next = argmax(&logits) as u32;
            greedy.push(next);
            logits = m.run(&mut kv, &[next], Logits::Last);
        }
        assert_eq!(greedy, want_greedy, "{key} prompt {i}: greedy continuation");
        // Teacher forcing in one pass: HF's top-5 ids in HF's order wherever HF separates them.
        let mut kv = m.cache(prompt.len() + want_greedy.len());
        let mut seq = prompt.clone();
        seq.extend_from_slice(&want_greedy[..want_greedy.len() - 1]);
        let all = m.run(&mut kv, &seq, Logits::All);
        let v = m.vocab();
        for (step, top5) in case["top5"].as_array().unwrap().iter().enumerate() {
            let row = &all[(prompt.len() - 1 + step) * v..(prompt.len() + step) * v];
            for (&id, want) in ids(&top5["ids"]).iter().zip(top5["logits"].as_array().unwrap()) {
                let d = (row[id as usize] - want.as_f64().unwrap() as f32).abs();
                assert!(d <= tol, "{key} prompt {i} step {step} token {id}: |dlogit| {d}");
            }
        }
    }
}

#[test]
fn smollm2_q4_1_matches_hf() {
    check("smollm2", models::SMOLLM2, 1e-3);
}

#[test]
fn smollm2_f32_safetensors_matches_hf_exactly() {
    check("smollm2-f32", models::SMOLLM2_F32, 1e-3);
}

#[test]
fn gemma3_matches_hf() {
    check("gemma3", models::GEMMA3, 1e-3);
}
