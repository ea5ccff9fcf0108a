//! Expert tensors addressed by (layer, expert): one expert of a GGUF's stacked
//! `[n_experts, rows, cols]` tensor is the bytes ggml's strides put it at (nb[2] = rows *
//! row bytes), and a matmul with that slice equals one with the same expert written as its
//! own tensor (the pre-stacking GGUF layout), on the reference and the fast CPU backends.

use strata::arch::{parse_gguf_name, Param, Part, TensorId};
use strata::backend::cpu::CpuBackend;
use strata::backend::fast::FastCpuBackend;
use strata::backend::Backend;
use strata::model::{ExpertError, ModelFiles, TensorEntry};
use strata::quant::DType;
use strata::source::{ByteSource, SliceSource};
use strata_conformance::GgufWriter;

const N_EXPERTS: u64 = 3;
const ROWS: u64 = 8;
const COLS: u64 = 64;
/// Q4_0: 32 weights in 18 bytes (an f16 scale, 16 bytes of nibbles).
const ROW_BYTES: u64 = COLS / 32 * 18;

/// Expert `e`'s Q4_0 bytes: finite scales, nibbles from a small LCG seeded by `e`.
fn expert_bytes(e: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9u32.wrapping_mul(e as u32 + 1);
    let mut next = || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 24) as u8
    };
    let mut out = Vec::new();
    for b in 0..ROWS * COLS / 32 {
        let scale = half::f16::from_f32(0.01 + 0.003 * ((b + e) % 7) as f32);
        out.extend_from_slice(&scale.to_le_bytes());
        out.extend((0..16).map(|_| next()));
    }
    out
}

/// A file with `blk.0.ffn_up_exps.weight` (the stack) and `blk.0.ffn_up.E.weight` (each
/// expert alone), both holding `expert_bytes(E)`; the data placed by ggml's strides.
fn file() -> (Vec<u8>, ModelFiles) {
    let mut w = GgufWriter::new().tensor("blk.0.ffn_up_exps.weight", &[N_EXPERTS, ROWS, COLS], DType::Q4_0);
    for e in 0..N_EXPERTS {
        w = w.tensor(&format!("blk.0.ffn_up.{e}.weight"), &[ROWS, COLS], DType::Q4_0);
    }
    let mut bytes = w.build();
    let files = ModelFiles::from_gguf(&SliceSource::new("experts.gguf", bytes.clone())).unwrap();
    let at = |name: &str| files.tensors.iter().find(|t| t.name == name).unwrap().offset as usize;
    let stack = at("blk.0.ffn_up_exps.weight");
    for e in 0..N_EXPERTS {
        let x = expert_bytes(e);
        let nb2 = (ROWS * ROW_BYTES) as usize;
        bytes[stack + e as usize * nb2..][..x.len()].copy_from_slice(&x);
        let own = at(&format!("blk.0.ffn_up.{e}.weight"));
        bytes[own..][..x.len()].copy_from_slice(&x);
    }
    (bytes, files)
}

fn entry<'a>(files: &'a ModelFiles, name: &str) -> &'a TensorEntry {
    files.tensors.iter().find(|t| t.name == name).unwrap()
}

fn read(src: &dyn ByteSource, t: &TensorEntry) -> Vec<u8> {
    let mut b = vec![0; t.nbytes as usize];
    src.read_exact_at(t.offset, &mut b).unwrap();
    b
}

fn matmul<B: Backend>(b: &B, t: &TensorEntry, bytes: &[u8], x: &[f32]) -> Vec<f32> {
    let w = b.upload_weight(t.dtype, t.shape.0[0] as usize, t.shape.0[1] as usize, bytes).unwrap();
    let xb = b.upload(x).unwrap();
    let mut out = b.alloc(2 * ROWS as usize).unwrap();
    b.matmul(&xb, 2, &w, &mut out).unwrap();
    pollster::block_on(b.read(&out, 0, 2 * ROWS as usize)).unwrap()
}

#[test]
fn a_stacked_expert_is_its_own_tensor() {
    let (bytes, files) = file();
    let src = SliceSource::new("experts.gguf", bytes);
    let stack = entry(&files, "blk.0.ffn_up_exps.weight");
    assert_eq!(parse_gguf_name(&stack.name), Ok(TensorId::layer(0, Part::FfnUpExps, Param::Weight)));
    let x: Vec<f32> = (0..2 * COLS).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
    let (cpu, fast) = (CpuBackend::new(), FastCpuBackend::new().unwrap());
    for e in 0..N_EXPERTS as u32 {
        let slice = stack.expert_slice(e).unwrap();
        let own_name = format!("blk.0.ffn_up.{e}.weight");
        assert_eq!(parse_gguf_name(&own_name), Ok(TensorId::expert(0, e, Part::FfnUpExps, Param::Weight)));
        let own = entry(&files, &own_name);
        assert_eq!((slice.dtype, &slice.shape, slice.nbytes), (own.dtype, &own.shape, own.nbytes));
        assert_eq!(slice.offset, stack.offset + u64::from(e) * ROWS * ROW_BYTES, "ggml's nb[2]");
        assert_eq!(read(&src, &slice), expert_bytes(e.into()));
        assert_eq!(read(&src, &slice), read(&src, own));
        let (a, b) = (read(&src, &slice), read(&src, own));
        assert_eq!(matmul(&cpu, &slice, &a, &x), matmul(&cpu, own, &b, &x), "reference, expert {e}");
        assert_eq!(matmul(&fast, &slice, &a, &x), matmul(&fast, own, &b, &x), "fast CPU, expert {e}");
    }
    // Experts differ (the slices are not all the first one).
    assert_ne!(read(&src, &stack.expert_slice(0).unwrap()), read(&src, &stack.expert_slice(1).unwrap()));
}

#[test]
fn a_bad_expert_or_stack_is_named() {
    let (_, files) = file();
    let stack = entry(&files, "blk.0.ffn_up_exps.weight");
    let e = stack.expert_slice(3).unwrap_err();
    assert_eq!(e, ExpertError::OutOfRange { tensor: stack.name.clone(), expert: 3, n_experts: 3 });
    assert!(e.to_string().contains("expert 3 of 3"), "{e}");
    let own = entry(&files, "blk.0.ffn_up.0.weight");
    assert!(matches!(own.expert_slice(0), Err(ExpertError::NotStacked { .. })));
    // A stack whose bytes do not hold its experts (a header that lies) is refused.
    let short = TensorEntry { nbytes: stack.nbytes - 18, ..stack.clone() };
    let e = short.expert_slice(0).unwrap_err();
    assert!(matches!(e, ExpertError::Size { .. }), "{e}");
    // Rows that are not whole blocks.
    let ragged = TensorEntry { shape: strata::error::Shape(vec![3, 8, 48]), ..stack.clone() };
    assert!(matches!(ragged.expert_slice(0), Err(ExpertError::Size { .. })));
}
