//! Engine invariants on the real SmolLM2 model (CPU backend): the bugs users have been
//! burned by — a KV cache never filled, positions that are not true positions, a squeezed
//! single-token path, a tied head left unloaded — each has a case here.

use strata::arch::forward::Logits;
use strata::backend::cpu::CpuBackend;
use strata::backend::{Backend, RopeArgs};
use strata::model::RopeStyle;
use strata_conformance::engine::{assert_chunked_prefill_equals_one_shot, assert_incremental_equals_recompute, max_abs_diff, CpuModel};
use strata_conformance::models;

const PROMPT: &[u32] = &[504, 3458, 282, 4649, 314, 2867, 30, 378, 2396, 1536];

fn model() -> Option<CpuModel> {
    models::find(models::SMOLLM2).map(|p| CpuModel::load(&p))
}

#[test]
fn incremental_decode_equals_full_recompute() {
    let Some(m) = model() else { return };
    assert_incremental_equals_recompute(&m, PROMPT);
}

#[test]
fn chunked_prefill_equals_one_shot() {
    let Some(m) = model() else { return };
    assert_chunked_prefill_equals_one_shot(&m, PROMPT);
}

#[test]
fn causality_later_tokens_do_not_change_earlier_logits() {
    let Some(m) = model() else { return };
    let v = m.vocab();
    let mut kv = m.cache(32);
    let short = m.run(&mut kv, &PROMPT[..5], Logits::All);
    let mut kv = m.cache(32);
    let long = m.run(&mut kv, PROMPT, Logits::All);
    assert!(max_abs_diff(&short, &long[..5 * v]) <= 1e-4);
    // ...and different later tokens give different later logits (the test can fail).
    assert!(max_abs_diff(&long[5 * v..6 * v], &long[6 * v..7 * v]) > 0.1);
}

#[test]
fn single_token_prompt_and_tied_head() {
    let Some(m) = model() else { return };
    assert!(m.weights.is_tied(), "SmolLM2 has no output.weight");
    assert!(std::ptr::eq(m.weights.output(), &m.weights.embed), "the head is the embedding buffer");
    let mut kv = m.cache(4);
    let logits = m.run(&mut kv, &[PROMPT[0]], Logits::Last);
    assert_eq!(logits.len(), m.vocab(), "[1, vocab]: nothing squeezed");
    assert!(logits.iter().all(|x| x.is_finite()));
    let spread = logits.iter().cloned().fold(f32::MIN, f32::max) - logits.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 5.0, "a real distribution, not zeros from a missing head ({spread})");
}

#[test]
fn context_overflow_is_an_error_not_garbage() {
    let Some(m) = model() else { return };
    let mut kv = m.cache(4);
    let err = m.net().forward(&mut kv, PROMPT, Logits::Last);
    assert!(err.is_err());
    assert_eq!(kv.len, 0);
}

/// RoPE angles are computed from the absolute position: at position 100000 the rotation
/// equals the closed form evaluated in f64 (no table to repeat or truncate).
#[test]
fn rope_uses_true_positions_at_any_length() {
    let b = CpuBackend::with_threads(1);
    let dim = 8;
    let inv: Vec<f32> = (0..dim / 2).map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / dim as f32)).collect();
    for style in [RopeStyle::Normal, RopeStyle::Neox] {
        for pos in [0u32, 1, 4097, 100_000] {
            let x: Vec<f32> = (0..dim).map(|i| 0.1 * (i as f32 + 1.0)).collect();
            let mut y = x.clone();
            let args = RopeArgs { rope_dim: dim, style, inv_freq: &inv, mscale: 1.0, positions: &[pos] };
            b.rope(&mut y, 1, dim, &args).unwrap();
            for (i, &f) in inv.iter().enumerate() {
                let (i0, i1) = match style {
                    RopeStyle::Normal => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + dim / 2),
                };
                let theta = f64::from(pos) * f64::from(f);
                let want0 = f64::from(x[i0]) * theta.cos() - f64::from(x[i1]) * theta.sin();
                let want1 = f64::from(x[i0]) * theta.sin() + f64::from(x[i1]) * theta.cos();
                // f32 angle arithmetic: |error| grows with the angle, ~1e-7 * theta.
                let tol = 1e-5 + 2e-7 * theta.abs();
                assert!((f64::from(y[i0]) - want0).abs() <= tol, "{style:?} pos {pos} pair {i}");
                assert!((f64::from(y[i1]) - want1).abs() <= tol, "{style:?} pos {pos} pair {i}");
            }
        }
    }
}
