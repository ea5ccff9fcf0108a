//! The CPU engines (the reference, and the fast backend) against llama.cpp on the real quantised models (fixtures from
//! scripts/make_reference_fixtures.py). Quantised models legitimately differ by up to ~1
//! logit (llama.cpp quantises activations to 8 bits for its dot products), so the checks
//! are margin-aware: final top-20 overlap >= 18 and cosine >= 0.99; under teacher forcing,
//! top-1 must agree wherever llama.cpp's top-1 leads its second by >= 0.75 logits.

use strata::arch::forward::Logits;
use strata::backend::Backend;
use strata_conformance::engine::{argmax, cosine, fast_cpu, top_k, CpuModel};
use strata_conformance::fixtures::{self, ids};
use strata_conformance::models;

/// Gemma 3's BOS-less single-token prompt: that token acts as the attention sink, with
/// activations large enough that llama.cpp's 8-bit activation quantisation moves a few
/// logits by up to ~1.1 (top-20 overlap 17). transformers, computing in f32 with the same
/// weights, agrees with strata to 1e-4 there (engine_hf.rs). For this case alone the
/// top-20 overlap is reported, not asserted; every other check still applies.
const OVERLAP_EXCUSED: &[(&str, &str)] = &[("gemma3", "single")];

fn check_model(key: &str, file: &str) {
    let Some(path) = models::find(file) else { return };
    check_on(&CpuModel::load(&path), key);
}

fn check_on<B: Backend>(m: &CpuModel<B>, key: &str) {
    println!("backend: {}", m.b.name());
    let r = fixtures::json(&format!("reference/{key}.llamacpp.json"));
    assert_eq!(r["vocab_size"].as_u64().unwrap() as usize, m.vocab());
    let mut excused = 0;
    for case in r["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let prompt = ids(&case["prompt_ids"]);
        let greedy = ids(&case["greedy"]);
        let want = fixtures::f32s(&format!("reference/{}", case["final_logits_file"].as_str().unwrap()));

        // Final position of the prompt.
        let mut kv = m.cache(prompt.len() + greedy.len());
        let got = m.run(&mut kv, &prompt, Logits::Last);
        let cos = cosine(&got, &want);
        let (ours20, ref20) = (top_k(&got, 20), top_k(&want, 20));
        let overlap = ours20.iter().filter(|i| ref20.contains(i)).count();
        // Margin-aware: a reference top-20 id we miss is excused when llama.cpp itself puts
        // it within 0.25 logits of its 20th value (a near-tie at the boundary).
        let boundary = want[ref20[19]];
        let missed_near_tie = ref20.iter().filter(|i| !ours20.contains(i) && want[**i] - boundary < 0.25).count();
        println!("{key}/{name}: final cosine {cos:.5}, top-20 overlap {overlap}/20 ({missed_near_tie} missed at a near-tie boundary)");
        assert!(cos >= 0.99, "{key}/{name}: cosine {cos}");
        if !OVERLAP_EXCUSED.contains(&(key, name)) {
            assert!(overlap + missed_near_tie >= 18, "{key}/{name}: top-20 overlap {overlap}");
        }

        // Teacher forcing along llama.cpp's greedy continuation, all 32 rows at once.
        let mut kv = m.cache(prompt.len() + greedy.len());
        let mut seq = prompt.clone();
        seq.extend_from_slice(&greedy[..greedy.len() - 1]);
        let all = m.run(&mut kv, &seq, Logits::All);
        let v = m.vocab();
        for (step, top5) in case["top5"].as_array().unwrap().iter().enumerate() {
            let row = &all[(prompt.len() - 1 + step) * v..(prompt.len() + step) * v];
            let ref_ids = ids(&top5["ids"]);
            let ref_logits: Vec<f64> = top5["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            let margin = ref_logits[0] - ref_logits[1];
            let ours = argmax(row) as u32;
            if margin >= 0.75 {
                assert_eq!(ours, ref_ids[0], "{key}/{name} step {step}: top-1 {ours} vs llama.cpp {} (margin {margin:.2})", ref_ids[0]);
            } else if ours != ref_ids[0] {
                excused += 1;
            }
        }
    }
    println!("{key}: {excused} near-tie steps (margin < 0.75) where top-1 differed, excused");
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
    check_on(&CpuModel::load_on(fast_cpu(), &path), "smollm2");
}

#[test]
fn gemma3_matches_llama_cpp_on_the_fast_cpu_backend() {
    let Some(path) = models::find(models::GEMMA3) else { return };
    check_on(&CpuModel::load_on(fast_cpu(), &path), "gemma3");
}
