//! strata's CUDA kernels run on the CPU under a small emulator (tests/emulator: real
//! threads per block, so __syncthreads and warp shuffles behave as on a GPU) and checked
//! against the CPU reference backend op by op: matmul for every weight dtype and every
//! token tile, embed, rms_norm, rope, attention (decode over a long cache in splits with
//! the combine kernel, prefill with GQA, window, soft-cap, odd head dims), top-k (one and
//! two stages, ties), the cuBLAS prefill path around the GEMM (f16 operands, per-row
//! scales), and the element-wise kernels. Each output buffer is followed by
//! guard values that must come back untouched.
//!
//! The launches are the backend's own plans (`strata_cuda::launch`: variant, grid, block,
//! argument order), so this proves the kernels' indexing, reductions and control flow and
//! the backend's launch geometry without a GPU. What only a GPU proves: the cudarc calls
//! around the plans, cuBLAS, streams and events, speed (tests/tests/cuda.rs,
//! scripts/gpu_check.sh).
//! Needs a C++20 compiler; without one the test says SKIPPED, unless STRATA_REQUIRE_CXX=1.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata::backend::cpu::CpuBackend;
use strata::backend::{AttnArgs, Backend, RopeArgs};
use strata::backend::{Activation, RopeStyle};
use strata::quant::DType;
use strata_conformance::ops::{random_weight, Rng};
use strata_cuda::kernels::{expand, Variant, WEIGHT_DTYPES};
use strata_cuda::launch::{self, Arg as LArg, Launch};

const GUARD: usize = 16;

/// (tokens, past, heads, kv heads, head_dim, head_dim_v, window, softcap, keys per split)
type AttnCase = (usize, usize, usize, usize, usize, usize, Option<usize>, Option<f32>, usize);
const GUARD_VALUE: f32 = -1234.5625;

/// A buffer for one plan slot; `true`: an output, guard-checked and returned.
struct Buf(Vec<u8>, bool);

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// An output buffer of `n` values followed by guards.
fn out(n: usize) -> Buf {
    let mut v = vec![0f32; n];
    v.extend(std::iter::repeat_n(GUARD_VALUE, GUARD));
    Buf(f32_bytes(&v), true)
}

/// An in-place buffer: `v`, then guards.
fn inout(v: &[f32]) -> Buf {
    let mut b = v.to_vec();
    b.extend(std::iter::repeat_n(GUARD_VALUE, GUARD));
    Buf(f32_bytes(&b), true)
}

fn input(v: &[f32]) -> Buf {
    Buf(f32_bytes(v), false)
}

fn bytes(b: &[u8]) -> Buf {
    Buf(b.to_vec(), false)
}

struct Emu {
    cxx: String,
    dir: PathBuf,
    exes: HashMap<Variant, PathBuf>,
    launches: usize,
}

impl Emu {
    fn new() -> Option<Emu> {
        let cxx = strata_conformance::cxx_or_skip()?;
        let dir = std::env::temp_dir().join(format!("strata-cuda-emu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Some(Emu { cxx, dir, exes: HashMap::new(), launches: 0 })
    }

    /// Compiles the variants (in parallel) that are not built yet.
    fn build(&mut self, variants: &[Variant]) {
        let emu_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("emulator");
        let todo: Vec<&Variant> = variants.iter().filter(|v| !self.exes.contains_key(*v)).collect();
        let mut children = Vec::new();
        for (i, v) in todo.iter().enumerate() {
            let list: Vec<String> = v.kernels().iter().map(|k| format!("{{\"{k}\", kernel_of(&{k})}}")).collect();
            let src = format!(
                "#include \"{}\"\n{}\n#define KERNELS {}\n#include \"{}\"\n",
                emu_dir.join("cuda_emulator.h").display(),
                expand(v.file).unwrap(),
                list.join(", "),
                emu_dir.join("driver.cpp").display()
            );
            let path = self.dir.join(format!("v{}-{i}.cpp", self.exes.len()));
            std::fs::write(&path, src).unwrap();
            let exe = path.with_extension("bin");
            let mut c = Command::new(&self.cxx);
            c.args(["-std=c++20", "-O1", "-pthread", "-Wno-unused-function", "-o"]).arg(&exe).arg(&path);
            c.args(v.defines.iter().map(|d| format!("-D{d}")));
            children.push(((*v).clone(), exe, c.spawn().unwrap()));
            if children.len() >= 4 {
                self.finish(&mut children);
            }
        }
        self.finish(&mut children);
    }

    fn finish(&mut self, children: &mut Vec<(Variant, PathBuf, std::process::Child)>) {
        for (v, exe, child) in children.drain(..) {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "compiling {} for the emulator failed", v.label());
            self.exes.insert(v, exe);
        }
    }

    /// Runs a launch plan with `bufs` in its slot order; returns the output buffers
    /// (guards checked and cut off), in slot order.
    fn run(&mut self, l: &Launch, bufs: Vec<Buf>) -> Vec<Vec<f32>> {
        self.build(std::slice::from_ref(&l.variant));
        self.launches += 1;
        let id = self.launches;
        let mut script = format!("kernel {}\ngrid {} {} {}\nblock {}\n", l.kernel, l.grid.0, l.grid.1, l.grid.2, l.threads);
        let paths: Vec<PathBuf> = (0..bufs.len()).map(|i| self.dir.join(format!("l{id}-b{i}"))).collect();
        for (p, b) in paths.iter().zip(&bufs) {
            std::fs::write(p, &b.0).unwrap();
        }
        for a in &l.args {
            match a {
                LArg::Buf(i) => script += &format!("buf {}\n", paths[*i].display()),
                LArg::U32(x) => script += &format!("u32 {x}\n"),
                LArg::F32(x) => script += &format!("f32 {}\n", x.to_bits()),
            }
        }
        let sp = self.dir.join(format!("l{id}.script"));
        std::fs::write(&sp, script).unwrap();
        let o = Command::new(&self.exes[&l.variant]).arg(&sp).output().unwrap();
        assert!(o.status.success(), "{}: {}", l.kernel, String::from_utf8_lossy(&o.stderr));
        paths
            .iter()
            .zip(&bufs)
            .filter(|(_, b)| b.1)
            .map(|(p, _)| {
                let mut p = p.clone().into_os_string();
                p.push(".out");
                let v = floats(&std::fs::read(&p).unwrap());
                let (data, guard) = v.split_at(v.len() - GUARD);
                assert!(guard.iter().all(|g| g.to_bits() == GUARD_VALUE.to_bits()), "{}: a guard value after the output was overwritten", l.kernel);
                data.to_vec()
            })
            .collect()
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nmse(have: &[f32], want: &[f32]) -> f64 {
    assert_eq!(have.len(), want.len());
    assert!(have.iter().all(|v| v.is_finite()), "non-finite output");
    let (mut e, mut n) = (0f64, 0f64);
    for (h, w) in have.iter().zip(want) {
        e += (f64::from(*h) - f64::from(*w)).powi(2);
        n += f64::from(*w).powi(2);
    }
    if n > 0.0 {
        e / n
    } else {
        e
    }
}

fn close(what: &str, have: &[f32], want: &[f32]) {
    let e = nmse(have, want);
    println!("{what}: NMSE {e:.2e}");
    assert!(e <= 1e-10, "{what}: NMSE {e:.3e}");
}

fn define(dt: DType) -> String {
    strata_cuda::kernels::dtype_define(dt).unwrap().to_string()
}

#[test]
fn cuda_kernels_on_the_emulator_match_the_cpu_reference() {
    let Some(mut emu) = Emu::new() else { return };
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(11);

    // Build every variant used below at once (parallel compiles).
    let mut want_variants = Vec::new();
    for &dt in WEIGHT_DTYPES {
        want_variants.push(Variant::new("matmul.cu", &[define(dt), "TT=1".into()]));
        want_variants.push(Variant::new("embed.cu", &[define(dt)]));
    }
    for tt in [4, 8] {
        for dt in [DType::Q4K, DType::F32, DType::Q5_0] {
            want_variants.push(Variant::new("matmul.cu", &[define(dt), format!("TT={tt}")]));
        }
    }
    for f in ["norm.cu", "rope.cu", "elementwise.cu", "attention.cu"] {
        want_variants.push(Variant::new(f, &[]));
    }
    for dt in [DType::Q4_1, DType::Q6K, DType::BF16] {
        want_variants.push(Variant::new("dequant.cu", &[define(dt)]));
    }
    want_variants.push(Variant::new("dequant.cu", &["NO_WEIGHT".into()]));
    want_variants.push(Variant::new("topk.cu", &["PAIRS=0".into()]));
    want_variants.push(Variant::new("topk.cu", &["PAIRS=1".into()]));
    emu.build(&want_variants);

    // matmul: every dtype at decode (one token); token tiles of 4 and 8 with partial tiles.
    for &dt in WEIGHT_DTYPES {
        let (block, _) = dt.block();
        let k = if block == 1 { 61 } else { block as usize * 2 };
        let n = 9;
        let mut token_counts = vec![1];
        if [DType::Q4K, DType::F32, DType::Q5_0].contains(&dt) {
            token_counts.extend([3, 11]);
        }
        let wb = random_weight(dt, n, k, &mut rng);
        let row_bytes = dt.row_bytes(k as u64).unwrap() as usize;
        let wc = cpu.upload_weight(dt, n, k, &wb).unwrap();
        for tokens in token_counts {
            let x = rng.vec(tokens * k, 1.0);
            let mut want = vec![0f32; tokens * n];
            cpu.matmul(&x, tokens, &wc, &mut want).unwrap();
            let plan = launch::matmul(dt, k, n, tokens, row_bytes).unwrap();
            let have = emu.run(&plan, vec![bytes(&wb), input(&x), out(tokens * n)]).remove(0);
            close(&format!("matmul {dt} k={k} tokens={tokens} ({})", plan.variant.label()), &have, &want);
        }
    }

    // The cuBLAS path's operands: weights dequantised to f16, activations to f16 (round to
    // nearest even, like `half`).
    for dt in [DType::Q4_1, DType::Q6K, DType::BF16] {
        let (block, _) = dt.block();
        let (n, k) = (5, if block == 1 { 37 } else { block as usize });
        let wb = random_weight(dt, n, k, &mut rng);
        let mut want = vec![0f32; n * k];
        strata::quant::dequant::dequantize(dt, &wb, &mut want).unwrap();
        let want16: Vec<u16> = want.iter().map(|v| half::f16::from_f32(*v).to_bits()).collect();
        let plan = launch::dequant_f16(dt, k, n, dt.row_bytes(k as u64).unwrap() as usize).unwrap();
        let have = emu.run(&plan, vec![bytes(&wb), halves_out(n * k)]).remove(0);
        assert_eq!(halves_of(&have, n * k), want16, "dequant_f16 {dt}");
        println!("dequant_f16 {dt}: exact");
    }
    // Activations to f16 a row at a time, each row scaled by a power of two into f16's
    // range: rows far above 65504, tiny rows, a zero row, a row with inf.
    {
        let k = 300;
        let mut x = Vec::new();
        for (r, mag) in [3.0f32, 1e6, 2e-7, 0.0, 3.0, 70000.0].into_iter().enumerate() {
            let mut row = rng.vec(k, mag);
            if r == 4 {
                row[17] = f32::INFINITY;
            }
            if r == 0 {
                row[..4].copy_from_slice(&[65504.0, 1.0 + 1.0 / 2048.0, 1.0 + 3.0 / 2048.0, -0.0]);
            }
            x.extend(row);
        }
        let rows = x.len() / k;
        let plan = launch::to_f16_rows(rows, k).unwrap();
        let mut res = emu.run(&plan, vec![input(&x), halves_out(rows * k), out(rows)]);
        let (h, inv) = (halves_of(&res.remove(0), rows * k), res.remove(0));
        for r in 0..rows {
            let (xr, hr) = (&x[r * k..(r + 1) * k], &h[r * k..(r + 1) * k]);
            let s = inv[r];
            assert!(s > 0.0 && s.is_finite() && s.to_bits() & 0x7f_ffff == 0, "row {r}: inverse scale {s} is not a power of two");
            // Each half is the round-to-nearest-even f16 of x / s (exact division by 2^e).
            let want: Vec<u16> = xr.iter().map(|v| half::f16::from_f32(v / s).to_bits()).collect();
            assert_eq!(hr, &want[..], "to_f16_rows row {r}");
            let peak = hr.iter().map(|b| half::f16::from_bits(*b).to_f32().abs()).fold(0f32, f32::max);
            if xr.iter().all(|v| v.is_finite()) && peak > 0.0 {
                assert!((16384.0..=32768.0).contains(&peak), "row {r}: largest f16 {peak} not brought to [2^14, 2^15]");
            } else {
                assert_eq!(s, 1.0, "row {r} (zero or non-finite) must not be scaled");
            }
        }
        println!("to_f16_rows: exact, every finite row's peak in [2^14, 2^15] (rows up to 1e6, down to 2e-7)");
    }

    // The whole cuBLAS prefill path with cuBLAS replaced by an f32-accumulating GEMM on the
    // host: dequant_f16 -> to_f16_rows -> GEMM -> scale_rows, against the CPU matmul, with
    // rows far beyond f16's range. A plain f16 conversion of those rows overflows (checked).
    {
        let dt = DType::Q6K;
        let (n, k, rows) = (6, 256, 4);
        let wb = random_weight(dt, n, k, &mut rng);
        let wc = cpu.upload_weight(dt, n, k, &wb).unwrap();
        let mut x = Vec::new();
        for mag in [1.0f32, 3e5, 1e-4, 2e6] {
            x.extend(rng.vec(k, mag));
        }
        let mut want = vec![0f32; rows * n];
        cpu.matmul(&x, rows, &wc, &mut want).unwrap();
        let w16 = halves_of(&emu.run(&launch::dequant_f16(dt, k, n, dt.row_bytes(k as u64).unwrap() as usize).unwrap(), vec![bytes(&wb), halves_out(n * k)]).remove(0), n * k);
        let mut res = emu.run(&launch::to_f16_rows(rows, k).unwrap(), vec![input(&x), halves_out(rows * k), out(rows)]);
        let (x16, inv) = (halves_of(&res.remove(0), rows * k), res.remove(0));
        let f = |b: u16| f64::from(half::f16::from_bits(b).to_f32());
        let gemm = |xh: &[u16]| -> Vec<f32> { (0..rows * n).map(|i| (0..k).map(|j| f(w16[(i % n) * k + j]) * f(xh[(i / n) * k + j])).sum::<f64>() as f32).collect() };
        let have = emu.run(&launch::scale_rows(rows, n).unwrap(), vec![inout(&gemm(&x16)), input(&inv)]).remove(0);
        let e = nmse(&have, &want);
        println!("prefill path (dequant_f16, to_f16_rows, f32 GEMM, scale_rows), rows up to 2e6: NMSE {e:.2e} against the CPU");
        assert!(e <= 1e-5, "prefill path: NMSE {e:.3e}");
        let unscaled: Vec<u16> = x.iter().map(|v| half::f16::from_f32(*v).to_bits()).collect();
        assert!(gemm(&unscaled).iter().any(|v| !v.is_finite()), "the unscaled conversion was expected to overflow");
    }

    // embed: every dtype.
    for &dt in WEIGHT_DTYPES {
        let (block, _) = dt.block();
        let (rows, k) = (8, if block == 1 { 37 } else { block as usize });
        let wb = random_weight(dt, rows, k, &mut rng);
        let wc = cpu.upload_weight(dt, rows, k, &wb).unwrap();
        let ids = [3u32, 0, 7];
        let mut want = vec![0f32; ids.len() * k];
        cpu.embed(&wc, &ids, 1.5, &mut want).unwrap();
        let plan = launch::embed(dt, k, dt.row_bytes(k as u64).unwrap() as usize, ids.len(), 1.5).unwrap();
        let have = emu.run(&plan, vec![bytes(&wb), bytes(&u32_bytes(&ids)), out(ids.len() * k)]).remove(0);
        close(&format!("embed {dt}"), &have, &want);
    }

    // rms_norm: 3 rows of 200 (not a multiple of the block), weight offset 1 (Gemma).
    {
        let (rows, cols) = (3, 200);
        let x = rng.vec(rows * cols, 2.0);
        let w = rng.vec(cols, 0.5);
        let wc = cpu.upload_weight(DType::F32, 1, cols, &f32_bytes(&w)).unwrap();
        let mut want = vec![0f32; rows * cols];
        cpu.rms_norm(&x, rows, cols, &wc, 1e-6, 1.0, &mut want).unwrap();
        let have = emu.run(&launch::rms_norm(rows, cols, 1e-6, 1.0).unwrap(), vec![input(&x), input(&w), out(rows * cols)]).remove(0);
        close("rms_norm", &have, &want);
    }

    // rope: both pairings, a partial rotary prefix, a large position.
    for style in [RopeStyle::Normal, RopeStyle::Neox] {
        let (tokens, heads, hd, rope_dim) = (3, 2, 16, 12);
        let inv: Vec<f32> = (0..rope_dim / 2).map(|i| 10000f32.powf(-(2.0 * i as f32) / rope_dim as f32)).collect();
        let positions = [5u32, 100_000, 7];
        let a = RopeArgs { rope_dim, style, inv_freq: &inv, mscale: 1.0, positions: &positions };
        let x = rng.vec(tokens * heads * hd, 1.0);
        let mut want = x.clone();
        cpu.rope(&mut want, heads, hd, &a).unwrap();
        let plan = launch::rope(tokens, heads, hd, rope_dim / 2, style == RopeStyle::Neox).unwrap();
        let have = emu.run(&plan, vec![inout(&x), input(&a.cos_sin_table())]).remove(0);
        assert_eq!(have, want, "rope {style:?}: the same f32 arithmetic as the CPU");
        println!("rope {style:?}: exact");
    }

    // attention: (tokens, past, heads, kv heads, hd, hdv, window, softcap, split_len)
    let attn_cases: &[AttnCase] = &[
        (1, 37, 4, 2, 64, 64, None, None, 8),         // decode, 5 splits + combine
        (1, 37, 4, 2, 64, 64, None, None, 1000),      // decode, one split
        (5, 3, 3, 1, 80, 48, Some(4), Some(20.0), 1000), // prefill, GQA 3, window, soft-cap, odd dims
        (4, 0, 2, 2, 32, 32, None, None, 3),          // prefill from empty, splits of 3
    ];
    for &(tokens, past, nh, nkv, hd, hdv, window, softcap, split_len) in attn_cases {
        let kv_len = past + tokens;
        let q = rng.vec(tokens * nh * hd, 1.0);
        let k = rng.vec(kv_len * nkv * hd, 1.0);
        let v = rng.vec(kv_len * nkv * hdv, 1.0);
        let a = AttnArgs { tokens, past, n_heads: nh, n_kv_heads: nkv, head_dim: hd, head_dim_v: hdv, scale: 1.0 / (hd as f32).sqrt(), window, softcap };
        let mut want = vec![0f32; tokens * nh * hdv];
        cpu.attention(&q, &k, &v, &a, &mut want).unwrap();
        let (main, combine, part_len) = launch::attention(&a, split_len).unwrap();
        let splits = main.grid.2;
        let mut res = emu.run(&main, vec![input(&q), input(&k), input(&v), out(tokens * nh * hdv), out(part_len)]);
        let have = match &combine {
            None => res.remove(0),
            Some(c) => {
                let part = res.remove(1);
                emu.run(c, vec![input(&part), out(tokens * nh * hdv)]).remove(0)
            }
        };
        close(&format!("attention tokens={tokens} past={past} heads={nh}/{nkv} hd={hd}/{hdv} window={window:?} softcap={softcap:?} splits={splits}"), &have, &want);
    }

    // top-k: ties (lower index first), one stage and two (3 chunks of 4096); the infinity
    // comes first, reported as NaN, on both (a non-finite row's best candidate is one).
    for (n, k) in [(300usize, 5usize), (9000, 40), (50, 64)] {
        let mut x: Vec<f32> = rng.vec(n, 10.0).into_iter().map(|v| (v * 4.0).round() / 4.0).collect();
        x[n / 2] = f32::INFINITY;
        let want = pollster::block_on(cpu.top_k(&x, n, k)).unwrap();
        let (stage1, stage2, cand_len) = launch::top_k(n, k).unwrap();
        let cand = words_of(emu.run(&stage1, vec![input(&x), words_out(cand_len)]).remove(0));
        let words = match &stage2 {
            Some(s2) => words_of(emu.run(s2, vec![bytes(&u32_bytes(&cand)), words_out(2 * k)]).remove(0)),
            None => cand,
        };
        let have = strata::backend::topk_pairs(&words);
        let bits = |v: &[(u32, f32)]| v.iter().map(|&(i, x)| (i, x.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&have), bits(&want), "top_k n={n} k={k}");
        assert!(have[0].0 == n as u32 / 2 && have[0].1.is_nan(), "top_k n={n}: {:?}", have[0]);
        println!("top_k n={n} k={k} ({} stages): exact", 1 + usize::from(stage2.is_some()));
    }

    // element-wise
    let n = 1000;
    let (g, u) = (rng.vec(n, 4.0), rng.vec(n, 1.0));
    for act in [Activation::Silu, Activation::GeluTanh] {
        let mut want = vec![0f32; n];
        cpu.gated(&g, &u, n, act, &mut want).unwrap();
        let have = emu.run(&launch::gated(n, act).unwrap(), vec![input(&g), input(&u), out(n)]).remove(0);
        close(&format!("gated {act:?}"), &have, &want);
    }
    {
        let mut want = g.clone();
        cpu.add(&mut want, &u, n).unwrap();
        let have = emu.run(&launch::add(n).unwrap(), vec![inout(&g), input(&u)]).remove(0);
        close("add", &have, &want);
        let mut want = g.clone();
        cpu.softcap(&mut want, n, 3.0).unwrap();
        let have = emu.run(&launch::softcap(n, 3.0).unwrap(), vec![inout(&g)]).remove(0);
        close("softcap", &have, &want);
        let (rows, cols) = (10, 70);
        let b = rng.vec(cols, 1.0);
        let bc = cpu.upload_weight(DType::F32, 1, cols, &f32_bytes(&b)).unwrap();
        let mut want = g[..rows * cols].to_vec();
        cpu.add_bias(&mut want, rows, &bc).unwrap();
        let have = emu.run(&launch::add_bias(rows, cols).unwrap(), vec![inout(&g[..rows * cols]), input(&b)]).remove(0);
        close("add_bias", &have, &want);
        let (rows, sw, col, cols) = (7, 96, 32, 40);
        let mut want = vec![0f32; rows * cols];
        cpu.copy_cols(&mut want, &g[..rows * sw].to_vec(), rows, sw, col, cols).unwrap();
        let have = emu.run(&launch::copy_cols(rows, sw, col, cols).unwrap(), vec![out(rows * cols), input(&g[..rows * sw])]).remove(0);
        assert_eq!(have, want, "copy_cols");
    }
    println!("{} emulated launches of {} kernel variants", emu.launches, emu.exes.len());
}

/// An output of `words` u32 (top-k candidates), then the usual f32 guards.
fn words_out(words: usize) -> Buf {
    let mut b = vec![0u8; 4 * words];
    b.extend(f32_bytes(&[GUARD_VALUE; GUARD]));
    Buf(b, true)
}

fn words_of(v: Vec<f32>) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// An output of `n` f16 values (padded to whole words), then the usual f32 guards.
fn halves_out(n: usize) -> Buf {
    let mut b = vec![0u8; 4 * n.div_ceil(2)];
    b.extend(f32_bytes(&[GUARD_VALUE; GUARD]));
    Buf(b, true)
}

fn halves_of(v: &[f32], n: usize) -> Vec<u16> {
    v.iter().flat_map(|f| [f.to_bits() as u16, (f.to_bits() >> 16) as u16]).take(n).collect()
}
