//! The weight types Q2_K, Q3_K, IQ4_NL, IQ4_XS and MXFP4 on real models that no one here
//! quantised: SmolLM2 and Gemma 3 requantised by llama.cpp's own llama-quantize (built from
//! source, scripts/llama_cpp.sh) and SmolLM2 in MXFP4 by gguf-py's quantiser
//! (scripts/make_quant_models.sh). Per file:
//! - every block of every tensor dequantises to gguf-py's values, bit for bit (sha256 of
//!   the whole tensor against scripts/make_quant_model_fixtures.py);
//! - on the reference and the fast CPU backends, the logits pass the margin-aware checks
//!   against llama.cpp's own outputs on the same file (`strata_conformance::llamacpp`,
//!   fixtures from scripts/make_reference_fixtures.py --quant);
//! - on the reference backend, the logits are within 0.1 of llama.cpp computing in f32 on
//!   the file's f32 twin (every tensor dequantised by gguf-py): the whole model, each new
//!   type's blocks included, means what llama.cpp means by it.
//! The files are made, not fetched: a test skips where they are missing, unless
//! STRATA_REQUIRE_QUANT_MODELS=1. CI does not build llama.cpp; it checks rows of these
//! files through tests/dequant.rs and every dtype through the op harness.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use strata::quant::dequant::dequantize;
use strata::source::{ByteSource, FileSource};
use strata_conformance::engine::{fast_cpu, CpuModel};
use strata_conformance::llamacpp::{Bounds, Excused};
use strata_conformance::{fixtures, llamacpp, models};

/// (fixture key, file in the model cache).
const FILES: &[(&str, &str)] = &[
    ("smollm2.q2_k", "SmolLM2-135M-Instruct.Q2_K.gguf"),
    ("smollm2.q3_k_m", "SmolLM2-135M-Instruct.Q3_K_M.gguf"),
    ("smollm2.iq4_nl", "SmolLM2-135M-Instruct.IQ4_NL.gguf"),
    ("smollm2.iq4_xs", "SmolLM2-135M-Instruct.IQ4_XS.gguf"),
    ("smollm2.mxfp4", "SmolLM2-135M-Instruct.MXFP4.gguf"),
    ("gemma3.q2_k", "gemma-3-270m.Q2_K.gguf"),
    ("gemma3.q3_k_m", "gemma-3-270m.Q3_K_M.gguf"),
    ("gemma3.iq4_nl", "gemma-3-270m.IQ4_NL.gguf"),
    ("gemma3.iq4_xs", "gemma-3-270m.IQ4_XS.gguf"),
];

/// The files to check: all, or those whose key contains STRATA_QUANT_ONLY.
fn files() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    let only = std::env::var("STRATA_QUANT_ONLY").unwrap_or_default();
    FILES.iter().filter(move |(key, _)| key.contains(only.as_str()))
}

fn find(file: &str) -> Option<PathBuf> {
    let p = models::cache_dir().join("models").join(file);
    if p.exists() {
        return Some(p);
    }
    assert_ne!(std::env::var("STRATA_REQUIRE_QUANT_MODELS").as_deref(), Ok("1"), "{} is missing: run scripts/make_quant_models.sh", p.display());
    eprintln!("skipping: {} not found (run scripts/make_quant_models.sh)", p.display());
    None
}

/// Relaxed cases against llama.cpp on the quantised files:
/// - Gemma 3's BOS-less single-token prompt is excused its top-20 overlap, as on the
///   Q4_K_M file (engine_llamacpp.rs says why).
/// - Teacher-forced top-1 on two cases where llama.cpp's Q8_K activations (256 values per
///   scale, against Gemma 3's outliers) move its top-5 logits by up to 3.3 (Q2_K, "single",
///   a 2-bit model already producing noise) and 3.3 (IQ4_XS, "long"), so its top-1 flips
///   at margins 0.88-1.04: measured as the reference backend's distance from it, while the
///   same backend is within 0.046 of llama.cpp computing in f32 on the same weights on
///   these very cases (`reference_backend_matches_llama_cpp_in_f32_on_the_same_weights`,
///   which excuses nothing). The same file's IQ4_NL, whose llama.cpp kernel quantises
///   activations per 32 values, moves by 0.35-0.5 on the same prompts.
fn excused(key: &str) -> Excused<'static> {
    match key {
        "gemma3.q2_k" => Excused { overlap: &["single"], top1: &["single"] },
        "gemma3.iq4_xs" => Excused { overlap: &["single"], top1: &["long"] },
        k if k.starts_with("gemma3") => Excused { overlap: &["single"], top1: &[] },
        _ => Excused::default(),
    }
}

#[test]
fn every_tensor_dequantises_as_gguf_py() {
    let fx = fixtures::json("reference/quant/dequant.json");
    for &(_, file) in files() {
        let Some(path) = find(file) else { continue };
        let want = fx["files"][file].as_array().unwrap_or_else(|| panic!("{file}: no digests"));
        let files = strata::model::open(&path).unwrap();
        assert_eq!(files.tensors.len(), want.len(), "{file}: tensor count");
        let src = FileSource::open(&path).unwrap();
        let mut types = std::collections::BTreeSet::new();
        for t in &files.tensors {
            let w = want.iter().find(|w| w["name"] == t.name.as_str()).unwrap_or_else(|| panic!("{file}: {} not in the fixture", t.name));
            assert_eq!(w["type"], t.dtype.name(), "{file} {}", t.name);
            let mut raw = vec![0u8; t.nbytes as usize];
            src.read_exact_at(t.offset, &mut raw).unwrap();
            let mut vals = vec![0f32; t.shape.0.iter().product::<u64>() as usize];
            dequantize(t.dtype, &raw, &mut vals).unwrap();
            let digest = Sha256::digest(vals.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, w["sha256"].as_str().unwrap(), "{file} {} ({}): dequantised values differ from gguf-py's", t.name, t.dtype);
            types.insert(t.dtype.name());
        }
        println!("{file}: {} tensors equal gguf-py's, types {types:?}", files.tensors.len());
    }
}

#[test]
fn reference_backend_matches_llama_cpp() {
    for &(key, file) in files() {
        let Some(path) = find(file) else { continue };
        llamacpp::check(&CpuModel::load(&path), &path, &format!("quant/{key}"), Bounds::QUANTISED, excused(key));
    }
}

#[test]
fn fast_cpu_backend_matches_llama_cpp() {
    for &(key, file) in files() {
        let Some(path) = find(file) else { continue };
        llamacpp::check(&CpuModel::load_on(fast_cpu(), &path), &path, &format!("quant/{key}"), Bounds::QUANTISED, excused(key));
    }
}

/// The reference backend computes in f32 on the dequantised blocks; so does llama.cpp on
/// the file's f32 twin (every tensor dequantised by gguf-py, f32 KV cache): the two agree
/// to the order of f32 sums on every prompt, the cases excused above included.
#[test]
fn reference_backend_matches_llama_cpp_in_f32_on_the_same_weights() {
    for &(key, file) in files() {
        let Some(path) = find(file) else { continue };
        llamacpp::check(&CpuModel::load(&path), &path, &format!("quant/{key}.f32"), Bounds::F32_TWIN, Excused::default());
    }
}
