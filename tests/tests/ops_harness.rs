//! The harness itself must catch broken backends: a CPU backend with injected faults
//! (perturbed results, a write past the output, a NaN, a wrong top-k order, an op it does
//! not implement) fails or is reported unsupported; the fault-free one passes every case.

use std::future::Future;

use strata::backend::cpu::{CpuBackend, CpuWeight};
use strata::backend::{AttnArgs, BResult, Backend, BackendError, RopeArgs};
use strata::backend::Activation;
use strata::quant::DType;
use strata_conformance::ops::{cases, filter, run_all, run_case, Outcome};

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// matmul results off by 0.1% of their magnitude.
    Perturb,
    /// matmul writes one value past its output.
    Overrun,
    /// gated writes a NaN.
    Nan,
    /// top_k returns its first two entries swapped.
    TopKOrder,
    /// attention is not implemented, and `supports_op` says so.
    NoAttention,
    /// attention is not implemented, but `supports_op` claims it.
    ClaimsAttention,
    /// Q4_1 weights are not supported.
    NoQ4_1,
}

struct Faulty {
    cpu: CpuBackend,
    fault: Fault,
}

impl Backend for Faulty {
    type Buf = Vec<f32>;
    type Weight = CpuWeight;
    fn name(&self) -> String {
        "faulty cpu".into()
    }
    fn supports(&self, dtype: DType) -> bool {
        self.cpu.supports(dtype) && !(self.fault == Fault::NoQ4_1 && dtype == DType::Q4_1)
    }
    fn supports_op(&self, op: &strata::backend::Op) -> bool {
        strata::backend::supports_weight_of(self, op) && (self.fault != Fault::NoAttention || op.attention_head_dim().is_none())
    }
    fn upload_weight(&self, dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> BResult<CpuWeight> {
        self.cpu.upload_weight(dtype, rows, cols, bytes)
    }
    fn alloc(&self, len: usize) -> BResult<Vec<f32>> {
        self.cpu.alloc(len)
    }
    fn upload(&self, data: &[f32]) -> BResult<Vec<f32>> {
        self.cpu.upload(data)
    }
    fn read(&self, buf: &Vec<f32>, offset: usize, len: usize) -> impl Future<Output = BResult<Vec<f32>>> {
        self.cpu.read(buf, offset, len)
    }
    fn embed(&self, table: &CpuWeight, ids: &[u32], scale: f32, out: &mut Vec<f32>) -> BResult<()> {
        self.cpu.embed(table, ids, scale, out)
    }
    fn rms_norm(&self, x: &Vec<f32>, rows: usize, cols: usize, w: &CpuWeight, eps: f32, off: f32, out: &mut Vec<f32>) -> BResult<()> {
        self.cpu.rms_norm(x, rows, cols, w, eps, off, out)
    }
    fn matmul(&self, x: &Vec<f32>, rows: usize, w: &CpuWeight, out: &mut Vec<f32>) -> BResult<()> {
        self.cpu.matmul(x, rows, w, out)?;
        let n = rows * w.rows;
        match self.fault {
            Fault::Perturb => out[..n].iter_mut().for_each(|v| *v *= 1.001),
            Fault::Overrun => out[n] = 0.0,
            _ => {}
        }
        Ok(())
    }
    fn add_bias(&self, x: &mut Vec<f32>, rows: usize, b: &CpuWeight) -> BResult<()> {
        self.cpu.add_bias(x, rows, b)
    }
    fn rope(&self, x: &mut Vec<f32>, heads: usize, head_dim: usize, a: &RopeArgs) -> BResult<()> {
        self.cpu.rope(x, heads, head_dim, a)
    }
    fn copy_rows(&self, dst: &mut Vec<f32>, dr: usize, src: &Vec<f32>, sr: usize, rows: usize, width: usize) -> BResult<()> {
        self.cpu.copy_rows(dst, dr, src, sr, rows, width)
    }
    fn copy_cols(&self, dst: &mut Vec<f32>, src: &Vec<f32>, rows: usize, sw: usize, col: usize, cols: usize) -> BResult<()> {
        self.cpu.copy_cols(dst, src, rows, sw, col, cols)
    }
    fn attention(&self, q: &Vec<f32>, k: &Vec<f32>, v: &Vec<f32>, a: &AttnArgs, out: &mut Vec<f32>) -> BResult<()> {
        if matches!(self.fault, Fault::NoAttention | Fault::ClaimsAttention) {
            return Err(BackendError::Unsupported { backend: self.name(), what: "attention".into() });
        }
        self.cpu.attention(q, k, v, a, out)
    }
    fn gated(&self, g: &Vec<f32>, u: &Vec<f32>, n: usize, act: Activation, out: &mut Vec<f32>) -> BResult<()> {
        self.cpu.gated(g, u, n, act, out)?;
        if self.fault == Fault::Nan {
            out[n / 2] = f32::NAN;
        }
        Ok(())
    }
    fn add(&self, x: &mut Vec<f32>, y: &Vec<f32>, n: usize) -> BResult<()> {
        self.cpu.add(x, y, n)
    }
    fn softcap(&self, x: &mut Vec<f32>, n: usize, cap: f32) -> BResult<()> {
        self.cpu.softcap(x, n, cap)
    }
    async fn top_k(&self, x: &Vec<f32>, n: usize, k: usize) -> BResult<Vec<(u32, f32)>> {
        let mut t = self.cpu.top_k(x, n, k).await?;
        if self.fault == Fault::TopKOrder && t.len() >= 2 {
            t.swap(0, 1);
        }
        Ok(t)
    }
}

fn outcomes(fault: Fault, pattern: &str) -> Vec<Outcome> {
    let b = Faulty { cpu: CpuBackend::with_threads(1), fault };
    filter(cases(), pattern).iter().map(|c| pollster::block_on(run_case(&b, c, false))).collect()
}

#[test]
fn a_correct_backend_passes_every_case() {
    let b = Faulty { cpu: CpuBackend::with_threads(1), fault: Fault::None };
    let r = pollster::block_on(run_all(&b, &cases(), false));
    assert_eq!((r.failed, r.unsupported), (0, 0), "{}\n{}", r.summary(), r.lines.join("\n"));
    assert!(r.passed > 90);
}

#[test]
fn perturbed_matmul_fails_by_nmse() {
    for o in outcomes(Fault::Perturb, "matmul/") {
        assert!(matches!(&o, Outcome::Fail(m) if m.contains("NMSE")), "{o:?}");
    }
}

#[test]
fn a_write_past_the_output_fails_by_guard() {
    for o in outcomes(Fault::Overrun, "matmul/") {
        assert!(matches!(&o, Outcome::Fail(m) if m.contains("guard")), "{o:?}");
    }
}

#[test]
fn nan_fails() {
    for o in outcomes(Fault::Nan, "gated/") {
        assert!(matches!(&o, Outcome::Fail(m) if m.contains("NaN")), "{o:?}");
    }
}

#[test]
fn top_k_order_is_exact() {
    let o = outcomes(Fault::TopKOrder, "top_k/");
    assert!(o.iter().filter(|o| matches!(o, Outcome::Fail(_))).count() >= 3, "{o:?}");
}

#[test]
fn a_missing_op_is_unsupported_not_passed() {
    for o in outcomes(Fault::NoAttention, "attention/") {
        assert!(matches!(&o, Outcome::Unsupported(what) if what.starts_with("attention with head_dim")), "{o:?}");
    }
}

/// A backend whose `supports_op` accepts an op it then refuses fails: a session would
/// have uploaded a model it cannot run.
#[test]
fn an_op_claimed_and_then_refused_fails() {
    for o in outcomes(Fault::ClaimsAttention, "attention/") {
        assert!(matches!(&o, Outcome::Fail(m) if m.contains("says it supports attention")), "{o:?}");
    }
}

/// The cases cover every op of the runtime's op set.
#[test]
fn every_runtime_op_has_cases() {
    let names: std::collections::BTreeSet<&str> = cases().iter().map(|c| strata_conformance::ops::family(&c.op)).collect();
    for op in strata::backend::op::ALL_NAMES {
        assert!(names.contains(op), "no case runs {op}");
    }
}

/// A session asks its backend before it reads a weight: a model with an op the backend
/// declines is an `Unsupported` error naming the op (and the tensor, for a weight's
/// dtype), with nothing uploaded. The same backend without the fault loads the model.
#[test]
fn a_session_fails_before_uploading_when_its_backend_declines_an_op() {
    use std::sync::Arc;
    use strata::source::{ByteSource, FileSource};
    let Some(path) = strata_conformance::models::find(strata_conformance::models::SMOLLM2) else { return };
    let session = |fault: Fault, uploaded: &mut u64| {
        let model = strata::model::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let sources = model.files.files.iter().map(|f| Arc::new(FileSource::open(f).unwrap()) as Arc<dyn ByteSource>).collect();
        let b = Faulty { cpu: CpuBackend::new(), fault };
        strata::session::Session::with_budget(b, model, sources, 64, None, &mut |done, _| *uploaded = done)
    };
    for (fault, want) in [(Fault::NoAttention, "faulty cpu does not support attention with head_dim 64/64"), (Fault::NoQ4_1, "of Q4_1 weights (tensor \"")] {
        let mut uploaded = 0;
        let e = session(fault, &mut uploaded).err().expect("declined");
        assert!(matches!(&e, strata::session::SessionError::Backend(BackendError::Unsupported { .. })), "{e}");
        assert!(e.to_string().contains(want), "{e}");
        assert_eq!(uploaded, 0, "bytes uploaded before the error");
    }
    let mut uploaded = 0;
    assert!(session(Fault::None, &mut uploaded).is_ok());
    assert!(uploaded > 50 << 20, "{uploaded} bytes uploaded");
}
