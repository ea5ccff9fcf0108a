//! The CUDA backend against the CPU reference: the op harness (every op, every weight dtype;
//! also with every matmul through cuBLAS and with attention cut into splits), the real
//! models (greedy tokens equal, logits cosine >= 0.9999) and layer streaming (streamed ==
//! resident, bit for bit).
//!
//! Without a driver and GPU every case says SKIPPED and passes, unless
//! STRATA_REQUIRE_CUDA=1 (scripts/gpu_check.sh sets it on a GPU machine), where that fails.
//! What always runs here: opening the backend without a driver is a typed error.

use strata_conformance::engine::{compare_with_cpu, streamed_equals_resident};
use strata_conformance::models;
use strata_conformance::ops::run_and_assert;
use strata_cuda::{CudaBackend, CudaOptions};

fn cuda_or_skip(opts: CudaOptions) -> Option<CudaBackend> {
    match CudaBackend::new(opts.with_env()) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("STRATA_REQUIRE_CUDA").as_deref() != Ok("1") => {
            eprintln!("SKIPPED: no CUDA device ({e})");
            None
        }
        Err(e) => panic!("STRATA_REQUIRE_CUDA=1 but: {e}"),
    }
}

/// `low_precision`: the f16-operand limits (cuBLAS's f16 inputs).
fn ops(opts: CudaOptions, pattern: &str, low_precision: bool) {
    let Some(b) = cuda_or_skip(opts) else { return };
    run_and_assert(&b, pattern, low_precision);
}

#[test]
fn no_driver_is_a_typed_error() {
    if strata_cuda::driver_present() {
        return;
    }
    let err = CudaBackend::new(CudaOptions::default()).err().expect("no driver here");
    assert!(matches!(err, strata::backend::BackendError::Device(_)), "{err}");
    assert!(err.to_string().contains("libcuda"), "{err}");
    let e = strata_cuda::devices().unwrap_err();
    assert_eq!(e, strata_cuda::DriverError::NoDriver);
    assert!(e.to_string().contains("no CUDA driver"), "{e}");
}

/// The default paths: matvec / tiled matmul kernels for the harness's small row counts.
#[test]
fn ops_default() {
    ops(CudaOptions::default(), "", false);
}

/// Every matmul through cuBLAS (f16 operands, f32 accumulation): the prefill path.
#[test]
fn ops_matmul_through_cublas() {
    let opts = CudaOptions { cublas_min_rows: Some(1), ..Default::default() };
    ops(opts, "matmul", true);
}

/// Attention cut into 3-key splits merged by attention_combine (flash-decoding).
#[test]
fn ops_attention_in_splits() {
    ops(CudaOptions { attn_split_len: Some(3), ..Default::default() }, "attention", false);
}

fn model(file: &str, prompts: &[&str], steps: usize) {
    let Some(path) = models::find(file) else { return };
    let Some(b) = cuda_or_skip(CudaOptions::default()) else { return };
    let (_, worst) = compare_with_cpu(b, &path, prompts, steps, 0.9999, 0.1);
    assert!(worst >= 0.9999);
}

#[test]
fn smollm2_cuda_matches_cpu() {
    model(models::SMOLLM2, &["The capital of France is", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"], 16);
}

#[test]
fn gemma3_cuda_matches_cpu() {
    model(models::GEMMA3, &["The capital of France is", "Write a haiku about the sea."], 16);
}

/// A long prompt: the cuBLAS prefill path (>= 32 rows) on a real model.
#[test]
fn smollm2_cuda_long_prompt_matches_cpu() {
    let prompt = "The history of the Roman Empire spans many centuries, from the founding of the city to the fall of Constantinople. ".repeat(4);
    model(models::SMOLLM2, &[prompt.as_str()], 4);
}

fn streaming(file: &str) {
    let Some(path) = models::find(file) else { return };
    let open = || cuda_or_skip(CudaOptions::default());
    let (Some(a), Some(b)) = (open(), open()) else { return };
    streamed_equals_resident(a, b, &path, 16);
}

#[test]
fn smollm2_streamed_equals_resident_on_cuda() {
    streaming(models::SMOLLM2);
}

#[test]
fn gemma3_streamed_equals_resident_on_cuda() {
    streaming(models::GEMMA3);
}
