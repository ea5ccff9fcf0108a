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
