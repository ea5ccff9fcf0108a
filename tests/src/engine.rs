//! Helpers for engine conformance cases: load a real model on the CPU backend, run it.

use std::path::Path;

use strata::arch::forward::{Logits, Net};
use strata::backend::cpu::CpuBackend;
use strata::kv_cache::KvCache;
use strata::rope::RopeTables;
use strata::source::{ByteSource, FileSource};
use strata::weights::Weights;
use strata::LoadedModel;

/// A real model on a CPU backend (the reference by default; `load_on` takes the fast one):
/// a [`ModelOn`] whose `run` returns the logits to the host.
pub struct CpuModel<B: strata::backend::Backend = CpuBackend>(pub ModelOn<B>);

impl<B: strata::backend::Backend> std::ops::Deref for CpuModel<B> {
    type Target = ModelOn<B>;
    fn deref(&self) -> &ModelOn<B> {
        &self.0
    }
}

impl CpuModel<CpuBackend> {
    pub fn load(path: &Path) -> Self {
        Self::load_on(CpuBackend::new(), path)
    }
}

/// The fast CPU backend on every core with its best instruction set.
pub fn fast_cpu() -> strata::backend::fast::FastCpuBackend {
    strata::backend::fast::FastCpuBackend::new().unwrap_or_else(|e| panic!("{e}"))
}

impl<B: strata::backend::Backend> CpuModel<B> {
    pub fn load_on(b: B, path: &Path) -> Self {
        CpuModel(ModelOn::load(b, path))
    }

    /// Logits (`[rows, vocab]` flattened) for `tokens` appended to `kv`.
    pub fn run(&self, kv: &mut KvCache<B>, tokens: &[u32], which: Logits) -> Vec<f32> {
        let buf = self.net().forward(kv, tokens, which).unwrap();
        let rows = if which == Logits::All { tokens.len() } else { 1 };
        pollster::block_on(self.b.read(&buf, 0, rows * self.vocab())).unwrap()
    }

    pub fn vocab(&self) -> usize {
        self.model.config.vocab_size as usize
    }
}

pub use strata::backend::top_k;
pub use strata::sampler::argmax;

/// Largest |a - b| over two equal-length logit sets.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// 16 greedy decode steps one token at a time after `prompt` must give the logits of the
/// whole sequence in one pass (max |dlogit| <= 1e-4), and fill the KV cache at each step.
pub fn assert_incremental_equals_recompute<B: strata::backend::Backend>(m: &CpuModel<B>, prompt: &[u32]) {
    let v = m.vocab();
    let mut kv = m.cache(64);
    let mut seq = prompt.to_vec();
    let mut step_logits = vec![m.run(&mut kv, prompt, Logits::Last)];
    for _ in 0..16 {
        let next = argmax(step_logits.last().unwrap()) as u32;
        seq.push(next);
        step_logits.push(m.run(&mut kv, &[next], Logits::Last));
    }
    assert_eq!(kv.len, seq.len(), "every step filled the cache");
    // The same sequence in one pass, logits at every position.
    let mut kv2 = m.cache(64);
    let all = m.run(&mut kv2, &seq, Logits::All);
    let worst = step_logits.iter().enumerate().map(|(i, got)| {
        let pos = prompt.len() - 1 + i;
        max_abs_diff(got, &all[pos * v..(pos + 1) * v])
    }).fold(0f32, f32::max);
    println!("{}: incremental vs recompute: max |dlogit| = {worst:e}", m.b.name());
    assert!(worst <= 1e-4, "max |dlogit| {worst}");
}

/// `prompt` (at least 8 tokens) prefilled in chunks of 3, 4 and the rest must give the
/// one-shot logits (max |dlogit| <= 1e-4).
pub fn assert_chunked_prefill_equals_one_shot<B: strata::backend::Backend>(m: &CpuModel<B>, prompt: &[u32]) {
    let mut kv = m.cache(32);
    let one = m.run(&mut kv, prompt, Logits::Last);
    let mut kv = m.cache(32);
    m.run(&mut kv, &prompt[..3], Logits::Last);
    m.run(&mut kv, &prompt[3..7], Logits::Last);
    let chunked = m.run(&mut kv, &prompt[7..], Logits::Last);
    let d = max_abs_diff(&one, &chunked);
    println!("{}: chunked vs one-shot prefill: max |dlogit| = {d:e}", m.b.name());
    assert!(d <= 1e-4);
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += f64::from(x) * f64::from(y);
        aa += f64::from(x) * f64::from(x);
        bb += f64::from(y) * f64::from(y);
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// The three prompts the steady-state batching tests (no allocation, no buffer creation)
/// prefill, one cache each.
pub const THREE_PROMPTS: [&[u32]; 3] = [&[1, 504, 3458, 282], &[1, 4649], &[1, 314, 2867]];

/// One batched decode step of three sequences (tokens `tok`, `tok + 1`, `tok + 2`, one
/// each), returning their last-token logits stacked.
pub fn decode_three<B: strata::backend::Backend>(net: &Net<'_, B>, kvs: &mut [KvCache<B>], tok: u32) -> B::Buf {
    use strata::arch::forward::Seq;
    let toks = [tok, tok + 1, tok + 2];
    let [a, b, c] = kvs else { panic!("decode_three takes three caches, not {}", kvs.len()) };
    let mut batch = [
        Seq { kv: a, tokens: &toks[0..1], logits: Logits::Last },
        Seq { kv: b, tokens: &toks[1..2], logits: Logits::Last },
        Seq { kv: c, tokens: &toks[2..3], logits: Logits::Last },
    ];
    net.forward_batch(&mut batch).unwrap_or_else(|e| panic!("{e}"))
}

/// A real model loaded on any backend (the wgpu / browser / CUDA model cases).
pub struct ModelOn<B: strata::backend::Backend> {
    pub b: B,
    pub model: LoadedModel,
    pub weights: Weights<B>,
    pub rope: RopeTables,
}

impl<B: strata::backend::Backend> ModelOn<B> {
    /// What a forward pass reads.
    pub fn net(&self) -> Net<'_, B> {
        Net { backend: &self.b, cfg: &self.model.config, weights: &self.weights, rope: &self.rope }
    }

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
        self.net().forward(kv, tokens, Logits::Last).unwrap_or_else(|e| panic!("{e}"))
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

/// Model conformance against the CPU reference, for any backend: for each prompt, the
/// final logits' cosine must be >= `min_cosine` after the prompt and after each of `steps`
/// greedy steps; the device's own argmax (on-device top-k) must equal the CPU's top-1 at
/// every step where that leads by >= `margin` logits (closer near-ties may flip in lower
/// precision: they are counted). Both are fed the CPU's token, so one flip cannot cascade.
/// Returns (near-ties flipped, worst cosine).
pub fn compare_with_cpu<B: strata::backend::Backend>(b: B, path: &Path, prompts: &[&str], steps: usize, min_cosine: f64, margin: f32) -> (usize, f64) {
    let name = b.name();
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let cpu = CpuModel::load(path);
    let gpu = ModelOn::load(b, path);
    let tok = strata::tokenizer::Tokenizer::from_gguf(cpu.model.files.gguf.as_ref().unwrap()).unwrap();
    let (mut near_ties, mut worst) = (0, 1f64);
    for prompt in prompts {
        let ids = tok.encode(prompt, true, false).unwrap();
        let (mut kc, mut kg) = (cpu.cache(64), gpu.cache(64));
        let mut want = cpu.run(&mut kc, &ids, Logits::Last);
        let mut have_buf = gpu.run_last(&mut kg, &ids);
        for step in 0..=steps {
            let have = gpu.read(&have_buf);
            let cos = cosine(&want, &have);
            worst = worst.min(cos);
            let top = top_k(&want, 2);
            let m = want[top[0]] - want[top[1]];
            let dev = gpu.device_argmax(&have_buf);
            println!("{file} {prompt:?} step {step}: cosine {cos:.7}, cpu top-1 {} (margin {m:.3}), device argmax {dev}", top[0]);
            assert!(cos >= min_cosine, "{file} {prompt:?} step {step}: cosine {cos} < {min_cosine} on {name}");
            assert_eq!(dev as usize, argmax(&have), "device argmax disagrees with the read-back logits");
            if m >= margin {
                assert_eq!(dev as usize, top[0], "{file} {prompt:?} step {step}: {name} picked {dev}, cpu {} leads by {m}", top[0]);
            } else if dev as usize != top[0] {
                near_ties += 1;
            }
            if step < steps {
                let next = top[0] as u32;
                want = cpu.run(&mut kc, &[next], Logits::Last);
                have_buf = gpu.run_last(&mut kg, &[next]);
            }
        }
    }
    println!("{file} on {name}: worst cosine {worst:.7}, near-ties flipped: {near_ties}");
    (near_ties, worst)
}

/// Token ids of "The capital of France is" for SmolLM2 (valid ids for Gemma too).
pub const STREAM_PROMPT: &[u32] = &[1, 504, 3458, 282, 4649, 314];

/// A streaming budget of a quarter of the model, but never below what streaming needs
/// (the resident tensors plus two layers).
pub fn quarter_budget(path: &Path) -> u64 {
    let m = strata::model::load(path).unwrap();
    let plan = strata::streaming::StreamPlan::all_resident(&m).unwrap();
    let total = plan.resident_bytes();
    (total / 4).max(plan.global_bytes + 2 * plan.layer_bytes.iter().max().unwrap())
}

/// Loads `path` resident on `a` and streamed under `quarter_budget` on `b`, then
/// `assert_streamed_identical` over `steps` greedy steps.
pub fn streamed_equals_resident<B: strata::backend::Backend>(a: B, b: B, path: &Path, steps: usize) {
    let budget = quarter_budget(path);
    let resident = ModelOn::load(a, path);
    let streamed = ModelOn::load_with_budget(b, path, Some(budget));
    let n_streamed = streamed.weights.layers.iter().filter(|l| l.is_none()).count();
    println!("{}: budget {budget} bytes, {n_streamed} of {} layers streamed on {}", path.display(), streamed.weights.layers.len(), streamed.b.name());
    assert_streamed_identical(&resident, &streamed, steps);
}

/// Runs prefill + `steps` greedy steps on both and asserts equal bits at every step, that
/// every step filled the KV cache, that each streamed layer was read once per pass and that
/// a tied head is the resident embedding.
pub fn assert_streamed_identical<B: strata::backend::Backend>(resident: &ModelOn<B>, streamed: &ModelOn<B>, steps: usize) {
    let (mut kr, mut ks) = (resident.cache(64), streamed.cache(64));
    let (mut br, mut bs) = (resident.run_last(&mut kr, STREAM_PROMPT), streamed.run_last(&mut ks, STREAM_PROMPT));
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
    assert_eq!(ks.len, STREAM_PROMPT.len() + steps, "every step filled the KV cache");
    let stats = streamed.weights.stream_stats().expect("layers streamed");
    let streamed_layers = streamed.weights.layers.iter().filter(|l| l.is_none()).count();
    assert!(streamed_layers > 0);
    assert_eq!(stats.layers_streamed as usize, streamed_layers * (steps + 1), "each streamed layer read once per forward pass");
    assert!(streamed.weights.is_tied() && std::ptr::eq(streamed.weights.output(), &streamed.weights.embed), "tied head: the resident embedding");
}

/// One sequence of a batched-forward case: the chunks it appends, in order (prompt chunks,
/// then decoded tokens one at a time), and each chunk's logits when run alone.
struct Script {
    chunks: Vec<Vec<u32>>,
    logits: Vec<Logits>,
    alone: Vec<Vec<f32>>,
}

/// Runs `prefill` chunks then `decodes` greedy tokens alone through a fresh cache, noting
/// each step's chunk and logits (the batched run is teacher-forced with these tokens, so
/// one flipped near-tie cannot make the two runs diverge).
fn script_alone<B: strata::backend::Backend>(m: &ModelOn<B>, prefill: &[(&[u32], Logits)], decodes: usize) -> Script {
    let v = m.model.config.vocab_size as usize;
    let mut kv = m.cache(64);
    let mut s = Script { chunks: vec![], logits: vec![], alone: vec![] };
    let mut step = |s: &mut Script, chunk: Vec<u32>, which: Logits| {
        let buf = m.net().forward(&mut kv, &chunk, which).unwrap_or_else(|e| panic!("{e}"));
        let rows = if which == Logits::All { chunk.len() } else { 1 };
        s.alone.push(pollster::block_on(m.b.read(&buf, 0, rows * v)).unwrap());
        s.chunks.push(chunk);
        s.logits.push(which);
    };
    for &(chunk, which) in prefill {
        step(&mut s, chunk.to_vec(), which);
    }
    for _ in 0..decodes {
        let last = s.alone.last().unwrap();
        let next = argmax(&last[last.len() - v..]) as u32;
        step(&mut s, vec![next], Logits::Last);
    }
    s
}

/// A batched forward gives each sequence what it gets alone. Three sequences of different
/// prompt lengths (`prompt` cut three ways; A's prefill returns every row's logits, C's
/// prompt arrives in two chunks) run through a schedule of batches that covers what
/// continuous batching does: two prefills together; decodes beside a prefill; a prefill
/// placed first; all decoding; one sequence finished and gone; a batch of one. Every
/// sequence's logits at every step must be within `tol` of its run alone (0: bit for bit).
/// Returns the worst difference seen.
pub fn assert_batched_equals_alone<B: strata::backend::Backend>(m: &ModelOn<B>, prompt: &[u32], tol: f32) -> f32 {
    use strata::arch::forward::Seq;
    assert!(prompt.len() >= 8, "the case cuts the prompt into chunks of 3 and more");
    let v = m.model.config.vocab_size as usize;
    let scripts = [
        script_alone(m, &[(prompt, Logits::All)], 4),
        script_alone(m, &[(&prompt[2..5], Logits::Last)], 3),
        script_alone(m, &[(&prompt[..3], Logits::Last), (&prompt[3..], Logits::Last)], 3),
    ];
    // (sequence, chunk) per batch; each sequence's chunks in order.
    let schedule: &[&[(usize, usize)]] = &[
        &[(0, 0), (1, 0)],
        &[(0, 1), (1, 1), (2, 0)],
        &[(2, 1), (0, 2), (1, 2)],
        &[(0, 3), (1, 3), (2, 2)],
        &[(2, 3), (0, 4)],
        &[(2, 4)],
    ];
    let mut caches: Vec<KvCache<B>> = (0..3).map(|_| m.cache(64)).collect();
    let mut worst = 0f32;
    for (step, batch) in schedule.iter().enumerate() {
        let mut free: Vec<Option<&mut KvCache<B>>> = caches.iter_mut().map(Some).collect();
        let mut seqs: Vec<Seq<'_, B>> = batch
            .iter()
            .map(|&(s, c)| Seq { kv: free[s].take().expect("a sequence once per batch"), tokens: &scripts[s].chunks[c], logits: scripts[s].logits[c] })
            .collect();
        let rows: usize = seqs.iter().map(Seq::logit_rows).sum();
        let buf = m.net().forward_batch(&mut seqs).unwrap_or_else(|e| panic!("step {step}: {e}"));
        let got = pollster::block_on(m.b.read(&buf, 0, rows * v)).unwrap();
        let mut at = 0;
        for &(s, c) in batch.iter() {
            let want = &scripts[s].alone[c];
            let d = max_abs_diff(&got[at..at + want.len()], want);
            assert!(d <= tol, "{}: step {step}, sequence {s} chunk {c}: max |dlogit| {d} batched vs alone (tol {tol})", m.b.name());
            worst = worst.max(d);
            at += want.len();
        }
        assert_eq!(at, got.len());
    }
    for (s, kv) in caches.iter().enumerate() {
        assert_eq!(kv.len, scripts[s].chunks.iter().map(Vec::len).sum::<usize>(), "sequence {s}'s cache holds all of its tokens");
    }
    println!("{}: batched vs alone: max |dlogit| = {worst:e}", m.b.name());
    worst
}
