//! Layer streaming: logits of a model whose layers stream under a memory budget are
//! bit-identical to the resident model's on the same backend (prefill, then greedy decode
//! steps), the tied head stays one resident buffer, every layer fills the KV cache, and a
//! budget below the resident tensors plus one layer is a typed error before any work.

use strata::backend::cpu::CpuBackend;
use strata::backend::webgpu::WgpuOptions;
use strata::streaming::{PlanError, StreamPlan};
use strata_conformance::engine::{quarter_budget as quarter, streamed_equals_resident, wgpu_or_skip};
use strata_conformance::models;

fn cpu_case(file: &str) {
    let Some(path) = models::find(file) else { return };
    streamed_equals_resident(CpuBackend::new(), CpuBackend::new(), &path, 16);
}

#[test]
fn smollm2_streamed_equals_resident_on_cpu() {
    cpu_case(models::SMOLLM2);
}

#[test]
fn gemma3_streamed_equals_resident_on_cpu() {
    cpu_case(models::GEMMA3);
}

fn wgpu_case(file: &str, steps: usize) {
    let Some(path) = models::find(file) else { return };
    let open = || wgpu_or_skip(WgpuOptions::default());
    let (Some(a), Some(b)) = (open(), open()) else { return };
    streamed_equals_resident(a, b, &path, steps);
}

/// On wgpu: the same 16 steps (on lavapipe, about 4 minutes for both models).
#[test]
fn smollm2_streamed_equals_resident_on_wgpu() {
    wgpu_case(models::SMOLLM2, 16);
}

#[test]
fn gemma3_streamed_equals_resident_on_wgpu() {
    wgpu_case(models::GEMMA3, 16);
}

#[test]
fn a_budget_below_one_layer_is_an_error_before_any_work() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let m = strata::model::load(&path).unwrap();
    let all = StreamPlan::all_resident(&m).unwrap();
    let max_layer = *all.layer_bytes.iter().max().unwrap();
    let err = StreamPlan::new(&m, Some(all.global_bytes + max_layer - 1)).unwrap_err();
    assert!(matches!(&err, PlanError::Budget(msg) if msg.contains("plus one layer")), "{err}");
    // One layer more than the resident tensors: one slot, every layer streamed.
    let plan = StreamPlan::new(&m, Some(all.global_bytes + max_layer)).unwrap();
    assert_eq!((plan.slots, plan.streamed_layers()), (1, all.resident.len()));
    // Everything fits: nothing streams.
    let plan = StreamPlan::new(&m, Some(all.resident_bytes())).unwrap();
    assert_eq!(plan.streamed_layers(), 0);
    // The test budget (a quarter, at least resident + 2 layers): double-buffered, the device
    // holds at most the budget.
    let budget = quarter(&path);
    let q = StreamPlan::new(&m, Some(budget)).unwrap();
    assert_eq!(q.slots, 2);
    assert!(q.streamed_layers() > 0);
    assert!(q.device_bytes() <= budget, "{} > budget {budget}", q.device_bytes());
}
