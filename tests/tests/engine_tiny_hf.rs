//! Every architecture's forward pass against HF transformers, on tiny random-weight models
//! made by scripts/make_tiny_hf_models.py (committed: tests/fixtures/tiny/<arch>/). They
//! exercise what the real models do not: Phi-3's fused projections, Qwen2 biases, Qwen3 QK-norm with an explicit
//! head_dim, Gemma 2 soft-capping and query_pre_attn_scalar, sliding windows shorter than
//! the sequence, Llama 3 and YaRN RoPE scaling, GQA ratios 1/2/4, tied and untied heads — all in
//! the HF layout (rotate-half RoPE, Gemma's `1 + w` norms).

use strata::arch::forward::Logits;
use strata_conformance::engine::CpuModel;
use strata_conformance::fixtures;

fn check(arch: &str) {
    let dir = fixtures::path(&format!("tiny/{arch}"));
    let tokens = fixtures::ids(&fixtures::json(&format!("tiny/{arch}/tokens.json"))["tokens"]);
    let want = fixtures::f32s(&format!("tiny/{arch}/logits.f32"));
    let m = CpuModel::load(&dir);
    let v = m.vocab();
    assert_eq!(want.len(), tokens.len() * v);

    // One pass over all 24 tokens.
    let mut kv = m.cache(tokens.len());
    let all = m.run(&mut kv, &tokens, Logits::All);
    let d = all.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("{arch}: one pass, max |dlogit| vs HF = {d:.2e}");
    assert!(d <= 1e-4, "{arch}: max |dlogit| {d}");

    // Incremental: 8-token prefill, then one token at a time through the cache (sliding
    // windows now cut across cached positions).
    let mut kv = m.cache(tokens.len());
    let mut worst = 0f32;
    let first = m.run(&mut kv, &tokens[..8], Logits::All);
    for (p, row) in first.chunks_exact(v).enumerate() {
        worst = row.iter().zip(&want[p * v..(p + 1) * v]).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
    }
    for p in 8..tokens.len() {
        let row = m.run(&mut kv, &tokens[p..p + 1], Logits::Last);
        worst = row.iter().zip(&want[p * v..(p + 1) * v]).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
    }
    println!("{arch}: incremental, max |dlogit| vs HF = {worst:.2e}");
    assert!(worst <= 1e-4, "{arch}: incremental max |dlogit| {worst}");
}

#[test]
fn llama_gqa_llama3_rope_untied() {
    check("llama");
}

#[test]
fn qwen2_biases_gqa_4() {
    check("qwen2");
}

#[test]
fn qwen3_qk_norm_explicit_head_dim() {
    check("qwen3");
}

#[test]
fn phi3_fused_qkv_and_gate_up_sliding_window() {
    check("phi3");
}

#[test]
fn gemma2_softcaps_sliding_window() {
    check("gemma2");
}

#[test]
fn gemma3_local_global_layers() {
    check("gemma3");
}

/// transformers >= 4.56 writes `rope_parameters` (one object, or one per layer type)
/// instead of `rope_theta` / `rope_scaling`: read, never silently defaulted.
#[test]
fn rope_parameters_are_read_not_defaulted() {
    use strata::model::{Field, RopeScaling, Source};
    let dir = fixtures::path("tiny");
    let q = strata::model::load(dir.join("qwen2")).unwrap().config;
    assert_eq!(q.rope_base, 1_000_000.0);
    assert_eq!(q.provenance[Field::RopeBase], Source::ConfigJson("rope_parameters.rope_theta".into()));
    let l = strata::model::load(dir.join("llama")).unwrap().config;
    assert!(matches!(l.rope_scaling, RopeScaling::Llama3 { factor, original_context_length: 16, .. } if factor == 4.0));
    let g = strata::model::load(dir.join("gemma3")).unwrap().config;
    assert_eq!((g.rope_base, g.rope_base_local), (1_000_000.0, Some(10_000.0)));
    assert_eq!(g.provenance[Field::RopeBaseLocal], Source::ConfigJson("rope_parameters.sliding_attention.rope_theta".into()));
}

#[test]
fn qwen2_yarn_rope_scaling() {
    check("qwen2-yarn");
    let c = strata::model::load(fixtures::path("tiny/qwen2-yarn")).unwrap().config;
    // transformers' default attention factor: 0.1 * ln(4) + 1.
    assert!(matches!(c.rope_scaling, strata::model::RopeScaling::Yarn { attn_factor, .. } if (attn_factor - 1.138_629_4).abs() < 1e-6));
}
