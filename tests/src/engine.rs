//! Helpers for engine conformance cases: load a real model on the CPU backend, run it.

use std::path::Path;

use strata::arch::forward::{forward, Logits};
use strata::backend::cpu::CpuBackend;
use strata::kv_cache::KvCache;
use strata::rope::RopeTables;
use strata::source::{ByteSource, FileSource};
use strata::weights::Weights;
use strata::LoadedModel;

pub struct CpuModel {
    pub b: CpuBackend,
    pub model: LoadedModel,
    pub weights: Weights<CpuBackend>,
    pub rope: RopeTables,
}

impl CpuModel {
    pub fn load(path: &Path) -> Self {
        let model = strata::model::load(path).unwrap_or_else(|e| panic!("{e}"));
        let b = CpuBackend::new();
        let sources: Vec<FileSource> = model.files.files.iter().map(|f| FileSource::open(f).unwrap()).collect();
        let refs: Vec<&dyn ByteSource> = sources.iter().map(|s| s as &dyn ByteSource).collect();
        let weights = Weights::load(&b, &model, &refs).unwrap();
        let rope = RopeTables::new(&model.config, weights.rope_factors.as_deref()).unwrap();
        CpuModel { b, model, weights, rope }
    }

    pub fn cache(&self, capacity: usize) -> KvCache<CpuBackend> {
        KvCache::new(&self.b, &self.model.config, capacity).unwrap()
    }

    /// Logits (`[rows, vocab]` flattened) for `tokens` appended to `kv`.
    pub fn run(&self, kv: &mut KvCache<CpuBackend>, tokens: &[u32], which: Logits) -> Vec<f32> {
        forward(&self.b, &self.model.config, &self.weights, &self.rope, kv, tokens, which).unwrap()
    }

    pub fn vocab(&self) -> usize {
        self.model.config.vocab_size as usize
    }
}

pub use strata::sampler::{argmax, top_k};

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += f64::from(x) * f64::from(y);
        aa += f64::from(x) * f64::from(x);
        bb += f64::from(y) * f64::from(y);
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// A real model loaded on any backend (the wgpu / browser / CUDA model cases).
pub struct ModelOn<B: strata::backend::Backend> {
    pub b: B,
    pub model: LoadedModel,
    pub weights: Weights<B>,
    pub rope: RopeTables,
}

impl<B: strata::backend::Backend> ModelOn<B> {
    pub fn load(b: B, path: &Path) -> Self {
        Self::load_with_budget(b, path, None)
    }

    /// Loaded under a weight-memory budget: layers past it stream (None: all resident).
    pub fn load_with_budget(b: B, path: &Path, budget: Option<u64>) -> Self {
        let model = strata::model::load(path).unwrap_or_else(|e| panic!("{e}"));
        let sources: Vec<std::sync::Arc<dyn ByteSource>> =
            model.files.files.iter().map(|f| std::sync::Arc::new(FileSource::open(f).unwrap()) as std::sync::Arc<dyn ByteSource>).collect();
        let plan = strata::streaming::StreamPlan::new(&model, budget).unwrap_or_else(|e| panic!("{e}"));
        let weights = Weights::load_planned(&b, &model, sources, &plan, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
        let rope = RopeTables::new(&model.config, weights.rope_factors.as_deref()).unwrap();
        ModelOn { b, model, weights, rope }
    }

    pub fn cache(&self, capacity: usize) -> KvCache<B> {
        KvCache::new(&self.b, &self.model.config, capacity).unwrap()
    }

    /// The last token's logits, left on the device.
    pub fn run_last(&self, kv: &mut KvCache<B>, tokens: &[u32]) -> B::Buf {
        forward(&self.b, &self.model.config, &self.weights, &self.rope, kv, tokens, Logits::Last).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn read(&self, buf: &B::Buf) -> Vec<f32> {
        pollster::block_on(self.b.read(buf, 0, self.model.config.vocab_size as usize)).unwrap()
    }

    /// The device's top-1 (on-device argmax).
    pub fn device_argmax(&self, buf: &B::Buf) -> u32 {
        pollster::block_on(self.b.top_k(buf, self.model.config.vocab_size as usize, 1)).unwrap()[0].0
    }
}

/// A wgpu backend, or `None` with a SKIPPED message when the machine has no adapter —
/// unless `STRATA_REQUIRE_WGPU=1` (CI, scripts/test.sh with lavapipe), where that fails.
pub fn wgpu_or_skip(opts: strata::backend::webgpu::WgpuOptions) -> Option<strata::backend::webgpu::WgpuBackend> {
    match pollster::block_on(strata::backend::webgpu::WgpuBackend::new(opts)) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("STRATA_REQUIRE_WGPU").as_deref() != Ok("1") => {
            eprintln!("SKIPPED: no usable wgpu adapter ({e}); install mesa-vulkan-drivers for lavapipe");
            None
        }
        Err(e) => panic!("STRATA_REQUIRE_WGPU=1 but no wgpu adapter: {e}"),
    }
}
