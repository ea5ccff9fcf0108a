//! The fast CPU backend on the real models: against Hugging Face transformers' f32 logits
//! (the reference fixtures), and the engine invariants that must hold on every backend
//! (incremental == recompute, chunked prefill == one shot, streamed == resident).
//!
//! The fast backend quantises matmul inputs to 8 bits (as llama.cpp does), so it is not
//! held to the reference's 1e-3 against HF: it must keep HF's top-1 wherever HF leads by
//! >= 0.75 logits under teacher forcing, and its softmax must stay close (KL divergence
//! from HF's distribution per position below a bound); max |dlogit| and KL are printed.

use strata::arch::forward::Logits;
use strata::backend::Backend;
use strata_conformance::engine::{argmax, assert_chunked_prefill_equals_one_shot, assert_incremental_equals_recompute, fast_cpu, streamed_equals_resident, CpuModel};
use strata_conformance::fixtures::{self, ids};
use strata_conformance::models;

/// KL(p || q) of the softmaxes of two logit rows, in nats.
fn kl(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    let lse = |l: &[f32]| {
        let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        m + l.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln()
    };
    let (lp, lq) = (lse(p_logits), lse(q_logits));
    p_logits.iter().zip(q_logits).map(|(&a, &b)| {
        let lpa = a as f64 - lp;
        lpa.exp() * (lpa - (b as f64 - lq))
    }).sum()
}

fn against_hf(key: &str, file: &str, max_kl: f64) {
    let Some(path) = models::find(file) else { return };
    let m = CpuModel::load_on(fast_cpu(), &path);
    let r = fixtures::json(&format!("reference/{key}.hf.json"));
    let v = m.vocab();
    let (mut worst_d, mut worst_kl, mut flips) = (0f32, 0f64, 0);
    for (i, case) in r["cases"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&case["prompt_ids"]);
        let greedy = ids(&case["greedy"]);
        let want = fixtures::f32s(&format!("reference/{}", case["final_logits_file"].as_str().unwrap()));
        let mut kv = m.cache(prompt.len() + greedy.len());
        let got = m.run(&mut kv, &prompt, Logits::Last);
        let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let k = kl(&want, &got);
        println!("{key} prompt {i} ({} tokens): max |dlogit| vs HF f32 {d:.3}, KL {k:.2e}", prompt.len());
        worst_d = worst_d.max(d);
        worst_kl = worst_kl.max(k);
        assert!(k <= max_kl, "{key} prompt {i}: KL {k} > {max_kl}");
        // Teacher forcing along HF's greedy continuation.
        let mut kv = m.cache(prompt.len() + greedy.len());
        let mut seq = prompt.clone();
        seq.extend_from_slice(&greedy[..greedy.len() - 1]);
        let all = m.run(&mut kv, &seq, Logits::All);
        for (step, top5) in case["top5"].as_array().unwrap().iter().enumerate() {
            let row = &all[(prompt.len() - 1 + step) * v..(prompt.len() + step) * v];
            let hf = ids(&top5["ids"]);
            let l: Vec<f64> = top5["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            let ours = argmax(row) as u32;
            if l[0] - l[1] >= 0.75 {
                assert_eq!(ours, hf[0], "{key} prompt {i} step {step}: top-1 {ours} vs HF {} (margin {:.2})", hf[0], l[0] - l[1]);
            } else if ours != hf[0] {
                flips += 1;
            }
        }
    }
    println!("{key} on {}: worst max |dlogit| {worst_d:.3}, worst KL {worst_kl:.2e}, near-tie top-1 flips {flips}", m.b.name());
}

#[test]
fn smollm2_close_to_hf_f32() {
    against_hf("smollm2", models::SMOLLM2, 0.02);
}

#[test]
fn gemma3_close_to_hf_f32() {
    against_hf("gemma3", models::GEMMA3, 0.02);
}

const PROMPT: &[u32] = &[504, 3458, 282, 4649, 314, 2867, 30, 378, 2396, 1536];

/// Each token's activations are quantised on their own and the kernels sum in the same
/// order for any number of tokens, so one token at a time gives the bits of one pass.
#[test]
fn incremental_decode_equals_full_recompute() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    assert_incremental_equals_recompute(&CpuModel::load_on(fast_cpu(), &path), PROMPT);
}

#[test]
fn chunked_prefill_equals_one_shot() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    assert_chunked_prefill_equals_one_shot(&CpuModel::load_on(fast_cpu(), &path), PROMPT);
}

#[test]
fn smollm2_streamed_equals_resident() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    streamed_equals_resident(fast_cpu(), fast_cpu(), &path, 16);
}

#[test]
fn gemma3_streamed_equals_resident() {
    let Some(path) = models::find(models::GEMMA3) else { return };
    streamed_equals_resident(fast_cpu(), fast_cpu(), &path, 16);
}
