//! The op conformance harness, in the spirit of llama.cpp's `test-backend-ops`: every op of
//! the `Backend` trait, on seeded random inputs, on the backend under test and on the CPU
//! reference, compared by normalised mean squared error with a per-op limit.
//!
//! Rules (any one fails a case):
//! - a NaN in the backend's output;
//! - an infinity where the reference has none (or a different one);
//! - NMSE = sum((out - ref)^2) / sum(ref^2) above the op's limit (exact ops: any difference);
//! - a guard region of `GUARD` values after every output buffer changed;
//! - the op failing with an error that is not `Unsupported`.
//!
//! Each case is a runtime op (`strata::backend::Op`, [`spec`]) plus the data to feed it.
//! The harness asks the backend first (`Backend::supports_op`): an op it declines is
//! reported as unsupported, never as passed, and not run; an op it accepts and then
//! refuses as `Unsupported` fails (the backend's answer was wrong).
//! The harness is async and generic over `Backend`, so every backend (wgpu natively, WebGPU
//! and wasm in the browser, CUDA) runs the same cases.

use strata::backend::cpu::CpuBackend;
use strata::backend::{AttnArgs, BackendError, Backend, RopeArgs};
use strata::backend::{Activation, RopeStyle};
use strata::quant::DType;

/// Values written after every output buffer; they must come back untouched.
pub const GUARD: usize = 64;
const GUARD_VALUE: f32 = -1234.5625;

/// One op with its dtype, shape and parameters, and how its inputs are drawn.
#[derive(Clone, Debug)]
pub enum Op {
    /// `x_scale`: activations are uniform in ±x_scale.
    Matmul { dtype: DType, rows: usize, n: usize, k: usize, x_scale: f32 },
    Embed { dtype: DType, vocab: usize, cols: usize, ids: Vec<u32>, scale: f32 },
    RmsNorm { dtype: DType, rows: usize, cols: usize, eps: f32, offset: f32 },
    AddBias { dtype: DType, rows: usize, cols: usize },
    Rope { style: RopeStyle, tokens: usize, heads: usize, head_dim: usize, rope_dim: usize, pos0: u32, mscale: f32 },
    Attention { tokens: usize, past: usize, heads: usize, kv_heads: usize, hd: usize, hdv: usize, window: Option<usize>, softcap: Option<f32> },
    Gated { act: Activation, n: usize },
    Add { n: usize },
    Softcap { n: usize, cap: f32 },
    CopyRows { dst_rows: usize, dst_row: usize, src_rows: usize, src_row: usize, rows: usize, width: usize },
    CopyCols { rows: usize, src_width: usize, col: usize, cols: usize },
    TopK { n: usize, k: usize, ties: bool },
}

#[derive(Clone, Debug)]
pub struct Case {
    /// `op/dtype/params`, filterable by substring.
    pub name: String,
    pub op: Op,
    pub seed: u64,
}

/// What happened to one case.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass { nmse: f64, limit: f64 },
    Fail(String),
    Unsupported(String),
}

/// The runtime op a case runs: what the backend is asked whether it supports.
pub fn spec(op: &Op) -> strata::backend::Op {
    use strata::backend::Op as R;
    match *op {
        Op::Matmul { dtype, rows, n, k, .. } => R::Matmul { dtype, rows, n, k },
        Op::Embed { dtype, vocab, cols, ref ids, .. } => R::Embed { dtype, vocab, cols, tokens: ids.len() },
        Op::RmsNorm { dtype, rows, cols, .. } => R::RmsNorm { dtype, rows, cols },
        Op::AddBias { dtype, rows, cols } => R::AddBias { dtype, rows, cols },
        Op::Rope { style, tokens, heads, head_dim, rope_dim, .. } => R::Rope { style, tokens, heads, head_dim, rope_dim },
        Op::Attention { tokens, past, heads, kv_heads, hd, hdv, window, softcap } => {
            R::Attention { tokens, past, n_heads: heads, n_kv_heads: kv_heads, head_dim: hd, head_dim_v: hdv, window: window.is_some(), softcap: softcap.is_some() }
        }
        Op::Gated { act, n } => R::Gated { act, n },
        Op::Add { n } => R::Add { n },
        Op::Softcap { n, .. } => R::Softcap { n },
        Op::CopyRows { rows, width, .. } => R::CopyRows { rows, width },
        Op::CopyCols { rows, src_width, col, cols } => R::CopyCols { rows, src_width, col, cols },
        Op::TopK { n, k, .. } => R::TopK { n, k },
    }
}

/// The op family of a case (the key for limits): the runtime op's name.
pub fn family(op: &Op) -> &'static str {
    spec(op).name()
}

/// How closely a backend is expected to follow the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// f32 arithmetic throughout (only the summation order may differ).
    Exact,
    /// Dequantised weights held in f16 (wgpu/CUDA f16 variants).
    F16Weights,
    /// Matmul inputs quantised to 8 bits per 32 values and K-quant scales held in f16
    /// (the fast CPU backend, like llama.cpp's CPU dot products).
    Q8Activations,
}

impl From<bool> for Precision {
    /// `true`: dequantised weights in f16.
    fn from(low_precision: bool) -> Self {
        if low_precision {
            Precision::F16Weights
        } else {
            Precision::Exact
        }
    }
}

/// NMSE limit for an op family. Copies and top-k must be exact.
///
/// - `F16Weights`: rounding each weight by up to 2^-11 relative gives an NMSE around 1e-7.
/// - `Q8Activations`: rounding an activation to 8 bits per block of 32 (step
///   `d = max|x| / 127`) adds an error uniform in `±d/2`, variance `d^2 / 12`; for inputs
///   uniform in `±a` (signal variance `a^2 / 3`, `d ~ a / 127`) that is an NMSE of
///   `3 / (12 * 127^2) = 1.6e-5` on the inputs, and the same on a dot product of
///   independent terms. A case's NMSE averages as few as ~26 outputs, so it scatters by a
///   factor of 2-3 around that (worst seen 4.3e-5); the limit is 1e-4, 6x the expectation
///   and 5x tighter than ggml's test-backend-ops (5e-4). Embeddings and norms of K-quant
///   tensors see only the f16 scale rounding (NMSE ~1e-7, limit 2e-6).
pub fn limit(family: &str, precision: impl Into<Precision>) -> f64 {
    match (family, precision.into()) {
        ("copy_rows" | "copy_cols" | "top_k", _) => 0.0,
        ("matmul", Precision::Q8Activations) => 1e-4,
        ("matmul" | "embed" | "rms_norm" | "add_bias", Precision::F16Weights | Precision::Q8Activations) => 2e-6,
        _ => 1e-9,
    }
}

/// SplitMix64: seeded, portable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.unit() * scale).collect()
    }
}

fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

/// Random weight bytes of `rows x cols` in `dtype`: random quants with realistic, normal
/// f16 scales (random bytes there would be NaN/inf/subnormal scales no model has).
pub fn random_weight(dtype: DType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let row_bytes = dtype.row_bytes(cols as u64).expect("whole blocks") as usize;
    let mut b: Vec<u8> = (0..rows * row_bytes).map(|_| rng.next_u64() as u8).collect();
    let (block_vals, block_bytes) = dtype.block();
    let block_bytes = block_bytes as usize;
    let scale = |rng: &mut Rng| 0.002 + 0.02 * rng.unit().abs();
    match dtype {
        DType::F32 => {
            for (i, v) in rng.vec(rows * cols, 1.0).into_iter().enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        DType::F16 => {
            for (i, v) in rng.vec(rows * cols, 1.0).into_iter().enumerate() {
                b[2 * i..2 * i + 2].copy_from_slice(&f16_bytes(v));
            }
        }
        DType::BF16 => {
            for (i, v) in rng.vec(rows * cols, 1.0).into_iter().enumerate() {
                b[2 * i..2 * i + 2].copy_from_slice(&half::bf16::from_f32(v).to_le_bytes());
            }
        }
        _ => {
            assert!(block_vals > 1, "{dtype}");
            // The block's float fields (scales, mins; E8M0 exponents), the rest random.
            let fields = strata::quant::scan::float_fields(dtype);
            assert!(!fields.is_empty(), "no random weights for {dtype}");
            for blk in b.chunks_exact_mut(block_bytes) {
                for &(f, width, _) in fields {
                    if width == 1 {
                        // E8M0 (MXFP4): scales 2^-9 .. 2^-5, like the f16 scales below.
                        blk[f] = 119 + (rng.next_u64() % 5) as u8;
                        continue;
                    }
                    let v = if f == 2 && matches!(dtype, DType::Q4_1 | DType::Q5_1) { -scale(rng) * 8.0 } else { scale(rng) };
                    blk[f..f + 2].copy_from_slice(&f16_bytes(v));
                }
            }
        }
    }
    b
}

fn dname(d: DType) -> String {
    d.to_string().to_lowercase()
}

/// The case list. Shapes are small enough for lavapipe (Mesa's CPU Vulkan) to run the
/// whole list in seconds, and include the real models' shapes scaled down.
pub fn cases() -> Vec<Case> {
    let mut v: Vec<(String, Op)> = Vec::new();
    let quants = [DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1];
    let kquants = [DType::Q4K, DType::Q5K, DType::Q6K];
    let floats = [DType::F32, DType::F16, DType::BF16];
    let mut mm = |dtype: DType, rows: usize, n: usize, k: usize| {
        v.push((format!("matmul/{}/rows={rows},n={n},k={k}", dname(dtype)), Op::Matmul { dtype, rows, n, k, x_scale: 1.0 }));
    };
    for d in floats {
        for (rows, n, k) in [(1, 37, 45), (3, 19, 64), (9, 5, 3), (17, 33, 100)] {
            mm(d, rows, n, k);
        }
    }
    for d in quants {
        for (rows, n, k) in [(1, 67, 32), (3, 33, 96), (9, 19, 64), (17, 5, 160)] {
            mm(d, rows, n, k);
        }
    }
    for d in kquants {
        for (rows, n, k) in [(1, 37, 256), (2, 19, 512), (9, 11, 256)] {
            mm(d, rows, n, k);
        }
    }
    // The real models' projections, scaled: SmolLM2 (hidden 576, ffn 1536, Q4_1 / Q8_0) and
    // Gemma 3 (hidden 640, ffn 2048, Q5_0 / Q8_0 / Q4_K / Q6_K).
    mm(DType::Q4_1, 1, 192, 576);
    mm(DType::Q8_0, 4, 64, 1536);
    mm(DType::Q5_0, 1, 256, 640);
    mm(DType::Q4K, 3, 64, 2048);
    mm(DType::Q6K, 1, 128, 2048);
    for d in floats.iter().chain(&quants).chain(&kquants) {
        let cols = if d.block().0 == 256 { 256 } else if d.block().0 == 32 { 64 } else { 45 };
        let ids = vec![0, 99, 7, 7, 42];
        v.push((format!("embed/{}/vocab=100,cols={cols},tokens={}", dname(*d), ids.len()), Op::Embed { dtype: *d, vocab: 100, cols, ids, scale: 1.0 }));
    }
    v.push(("embed/q8_0/vocab=300,cols=640,tokens=1,scale=25.3".into(), Op::Embed { dtype: DType::Q8_0, vocab: 300, cols: 640, ids: vec![299], scale: 25.3 }));
    for (dtype, rows, cols, offset) in [(DType::F32, 1, 576, 0.0), (DType::F32, 5, 33, 0.0), (DType::F32, 27, 64, 1.0), (DType::F16, 2, 640, 1.0), (DType::BF16, 3, 100, 0.0), (DType::Q8_0, 2, 64, 0.0)] {
        v.push((format!("rms_norm/{}/rows={rows},cols={cols},offset={offset}", dname(dtype)), Op::RmsNorm { dtype, rows, cols, eps: 1e-6, offset }));
    }
    for (dtype, rows, cols) in [(DType::F32, 1, 64), (DType::F32, 5, 96), (DType::F16, 3, 33)] {
        v.push((format!("add_bias/{}/rows={rows},cols={cols}", dname(dtype)), Op::AddBias { dtype, rows, cols }));
    }
    for style in [RopeStyle::Normal, RopeStyle::Neox] {
        let s = if style == RopeStyle::Neox { "neox" } else { "normal" };
        for (tokens, heads, head_dim, rope_dim, pos0, mscale) in [(1, 9, 64, 64, 0, 1.0), (5, 3, 64, 64, 17, 1.0), (4, 2, 64, 32, 100_000, 1.0), (1, 4, 256, 256, 32_000, 1.2), (3, 1, 96, 64, 5, 1.0)] {
            v.push((
                format!("rope/{s}/tokens={tokens},heads={heads},head_dim={head_dim},rope_dim={rope_dim},pos0={pos0},mscale={mscale}"),
                Op::Rope { style, tokens, heads, head_dim, rope_dim, pos0, mscale },
            ));
        }
    }
    for (tokens, past, heads, kv_heads, hd, window, softcap) in [
        (1, 0, 9, 3, 64, None, None),
        (1, 37, 9, 3, 64, None, None),
        (7, 0, 8, 1, 64, None, None),
        (5, 70, 4, 4, 64, None, None),
        (6, 10, 6, 2, 32, Some(5), None),
        (3, 130, 4, 1, 256, Some(100), None),
        (4, 3, 4, 2, 48, None, Some(5.0)),
        (1, 300, 2, 2, 128, None, None),
    ] {
        let mut name = format!("attention/f32/tokens={tokens},past={past},heads={heads}/{kv_heads},hd={hd}");
        if let Some(w) = window {
            name += &format!(",window={w}");
        }
        if let Some(c) = softcap {
            name += &format!(",softcap={c}");
        }
        v.push((name, Op::Attention { tokens, past, heads, kv_heads, hd, hdv: hd, window, softcap }));
    }
    for (act, a) in [(Activation::Silu, "silu"), (Activation::GeluTanh, "gelu_tanh")] {
        for n in [1, 1000] {
            v.push((format!("gated/{a}/n={n}"), Op::Gated { act, n }));
        }
    }
    for n in [1, 777] {
        v.push((format!("add/f32/n={n}"), Op::Add { n }));
    }
    v.push(("softcap/f32/n=300,cap=30".into(), Op::Softcap { n: 300, cap: 30.0 }));
    v.push(("copy_rows/f32/rows=2,width=17".into(), Op::CopyRows { dst_rows: 6, dst_row: 3, src_rows: 4, src_row: 1, rows: 2, width: 17 }));
    v.push(("copy_rows/f32/rows=1,width=576".into(), Op::CopyRows { dst_rows: 1, dst_row: 0, src_rows: 5, src_row: 4, rows: 1, width: 576 }));
    v.push(("copy_cols/f32/rows=3,src_width=50,col=20,cols=17".into(), Op::CopyCols { rows: 3, src_width: 50, col: 20, cols: 17 }));
    for (n, k, ties) in [(49152, 1, false), (49152, 40, false), (262_144, 1, false), (100, 10, true), (5, 8, false), (5000, 256, true)] {
        v.push((format!("top_k/f32/n={n},k={k}{}", if ties { ",ties" } else { "" }), Op::TopK { n, k, ties }));
    }
    // (Appended last so that the seeds of the cases above stay as they were.)
    // Activations far beyond f16's 65504 (Gemma's FFN inputs reach the thousands; a backend
    // that converts activations to f16, like CUDA's cuBLAS prefill, must not overflow).
    v.push(("matmul/q4_k/rows=5,n=16,k=256,x=3e5".into(), Op::Matmul { dtype: DType::Q4K, rows: 5, n: 16, k: 256, x_scale: 3e5 }));
    // Element-wise work large enough for the fast CPU backend to split it over threads.
    for (act, a) in [(Activation::Silu, "silu"), (Activation::GeluTanh, "gelu_tanh")] {
        v.push((format!("gated/{a}/n=100000"), Op::Gated { act, n: 100_000 }));
    }
    v.push(("rms_norm/f32/rows=64,cols=640,offset=1".into(), Op::RmsNorm { dtype: DType::F32, rows: 64, cols: 640, eps: 1e-6, offset: 1.0 }));
    // Token counts around the fast CPU kernels' tiles (4 tokens x 4 rows) and up to 64,
    // with row counts that leave a partial row group.
    for d in floats.iter().chain(&quants).chain(&kquants) {
        let k = if d.block().0 == 256 { 256 } else { 64 };
        for rows in [2, 4, 7, 64] {
            v.push((format!("matmul/{}/rows={rows},n=13,k={k}", dname(*d)), Op::Matmul { dtype: *d, rows, n: 13, k, x_scale: 1.0 }));
        }
    }
    // The 2-/3-bit K-quants and the grid formats (IQ4_NL, IQ4_XS, MXFP4): matmuls around
    // the tiles and partial row groups, a long row, and embedding lookups.
    for d in [DType::Q2K, DType::Q3K, DType::IQ4XS] {
        for (rows, n, k) in [(1, 37, 256), (2, 19, 512), (9, 11, 256), (4, 13, 256), (64, 13, 256), (3, 64, 2048)] {
            v.push((format!("matmul/{}/rows={rows},n={n},k={k}", dname(d)), Op::Matmul { dtype: d, rows, n, k, x_scale: 1.0 }));
        }
    }
    for d in [DType::IQ4NL, DType::MXFP4] {
        for (rows, n, k) in [(1, 67, 32), (3, 33, 96), (9, 19, 64), (17, 5, 160), (4, 13, 64), (64, 13, 64), (1, 128, 2048)] {
            v.push((format!("matmul/{}/rows={rows},n={n},k={k}", dname(d)), Op::Matmul { dtype: d, rows, n, k, x_scale: 1.0 }));
        }
    }
    for d in [DType::Q2K, DType::Q3K, DType::IQ4NL, DType::IQ4XS, DType::MXFP4] {
        let cols = if d.block().0 == 256 { 256 } else { 64 };
        let ids = vec![0, 99, 7, 7, 42];
        v.push((format!("embed/{}/vocab=100,cols={cols},tokens={}", dname(d), ids.len()), Op::Embed { dtype: d, vocab: 100, cols, ids, scale: 1.0 }));
    }
    v.into_iter().enumerate().map(|(i, (name, op))| Case { name, op, seed: 1000 + i as u64 }).collect()
}

/// Cases whose name contains any of the comma-separated patterns (all when empty).
pub fn filter(cases: Vec<Case>, patterns: &str) -> Vec<Case> {
    let pats: Vec<&str> = patterns.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    cases.into_iter().filter(|c| pats.is_empty() || pats.iter().any(|p| c.name.contains(p))).collect()
}

/// Outputs of one run: every output buffer read back whole, guard region included.
struct Run {
    outputs: Vec<(&'static str, Vec<f32>, usize)>,
}

fn guarded(data: &[f32]) -> Vec<f32> {
    let mut v = data.to_vec();
    v.extend(std::iter::repeat_n(GUARD_VALUE, GUARD));
    v
}

async fn read_all<B: Backend>(b: &B, buf: &B::Buf, len: usize) -> Result<Vec<f32>, BackendError> {
    b.read(buf, 0, len + GUARD).await
}

/// Runs the case's op on `b` with inputs drawn from the case's seed.
async fn execute<B: Backend>(b: &B, case: &Case) -> Result<Run, BackendError> {
    let mut rng = Rng::new(case.seed);
    let mut outputs = Vec::new();
    match &case.op {
        Op::Matmul { dtype, rows, n, k, x_scale } => {
            let w = b.upload_weight(*dtype, *n, *k, &random_weight(*dtype, *n, *k, &mut rng))?;
            let x = b.upload(&rng.vec(rows * k, *x_scale))?;
            let mut out = b.upload(&guarded(&vec![0.0; rows * n]))?;
            b.matmul(&x, *rows, &w, &mut out)?;
            outputs.push(("out", read_all(b, &out, rows * n).await?, rows * n));
        }
        Op::Embed { dtype, vocab, cols, ids, scale } => {
            let w = b.upload_weight(*dtype, *vocab, *cols, &random_weight(*dtype, *vocab, *cols, &mut rng))?;
            let mut out = b.upload(&guarded(&vec![0.0; ids.len() * cols]))?;
            b.embed(&w, ids, *scale, &mut out)?;
            outputs.push(("out", read_all(b, &out, ids.len() * cols).await?, ids.len() * cols));
        }
        Op::RmsNorm { dtype, rows, cols, eps, offset } => {
            let w = b.upload_weight(*dtype, 1, *cols, &random_weight(*dtype, 1, *cols, &mut rng))?;
            let x = b.upload(&rng.vec(rows * cols, 3.0))?;
            let mut out = b.upload(&guarded(&vec![0.0; rows * cols]))?;
            b.rms_norm(&x, *rows, *cols, &w, *eps, *offset, &mut out)?;
            outputs.push(("out", read_all(b, &out, rows * cols).await?, rows * cols));
        }
        Op::AddBias { dtype, rows, cols } => {
            let w = b.upload_weight(*dtype, 1, *cols, &random_weight(*dtype, 1, *cols, &mut rng))?;
            let mut x = b.upload(&guarded(&rng.vec(rows * cols, 1.0)))?;
            b.add_bias(&mut x, *rows, &w)?;
            outputs.push(("x", read_all(b, &x, rows * cols).await?, rows * cols));
        }
        Op::Rope { style, tokens, heads, head_dim, rope_dim, pos0, mscale } => {
            let inv_freq: Vec<f32> = (0..rope_dim / 2).map(|i| 10000f32.powf(-2.0 * i as f32 / *rope_dim as f32)).collect();
            let positions: Vec<u32> = (0..*tokens as u32).map(|t| pos0 + t * 3).collect();
            let len = tokens * heads * head_dim;
            let mut x = b.upload(&guarded(&rng.vec(len, 1.0)))?;
            let args = RopeArgs { rope_dim: *rope_dim, style: *style, inv_freq: &inv_freq, mscale: *mscale, positions: &positions };
            b.rope(&mut x, *heads, *head_dim, &args)?;
            outputs.push(("x", read_all(b, &x, len).await?, len));
        }
        Op::Attention { tokens, past, heads, kv_heads, hd, hdv, window, softcap } => {
            let kv_len = past + tokens;
            let q = b.upload(&rng.vec(tokens * heads * hd, 1.0))?;
            let k = b.upload(&rng.vec(kv_len * kv_heads * hd, 1.0))?;
            let vv = b.upload(&rng.vec(kv_len * kv_heads * hdv, 1.0))?;
            let len = tokens * heads * hdv;
            let mut out = b.upload(&guarded(&vec![0.0; len]))?;
            let args = AttnArgs {
                tokens: *tokens,
                past: *past,
                n_heads: *heads,
                n_kv_heads: *kv_heads,
                head_dim: *hd,
                head_dim_v: *hdv,
                scale: 1.0 / (*hd as f32).sqrt() * 2.0,
                window: *window,
                softcap: *softcap,
            };
            b.attention(&q, &k, &vv, &args, &mut out)?;
            outputs.push(("out", read_all(b, &out, len).await?, len));
        }
        Op::Gated { act, n } => {
            let g = b.upload(&rng.vec(*n, 6.0))?;
            let u = b.upload(&rng.vec(*n, 2.0))?;
            let mut out = b.upload(&guarded(&vec![0.0; *n]))?;
            b.gated(&g, &u, *n, *act, &mut out)?;
            outputs.push(("out", read_all(b, &out, *n).await?, *n));
        }
        Op::Add { n } => {
            let mut x = b.upload(&guarded(&rng.vec(*n, 1.0)))?;
            let y = b.upload(&rng.vec(*n, 1.0))?;
            b.add(&mut x, &y, *n)?;
            outputs.push(("x", read_all(b, &x, *n).await?, *n));
        }
        Op::Softcap { n, cap } => {
            let mut x = b.upload(&guarded(&rng.vec(*n, 200.0)))?;
            b.softcap(&mut x, *n, *cap)?;
            outputs.push(("x", read_all(b, &x, *n).await?, *n));
        }
        Op::CopyRows { dst_rows, dst_row, src_rows, src_row, rows, width } => {
            let src = b.upload(&rng.vec(src_rows * width, 1.0))?;
            let mut dst = b.upload(&guarded(&rng.vec(dst_rows * width, 1.0)))?;
            b.copy_rows(&mut dst, *dst_row, &src, *src_row, *rows, *width)?;
            outputs.push(("dst", read_all(b, &dst, dst_rows * width).await?, dst_rows * width));
        }
        Op::CopyCols { rows, src_width, col, cols } => {
            let src = b.upload(&rng.vec(rows * src_width, 1.0))?;
            let mut dst = b.upload(&guarded(&vec![0.0; rows * cols]))?;
            b.copy_cols(&mut dst, &src, *rows, *src_width, *col, *cols)?;
            outputs.push(("dst", read_all(b, &dst, rows * cols).await?, rows * cols));
        }
        Op::TopK { n, k, ties } => {
            let mut x = rng.vec(*n, 10.0);
            if *ties {
                // Few distinct values: ties everywhere, broken by index.
                x.iter_mut().for_each(|v| *v = (*v).round());
            }
            let buf = b.upload(&x)?;
            let top = b.top_k(&buf, *n, *k).await?;
            let mut flat = Vec::new();
            for (i, v) in &top {
                flat.push(*i as f32);
                flat.push(*v);
            }
            let len = flat.len();
            outputs.push(("top", flat, len));
        }
    }
    Ok(Run { outputs })
}

/// Runs one case on `b` and on the CPU reference and judges it.
pub async fn run_case<B: Backend>(b: &B, case: &Case, precision: impl Into<Precision>) -> Outcome {
    let precision = precision.into();
    let reference = match execute(&CpuBackend::new(), case).await {
        Ok(r) => r,
        Err(e) => return Outcome::Fail(format!("the CPU reference failed: {e}")),
    };
    let op = spec(&case.op);
    if !b.supports_op(&op) {
        return Outcome::Unsupported(op.describe());
    }
    let got = match execute(b, case).await {
        Ok(r) => r,
        Err(e @ BackendError::Unsupported { .. }) => return Outcome::Fail(format!("{} says it supports {}, then: {e}", b.name(), op.describe())),
        Err(e) => return Outcome::Fail(format!("error: {e}")),
    };
    let lim = limit(family(&case.op), precision);
    let mut worst = 0f64;
    for ((name, want, len), (_, have, hlen)) in reference.outputs.iter().zip(&got.outputs) {
        if len != hlen || have.len() != want.len() {
            return Outcome::Fail(format!("{name}: {} values, the reference has {}", have.len(), want.len()));
        }
        if let Some(i) = have[*len..].iter().position(|v| v.to_bits() != GUARD_VALUE.to_bits()) {
            return Outcome::Fail(format!("{name}: guard value {i} after the output was overwritten ({})", have[len + i]));
        }
        if let Some(i) = have[..*len].iter().position(|v| v.is_nan()) {
            return Outcome::Fail(format!("{name}[{i}] is NaN"));
        }
        if let Some(i) = (0..*len).find(|&i| (have[i].is_infinite() || want[i].is_infinite()) && have[i] != want[i]) {
            return Outcome::Fail(format!("{name}[{i}] = {}, reference {}", have[i], want[i]));
        }
        let (mut err, mut norm) = (0f64, 0f64);
        for i in 0..*len {
            if want[i].is_infinite() {
                continue;
            }
            let d = f64::from(have[i]) - f64::from(want[i]);
            err += d * d;
            norm += f64::from(want[i]) * f64::from(want[i]);
        }
        let nmse = if norm > 0.0 { err / norm } else { err };
        worst = worst.max(nmse);
        if nmse > lim {
            let i = (0..*len).max_by(|&a, &b| (have[a] - want[a]).abs().total_cmp(&(have[b] - want[b]).abs())).unwrap_or(0);
            return Outcome::Fail(format!("{name}: NMSE {nmse:.3e} > {lim:.1e} (worst at {i}: {} vs reference {})", have[i], want[i]));
        }
    }
    Outcome::Pass { nmse: worst, limit: lim }
}

/// Counts from a run of many cases, with one line per case.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    pub unsupported: usize,
    pub lines: Vec<String>,
    /// Worst NMSE per op family.
    pub worst: std::collections::BTreeMap<&'static str, f64>,
}

impl Report {
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed, {} unsupported", self.passed, self.failed, self.unsupported)
    }
}

pub async fn run_all<B: Backend>(b: &B, cases: &[Case], precision: impl Into<Precision>) -> Report {
    let precision = precision.into();
    let mut r = Report::default();
    for c in cases {
        let o = run_case(b, c, precision).await;
        let line = match &o {
            Outcome::Pass { nmse, limit } => {
                r.passed += 1;
                let w = r.worst.entry(family(&c.op)).or_insert(0.0);
                *w = w.max(*nmse);
                format!("PASS  {}  nmse={nmse:.2e} (limit {limit:.0e})", c.name)
            }
            Outcome::Fail(why) => {
                r.failed += 1;
                format!("FAIL  {}  {why}", c.name)
            }
            Outcome::Unsupported(why) => {
                r.unsupported += 1;
                format!("UNSUPPORTED  {}  {why}", c.name)
            }
        };
        r.lines.push(line);
    }
    r
}

/// Runs the cases matching `pattern` and `$STRATA_OPS` on `b` (blocking), prints one line
/// per case and the worst NMSE per op, and asserts that none failed and none was
/// unsupported: the body of every backend's native op test.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_and_assert<B: Backend>(b: &B, pattern: &str, precision: impl Into<Precision>) {
    let precision = precision.into();
    let env = std::env::var("STRATA_OPS").unwrap_or_default();
    let selected = filter(filter(cases(), pattern), &env);
    assert!(!selected.is_empty(), "no cases match");
    let report = pollster::block_on(run_all(b, &selected, precision));
    println!("backend: {}", b.name());
    for l in &report.lines {
        println!("{l}");
    }
    println!("worst NMSE per op: {:?}", report.worst);
    println!("{}", report.summary());
    assert_eq!(report.failed, 0, "{}", report.summary());
    assert_eq!(report.unsupported, 0, "{} implements every op: {}", b.name(), report.summary());
}
