//! Layer streaming: logits of a model whose layers stream under a memory budget are
//! bit-identical to the resident model's on the same backend (prefill, then greedy decode
//! steps), the tied head stays one resident buffer, every layer fills the KV cache, and a
//! budget below the resident tensors plus one layer is a typed error before any work.

use strata::backend::cpu::CpuBackend;
use strata::backend::webgpu::WgpuOptions;
use strata::backend::Backend;
use strata::streaming::StreamPlan;
use strata::weights::WeightError;
use strata_conformance::engine::{argmax, wgpu_or_skip, ModelOn};
use strata_conformance::models;

const PROMPT: &[u32] = &[1, 504, 3458, 282, 4649, 314]; // "The capital of France is" (SmolLM2 ids; valid ids for Gemma too)

fn quarter(path: &std::path::Path) -> u64 {
    let m = strata::model::load(path).unwrap();
    let plan = StreamPlan::all_resident(&m).unwrap();
    let total = plan.resident_bytes();
    // A quarter of the model, but never below what streaming needs (resident + 2 layers).
    (total / 4).max(plan.global_bytes + 2 * plan.layer_bytes.iter().max().unwrap())
}

/// Runs prefill + `steps` greedy steps on both and asserts equal bits at every step.
fn identical<B: Backend>(resident: &ModelOn<B>, streamed: &ModelOn<B>, steps: usize) {
    let (mut kr, mut ks) = (resident.cache(64), streamed.cache(64));
    let (mut br, mut bs) = (resident.run_last(&mut kr, PROMPT), streamed.run_last(&mut ks, PROMPT));
    for step in 0..=steps {
        let (lr, ls) = (resident.read(&br), streamed.read(&bs));
        let diff = lr.iter().zip(&ls).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(diff, 0, "step {step}: {diff} logits differ between resident and streamed");
        if step < steps {
            let next = argmax(&lr) as u32;
            br = resident.run_last(&mut kr, &[next]);
            bs = streamed.run_last(&mut ks, &[next]);
        }
    }
    assert_eq!(ks.len, PROMPT.len() + steps, "every step filled the KV cache");
    let stats = streamed.weights.stream_stats().expect("layers streamed");
    let streamed_layers = streamed.weights.layers.iter().filter(|l| l.is_none()).count();
    assert!(streamed_layers > 0);
    assert_eq!(stats.layers_streamed as usize, streamed_layers * (steps + 1), "each streamed layer read once per forward pass");
    assert!(streamed.weights.is_tied() && std::ptr::eq(streamed.weights.output(), &streamed.weights.embed), "tied head: the resident embedding");
}

fn cpu_case(file: &str) {
    let Some(path) = models::find(file) else { return };
    let budget = quarter(&path);
    let resident = ModelOn::load(CpuBackend::new(), &path);
    let streamed = ModelOn::load_with_budget(CpuBackend::new(), &path, Some(budget));
    println!("{file}: budget {budget} bytes, {} of {} layers streamed", streamed.weights.layers.iter().filter(|l| l.is_none()).count(), streamed.weights.layers.len());
    identical(&resident, &streamed, 16);
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
    let resident = ModelOn::load(a, &path);
    let streamed = ModelOn::load_with_budget(b, &path, Some(quarter(&path)));
    identical(&resident, &streamed, steps);
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
    assert!(matches!(&err, WeightError::Budget(msg) if msg.contains("plus one layer")), "{err}");
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
