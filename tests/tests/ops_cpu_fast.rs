//! The op conformance harness on the fast CPU backend, against the CPU reference, on every
//! instruction set this machine has (AVX-512 VNNI, AVX2, and the scalar fallback: the
//! lower ones are forced, so every kernel instantiation is checked), with 1 and 3 threads.
//! Filter cases with STRATA_OPS=pattern[,pattern].

use strata::backend::fast::{FastCpuBackend, Isa};
use strata::backend::Backend;
use strata_conformance::ops::{cases, run_all, run_and_assert, Precision};

#[test]
fn ops_on_every_instruction_set() {
    let isas = Isa::all_available();
    assert!(isas.contains(&Isa::Scalar));
    for isa in isas {
        for threads in [1, 3] {
            let b = FastCpuBackend::with_isa(threads, isa).unwrap();
            run_and_assert(&b, "", Precision::Q8Activations);
        }
    }
}

/// The Q8 limits still catch a real error: a backend whose matmul is off by 2.5% in every
/// output fails every matmul case (NMSE 6e-4 > 1e-4).
#[test]
fn q8_limits_catch_a_small_error() {
    struct Off(FastCpuBackend);
    impl Backend for Off {
        type Buf = <FastCpuBackend as Backend>::Buf;
        type Weight = <FastCpuBackend as Backend>::Weight;
        fn name(&self) -> String {
            "off by 2.5%".into()
        }
        fn supports(&self, d: strata::quant::DType) -> bool {
            self.0.supports(d)
        }
        fn upload_weight(&self, d: strata::quant::DType, r: usize, c: usize, b: &[u8]) -> strata::backend::BResult<Self::Weight> {
            self.0.upload_weight(d, r, c, b)
        }
        fn alloc(&self, n: usize) -> strata::backend::BResult<Self::Buf> {
            self.0.alloc(n)
        }
        fn upload(&self, d: &[f32]) -> strata::backend::BResult<Self::Buf> {
            self.0.upload(d)
        }
        async fn read(&self, b: &Self::Buf, o: usize, n: usize) -> strata::backend::BResult<Vec<f32>> {
            self.0.read(b, o, n).await
        }
        fn embed(&self, t: &Self::Weight, ids: &[u32], s: f32, out: &mut Self::Buf) -> strata::backend::BResult<()> {
            self.0.embed(t, ids, s, out)
        }
        fn rms_norm(&self, x: &Self::Buf, r: usize, c: usize, w: &Self::Weight, e: f32, o: f32, out: &mut Self::Buf) -> strata::backend::BResult<()> {
            self.0.rms_norm(x, r, c, w, e, o, out)
        }
        fn matmul(&self, x: &Self::Buf, rows: usize, w: &Self::Weight, out: &mut Self::Buf) -> strata::backend::BResult<()> {
            self.0.matmul(x, rows, w, out)?;
            let n = rows * w.rows();
            let v = pollster::block_on(self.0.read(out, 0, out.len()))?;
            let mut v2 = v.clone();
            v2[..n].iter_mut().for_each(|x| *x *= 1.025);
            let up = self.0.upload(&v2)?;
            self.0.copy_rows(out, 0, &up, 0, 1, v.len())
        }
        fn add_bias(&self, x: &mut Self::Buf, r: usize, b: &Self::Weight) -> strata::backend::BResult<()> {
            self.0.add_bias(x, r, b)
        }
        fn rope(&self, x: &mut Self::Buf, h: usize, d: usize, a: &strata::backend::RopeArgs) -> strata::backend::BResult<()> {
            self.0.rope(x, h, d, a)
        }
        fn copy_rows(&self, d: &mut Self::Buf, dr: usize, s: &Self::Buf, sr: usize, r: usize, w: usize) -> strata::backend::BResult<()> {
            self.0.copy_rows(d, dr, s, sr, r, w)
        }
        fn copy_cols(&self, d: &mut Self::Buf, s: &Self::Buf, r: usize, sw: usize, c: usize, n: usize) -> strata::backend::BResult<()> {
            self.0.copy_cols(d, s, r, sw, c, n)
        }
        fn attention(&self, q: &Self::Buf, k: &Self::Buf, v: &Self::Buf, a: &strata::backend::AttnArgs, o: &mut Self::Buf) -> strata::backend::BResult<()> {
            self.0.attention(q, k, v, a, o)
        }
        fn gated(&self, g: &Self::Buf, u: &Self::Buf, n: usize, a: strata::backend::Activation, o: &mut Self::Buf) -> strata::backend::BResult<()> {
            self.0.gated(g, u, n, a, o)
        }
        fn add(&self, x: &mut Self::Buf, y: &Self::Buf, n: usize) -> strata::backend::BResult<()> {
            self.0.add(x, y, n)
        }
        fn softcap(&self, x: &mut Self::Buf, n: usize, c: f32) -> strata::backend::BResult<()> {
            self.0.softcap(x, n, c)
        }
        async fn top_k(&self, x: &Self::Buf, n: usize, k: usize) -> strata::backend::BResult<Vec<(u32, f32)>> {
            self.0.top_k(x, n, k).await
        }
    }
    let b = Off(FastCpuBackend::with_threads(2).unwrap());
    let matmuls: Vec<_> = cases().into_iter().filter(|c| c.name.starts_with("matmul/")).collect();
    let r = pollster::block_on(run_all(&b, &matmuls, Precision::Q8Activations));
    assert_eq!(r.failed, matmuls.len(), "{}\n{}", r.summary(), r.lines.join("\n"));
}
