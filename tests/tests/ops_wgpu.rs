//! The op conformance harness on the wgpu backend (lavapipe in CI): every op, every weight
//! dtype, against the CPU reference; in each kernel variant the adapter offers.
//! Filter cases with STRATA_OPS=pattern[,pattern]. Without an adapter the tests say so and
//! pass, unless STRATA_REQUIRE_WGPU=1 (CI sets it).

use strata::backend::webgpu::WgpuOptions;
use strata::backend::Backend;
use strata_conformance::engine::wgpu_or_skip;
use strata_conformance::ops::{random_weight, run_and_assert, Rng};

fn run(opts: WgpuOptions, pattern: &str) {
    let Some(b) = wgpu_or_skip(opts) else { return };
    let f16 = b.target().f16;
    run_and_assert(&b, pattern, f16);
}

/// What the adapter is given by default (on lavapipe: f32 with subgroup reductions).
#[test]
fn ops_default_variant() {
    run(WgpuOptions::default(), "");
}

/// Dequantised weights held in f16 (hardware GPUs' default), where the adapter has SHADER_F16.
#[test]
fn ops_f16_variant() {
    let Some(b) = wgpu_or_skip(WgpuOptions::default()) else { return };
    if !b.adapter().shader_f16 {
        eprintln!("SKIPPED: {} has no SHADER_F16", b.adapter().name);
        return;
    }
    drop(b);
    run(WgpuOptions { f16: Some(true), ..Default::default() }, "");
}

/// Plain f32 kernels with workgroup-memory reductions (adapters without f16 / subgroups,
/// e.g. Chrome's SwiftShader has no f16).
#[test]
fn ops_f32_no_subgroups() {
    run(WgpuOptions { f16: Some(false), subgroups: Some(false), ..Default::default() }, "matmul,embed,rms_norm,add_bias,top_k");
}

/// Weights larger than the storage-binding limit are split by rows: a 2 KiB limit splits
/// every weight of these cases into several parts, and results must not change.
#[test]
fn ops_weights_split_over_bindings() {
    let opts = WgpuOptions { max_binding: Some(2048), ..Default::default() };
    let Some(b) = wgpu_or_skip(opts.clone()) else { return };
    let mut rng = Rng::new(1);
    let dt = strata::quant::DType::Q4_0;
    let w = b.upload_weight(dt, 67, 96, &random_weight(dt, 67, 96, &mut rng)).unwrap();
    assert_eq!(w.parts(), 67usize.div_ceil(2048 / 54), "rows of 54 bytes in 2 KiB parts");
    drop(b);
    run(opts, "matmul,embed");
}

/// Limits are typed errors that name the limit, before anything is allocated.
#[test]
fn limits_are_clear_errors() {
    let Some(b) = wgpu_or_skip(WgpuOptions::default()) else { return };
    let limit = b.adapter().max_storage_buffer_binding_size;
    let err = b.alloc((limit / 4 + 1) as usize).err().expect("an activation over the binding limit");
    assert!(err.to_string().contains("max_storage_buffer_binding_size"), "{err}");
    let err = b.upload_weight(strata::quant::DType::IQ2XXS, 4, 256, &[0u8; 4 * 66]).err().expect("IQ2_XXS is not a compute dtype");
    assert!(matches!(err, strata::backend::BackendError::Unsupported { .. }), "{err}");
    let q = b.alloc(600).unwrap();
    let mut out = b.alloc(600).unwrap();
    let args = strata::backend::AttnArgs { tokens: 1, past: 0, n_heads: 1, n_kv_heads: 1, head_dim: 600, head_dim_v: 600, scale: 1.0, window: None, softcap: None };
    assert!(!b.supports_op(&args.op()), "supports_op declines what attention refuses");
    let err = b.attention(&q, &q, &q, &args, &mut out).expect_err("head_dim 600 is past the kernel's 512");
    assert!(matches!(err, strata::backend::BackendError::Unsupported { .. }), "{err}");
    assert!(!b.supports_op(&strata::backend::Op::Matmul { dtype: strata::quant::DType::IQ2XXS, rows: 1, n: 4, k: 256 }));
    let err = b.embed(&b.upload_weight(strata::quant::DType::F32, 2, 4, &[0u8; 32]).unwrap(), &[2], 1.0, &mut out).expect_err("id 2 of 2 rows");
    assert!(err.to_string().contains("token id 2"), "{err}");
}
