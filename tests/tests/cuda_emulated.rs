//! strata's CUDA kernels run on the CPU under a small emulator (tests/emulator: real
//! threads per block, so __syncthreads and warp shuffles behave as on a GPU) and checked
//! against the CPU reference backend op by op: matmul for every weight dtype and every
//! token tile, embed, rms_norm, rope, attention (decode over a long cache in splits with
//! the combine kernel, prefill with GQA, window, soft-cap, odd head dims), top-k (one and
//! two stages, ties), and the element-wise kernels. Each output buffer is followed by
//! guard values that must come back untouched.
//!
//! This proves the kernels' indexing, reductions and control flow without a GPU; the launch
//! shapes mirror `native/cuda/src/backend.rs`. The backend's host code and the kernels'
//! speed are proven only on a GPU (tests/tests/cuda.rs, scripts/gpu_check.sh).
//! Needs a C++20 compiler; without one the test says SKIPPED, unless STRATA_REQUIRE_CXX=1.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata::backend::cpu::CpuBackend;
use strata::backend::{AttnArgs, Backend, RopeArgs};
use strata::model::config::{Activation, RopeStyle};
use strata::quant::DType;
use strata_conformance::ops::{random_weight, Rng};
use strata_cuda::kernels::{expand, matmul_tile, Variant, WEIGHT_DTYPES};

const GUARD: usize = 16;

/// (tokens, past, heads, kv heads, head_dim, head_dim_v, window, softcap, keys per split)
type AttnCase = (usize, usize, usize, usize, usize, usize, Option<usize>, Option<f32>, usize);
const GUARD_VALUE: f32 = -1234.5625;

enum Arg {
    /// A device buffer; `true`: an output, checked and returned.
    Buf(Vec<u8>, bool),
    U32(u32),
    F32(f32),
}

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
fn out(n: usize) -> Arg {
    let mut v = vec![0f32; n];
    v.extend(std::iter::repeat_n(GUARD_VALUE, GUARD));
    Arg::Buf(f32_bytes(&v), true)
}

fn input(v: &[f32]) -> Arg {
    Arg::Buf(f32_bytes(v), false)
}

struct Emu {
    cxx: String,
    dir: PathBuf,
    exes: HashMap<Variant, PathBuf>,
    launches: usize,
}

impl Emu {
    fn new() -> Option<Emu> {
        let cxx = [std::env::var("CXX").unwrap_or_default(), "c++".into(), "g++".into(), "clang++".into()]
            .into_iter()
            .find(|c| !c.is_empty() && Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()));
        let Some(cxx) = cxx else {
            assert_ne!(std::env::var("STRATA_REQUIRE_CXX").as_deref(), Ok("1"), "STRATA_REQUIRE_CXX=1 but no C++ compiler");
            eprintln!("SKIPPED: no C++ compiler");
            return None;
        };
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

    /// Launches `kernel` of `v` over `grid` blocks of `threads`; returns the output buffers
    /// (guards checked and cut off), in argument order.
    fn launch(&mut self, v: &Variant, kernel: &str, grid: (u32, u32, u32), threads: u32, args: Vec<Arg>) -> Vec<Vec<f32>> {
        self.build(std::slice::from_ref(v));
        self.launches += 1;
        let id = self.launches;
        let mut script = format!("kernel {kernel}\ngrid {} {} {}\nblock {threads}\n", grid.0, grid.1, grid.2);
        let mut outs = Vec::new();
        for (i, a) in args.iter().enumerate() {
            match a {
                Arg::Buf(bytes, is_out) => {
                    let p = self.dir.join(format!("l{id}-a{i}"));
                    std::fs::write(&p, bytes).unwrap();
                    script += &format!("buf {}\n", p.display());
                    if *is_out {
                        outs.push(p);
                    }
                }
                Arg::U32(x) => script += &format!("u32 {x}\n"),
                Arg::F32(x) => script += &format!("f32 {}\n", x.to_bits()),
            }
        }
        let sp = self.dir.join(format!("l{id}.script"));
        std::fs::write(&sp, script).unwrap();
        let o = Command::new(&self.exes[v]).arg(&sp).output().unwrap();
        assert!(o.status.success(), "{kernel}: {}", String::from_utf8_lossy(&o.stderr));
        outs.iter()
            .map(|p| {
                let mut p = p.clone().into_os_string();
                p.push(".out");
                let v = floats(&std::fs::read(&p).unwrap());
                let (data, guard) = v.split_at(v.len() - GUARD);
                assert!(guard.iter().all(|g| g.to_bits() == GUARD_VALUE.to_bits()), "{kernel}: a guard value after the output was overwritten");
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

fn blocks(n: usize, threads: usize) -> u32 {
    n.div_ceil(threads).max(1) as u32
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
            let tt = matmul_tile(tokens);
            let v = Variant::new("matmul.cu", &[define(dt), format!("TT={tt}")]);
            let grid = (blocks(n, 4), blocks(tokens, tt as usize), 1);
            let args = vec![Arg::Buf(wb.clone(), false), input(&x), out(tokens * n), Arg::U32(k as u32), Arg::U32(n as u32), Arg::U32(tokens as u32), Arg::U32(row_bytes as u32)];
            let have = emu.launch(&v, "matmul", grid, 128, args).remove(0);
            close(&format!("matmul {dt} k={k} tokens={tokens} (TT={tt})"), &have, &want);
        }
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
        let row_bytes = dt.row_bytes(k as u64).unwrap() as u32;
        let args = vec![Arg::Buf(wb, false), Arg::Buf(u32_bytes(&ids), false), out(ids.len() * k), Arg::U32(k as u32), Arg::U32(row_bytes), Arg::F32(1.5)];
        let have = emu.launch(&Variant::new("embed.cu", &[define(dt)]), "embed", (blocks(k.div_ceil(8), 128), ids.len() as u32, 1), 128, args).remove(0);
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
        let args = vec![input(&x), input(&w), out(rows * cols), Arg::U32(cols as u32), Arg::F32(1e-6), Arg::F32(1.0)];
        let have = emu.launch(&Variant::new("norm.cu", &[]), "rms_norm", (rows as u32, 1, 1), 256, args).remove(0);
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
        let half = rope_dim / 2;
        let mut xo = x.clone();
        xo.extend(std::iter::repeat_n(GUARD_VALUE, GUARD));
        let args = vec![
            Arg::Buf(f32_bytes(&xo), true),
            input(&a.cos_sin_table()),
            Arg::U32(tokens as u32),
            Arg::U32(heads as u32),
            Arg::U32(hd as u32),
            Arg::U32(half as u32),
            Arg::U32(u32::from(style == RopeStyle::Neox)),
        ];
        let have = emu.launch(&Variant::new("rope.cu", &[]), "rope", (blocks(tokens * heads * half, 256), 1, 1), 256, args).remove(0);
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
        let split_len = split_len.min(kv_len);
        let splits = kv_len.div_ceil(split_len);
        let part_len = tokens * nh * splits * (hdv + 2);
        let av = Variant::new("attention.cu", &[]);
        let args = vec![
            input(&q),
            input(&k),
            input(&v),
            out(tokens * nh * hdv),
            out(part_len.max(1)),
            Arg::U32(past as u32),
            Arg::U32(nh as u32),
            Arg::U32(nkv as u32),
            Arg::U32(hd as u32),
            Arg::U32(hdv as u32),
            Arg::F32(a.scale),
            Arg::U32(window.unwrap_or(0) as u32),
            Arg::F32(softcap.unwrap_or(0.0)),
            Arg::U32(split_len as u32),
            Arg::U32(splits as u32),
        ];
        let mut res = emu.launch(&av, "attention", (nh as u32, tokens as u32, splits as u32), 128, args);
        let have = if splits == 1 {
            res.remove(0)
        } else {
            let part = res.remove(1);
            let args = vec![input(&part), out(tokens * nh * hdv), Arg::U32(nh as u32), Arg::U32(hdv as u32), Arg::U32(splits as u32)];
            emu.launch(&av, "attention_combine", (nh as u32, tokens as u32, 1), 128, args).remove(0)
        };
        close(&format!("attention tokens={tokens} past={past} heads={nh}/{nkv} hd={hd}/{hdv} window={window:?} softcap={softcap:?} splits={splits}"), &have, &want);
    }

    // top-k: ties (lower index first), one stage and two (3 chunks of 4096).
    for (n, k) in [(300usize, 5usize), (9000, 40), (50, 64)] {
        let mut x: Vec<f32> = rng.vec(n, 10.0).into_iter().map(|v| (v * 4.0).round() / 4.0).collect();
        x[n / 2] = f32::INFINITY;
        let want = pollster::block_on(cpu.top_k(&x, n, k)).unwrap();
        let chunk = 4096usize;
        let chunks = n.div_ceil(chunk);
        let t0 = Variant::new("topk.cu", &["PAIRS=0".into()]);
        let mut words: Vec<u32> = Vec::new();
        let cand = stage1_raw(&mut emu, &t0, &x, n, k, chunk, chunks);
        if chunks > 1 {
            let total = chunks * k;
            let t1 = Variant::new("topk.cu", &["PAIRS=1".into()]);
            words = launch_words(&mut emu, &t1, &u32_bytes(&cand), 2 * k, total as u32, k as u32, total as u32, 1);
        } else {
            words.extend_from_slice(&cand);
        }
        let have = strata::backend::topk_pairs(&words);
        assert_eq!(have, want, "top_k n={n} k={k}");
        println!("top_k n={n} k={k} ({} stage{}): exact", if chunks > 1 { 2 } else { 1 }, if chunks > 1 { "s" } else { "" });
    }

    // element-wise
    let ev = Variant::new("elementwise.cu", &[]);
    let n = 1000;
    let (g, u) = (rng.vec(n, 4.0), rng.vec(n, 1.0));
    for (act, code) in [(Activation::Silu, 0u32), (Activation::GeluTanh, 1)] {
        let mut want = vec![0f32; n];
        cpu.gated(&g, &u, n, act, &mut want).unwrap();
        let have = emu.launch(&ev, "gated", (blocks(n, 256), 1, 1), 256, vec![input(&g), input(&u), out(n), Arg::U32(n as u32), Arg::U32(code)]).remove(0);
        close(&format!("gated {act:?}"), &have, &want);
    }
    let inplace = |v: &[f32]| {
        let mut b = v.to_vec();
        b.extend(std::iter::repeat_n(GUARD_VALUE, GUARD));
        Arg::Buf(f32_bytes(&b), true)
    };
    {
        let mut want = g.clone();
        cpu.add(&mut want, &u, n).unwrap();
        let have = emu.launch(&ev, "add", (blocks(n, 256), 1, 1), 256, vec![inplace(&g), input(&u), Arg::U32(n as u32)]).remove(0);
        close("add", &have, &want);
        let mut want = g.clone();
        cpu.softcap(&mut want, n, 3.0).unwrap();
        let have = emu.launch(&ev, "softcap", (blocks(n, 256), 1, 1), 256, vec![inplace(&g), Arg::U32(n as u32), Arg::F32(3.0)]).remove(0);
        close("softcap", &have, &want);
        let (rows, cols) = (10, 70);
        let b = rng.vec(cols, 1.0);
        let bc = cpu.upload_weight(DType::F32, 1, cols, &f32_bytes(&b)).unwrap();
        let mut want = g[..rows * cols].to_vec();
        cpu.add_bias(&mut want, rows, &bc).unwrap();
        let have = emu.launch(&ev, "add_bias", (blocks(rows * cols, 256), 1, 1), 256, vec![inplace(&g[..rows * cols]), input(&b), Arg::U32(rows as u32), Arg::U32(cols as u32)]).remove(0);
        close("add_bias", &have, &want);
        let (rows, sw, col, cols) = (7, 96, 32, 40);
        let mut want = vec![0f32; rows * cols];
        cpu.copy_cols(&mut want, &g[..rows * sw].to_vec(), rows, sw, col, cols).unwrap();
        let args = vec![out(rows * cols), input(&g[..rows * sw]), Arg::U32(rows as u32), Arg::U32(sw as u32), Arg::U32(col as u32), Arg::U32(cols as u32)];
        let have = emu.launch(&ev, "copy_cols", (blocks(rows * cols, 256), 1, 1), 256, args).remove(0);
        assert_eq!(have, want, "copy_cols");
    }
    println!("{} emulated launches of {} kernel variants", emu.launches, emu.exes.len());
}

/// Stage 1 of top-k, returning the raw candidate words (their buffer is not f32).
fn stage1_raw(emu: &mut Emu, v: &Variant, x: &[f32], n: usize, k: usize, chunk: usize, chunks: usize) -> Vec<u32> {
    launch_words(emu, v, &f32_bytes(x), 2 * chunks * k, n as u32, k as u32, chunk as u32, chunks as u32)
}

/// Launches a top-k stage over `input` and returns `words` u32 of its output.
#[allow(clippy::too_many_arguments)]
fn launch_words(emu: &mut Emu, v: &Variant, input: &[u8], words: usize, n: u32, k: u32, chunk: u32, grid: u32) -> Vec<u32> {
    // f32 GUARD_VALUE bits as the guard, so launch() checks it like any output.
    let mut buf = vec![0u8; 4 * words];
    buf.extend(f32_bytes(&[GUARD_VALUE; GUARD]));
    let args = vec![Arg::Buf(input.to_vec(), false), Arg::Buf(buf, true), Arg::U32(n), Arg::U32(k), Arg::U32(chunk)];
    let out = emu.launch(v, "topk", (grid, 1, 1), 256, args).remove(0);
    out.iter().map(|f| f.to_bits()).collect()
}
