//! The op conformance harness on the wgpu backend (lavapipe in CI): every op, every weight
//! dtype, against the CPU reference; in each kernel variant the adapter offers.
//! Filter cases with STRATA_OPS=pattern[,pattern]. Without an adapter the tests say so and
//! pass, unless STRATA_REQUIRE_WGPU=1 (CI sets it).

use strata::backend::webgpu::{WgpuBackend, WgpuOptions};
use strata::backend::Backend;
use strata_conformance::ops::{cases, filter, run_all, random_weight, Rng};

fn backend(opts: WgpuOptions) -> Option<WgpuBackend> {
    match pollster::block_on(WgpuBackend::new(opts)) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("STRATA_REQUIRE_WGPU").as_deref() != Ok("1") => {
            eprintln!("SKIPPED: no usable wgpu adapter ({e}); install mesa-vulkan-drivers for lavapipe");
            None
        }
        Err(e) => panic!("STRATA_REQUIRE_WGPU=1 but no wgpu adapter: {e}"),
    }
}

fn run(opts: WgpuOptions, pattern: &str) {
    let Some(b) = backend(opts) else { return };
    let env = std::env::var("STRATA_OPS").unwrap_or_default();
    let selected = filter(filter(cases(), pattern), &env);
    assert!(!selected.is_empty(), "no cases match");
    let report = pollster::block_on(run_all(&b, &selected, b.target().f16));
    println!("backend: {}", b.name());
    for l in &report.lines {
        println!("{l}");
    }
    println!("worst NMSE per op: {:?}", report.worst);
    println!("{}", report.summary());
    assert_eq!(report.failed, 0, "{}", report.summary());
    assert_eq!(report.unsupported, 0, "the wgpu backend implements every op: {}", report.summary());
}

/// What the adapter offers (on lavapipe: f16 weights and subgroup reductions).
#[test]
fn ops_default_variant() {
    run(WgpuOptions::default(), "");
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
    let Some(b) = backend(opts.clone()) else { return };
    let mut rng = Rng::new(1);
    let dt = strata::quant::DType::Q4_0;
    let w = b.upload_weight(dt, 67, 96, &random_weight(dt, 67, 96, &mut rng)).unwrap();
    assert_eq!(w.parts(), 67usize.div_ceil(2048 / 54), "rows of 54 bytes in 2 KiB parts");
    drop(b);
    run(opts, "matmul,embed");
}
