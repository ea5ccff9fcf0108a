//! The op set as data (in the spirit of ggml's `ggml_op` and `supports_op`): each op of the
//! `Backend` trait with the parameters that decide whether a backend can run it (weight
//! dtype, shape, flags) and the checks on them, written once. Backends answer
//! [`Backend::supports_op`]; a session asks before it uploads a byte
//! ([`crate::arch::forward::ops_of`] lists a model's ops); the op harness
//! (`tests/src/ops.rs`) builds its cases from these and reports an op a backend declines
//! as unsupported, and one it accepts and then refuses as a failure.
//!
//! Buffer-length checks stay at each op's entry (`need`, `check_copy_rows`...), since they
//! need the buffers; everything that follows from the parameters alone is here.

use super::{shape, BResult, BackendError, MAX_DEVICE_TOP_K};
use crate::backend::{Activation, RopeStyle};
use crate::quant::DType;

/// One op, with what a backend needs to say whether it runs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `tokens` rows of a `[vocab, cols]` table.
    Embed { dtype: DType, vocab: usize, cols: usize, tokens: usize },
    /// `rows` rows of `cols`, with a weight of `cols` values.
    RmsNorm { dtype: DType, rows: usize, cols: usize },
    /// `[rows, k] x [n, k]^T`.
    Matmul { dtype: DType, rows: usize, n: usize, k: usize },
    AddBias { dtype: DType, rows: usize, cols: usize },
    Rope { style: RopeStyle, tokens: usize, heads: usize, head_dim: usize, rope_dim: usize },
    Attention { tokens: usize, past: usize, n_heads: usize, n_kv_heads: usize, head_dim: usize, head_dim_v: usize, window: bool, softcap: bool },
    Gated { act: Activation, n: usize },
    Add { n: usize },
    Softcap { n: usize },
    CopyRows { rows: usize, width: usize },
    CopyCols { rows: usize, src_width: usize, col: usize, cols: usize },
    TopK { n: usize, k: usize },
}

/// Every op's [`Op::name`].
pub const ALL_NAMES: [&str; 12] = ["embed", "rms_norm", "matmul", "add_bias", "rope", "attention", "gated", "add", "softcap", "copy_rows", "copy_cols", "top_k"];

impl Op {
    /// The op's name, as errors and the harness's case names spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Embed { .. } => "embed",
            Op::RmsNorm { .. } => "rms_norm",
            Op::Matmul { .. } => "matmul",
            Op::AddBias { .. } => "add_bias",
            Op::Rope { .. } => "rope",
            Op::Attention { .. } => "attention",
            Op::Gated { .. } => "gated",
            Op::Add { .. } => "add",
            Op::Softcap { .. } => "softcap",
            Op::CopyRows { .. } => "copy_rows",
            Op::CopyCols { .. } => "copy_cols",
            Op::TopK { .. } => "top_k",
        }
    }

    /// The dtype of the weight the op reads, for ops that read one.
    pub fn weight_dtype(&self) -> Option<DType> {
        match *self {
            Op::Embed { dtype, .. } | Op::RmsNorm { dtype, .. } | Op::Matmul { dtype, .. } | Op::AddBias { dtype, .. } => Some(dtype),
            _ => None,
        }
    }

    /// The checks that follow from the parameters alone, which every backend makes:
    /// attention heads that group evenly, a RoPE prefix of whole pairs within the head,
    /// columns within the source rows, a device top-k within its limit, weight rows of
    /// whole blocks.
    pub fn check(&self) -> BResult<()> {
        let err = |message: String| Err(shape(self.name(), message));
        match *self {
            Op::Attention { n_heads, n_kv_heads, .. } if n_kv_heads == 0 || n_heads % n_kv_heads != 0 => err(format!("{n_heads} heads over {n_kv_heads} kv heads")),
            Op::Rope { head_dim, rope_dim, .. } if rope_dim > head_dim || rope_dim % 2 != 0 => err(format!("rope_dim {rope_dim} / head_dim {head_dim}")),
            Op::CopyCols { src_width, col, cols, .. } if col.checked_add(cols).is_none_or(|end| end > src_width) => err(format!("columns {col}..{} of rows of {src_width}", col.saturating_add(cols))),
            Op::TopK { k, .. } if k > MAX_DEVICE_TOP_K => err(format!("k = {k} exceeds {MAX_DEVICE_TOP_K} (read the logits instead)")),
            Op::Embed { dtype, cols, .. } | Op::Matmul { dtype, k: cols, .. } if dtype.row_bytes(cols as u64).is_none() => err(format!("{cols} columns are not whole {dtype} blocks")),
            _ => Ok(()),
        }
    }

    /// The larger of an attention's K and V head sizes (the GPU kernels' limit).
    pub fn attention_head_dim(&self) -> Option<usize> {
        match *self {
            Op::Attention { head_dim, head_dim_v, .. } => Some(head_dim.max(head_dim_v)),
            _ => None,
        }
    }

    /// What a backend that declines this op says it does not support.
    pub fn describe(&self) -> String {
        match *self {
            Op::Attention { head_dim, head_dim_v, .. } => format!("attention with head_dim {head_dim}/{head_dim_v}"),
            op => match op.weight_dtype() {
                Some(d) => format!("{} of {d} weights", op.name()),
                None => op.name().to_string(),
            },
        }
    }

    /// The `Unsupported` error of `backend` declining this op.
    pub fn unsupported(&self, backend: String) -> BackendError {
        BackendError::Unsupported { backend, what: self.describe() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_checks_name_the_op_and_the_numbers() {
        let bad = [
            (Op::Attention { tokens: 1, past: 0, n_heads: 9, n_kv_heads: 2, head_dim: 64, head_dim_v: 64, window: false, softcap: false }, "attention: 9 heads over 2 kv heads"),
            (Op::Attention { tokens: 1, past: 0, n_heads: 8, n_kv_heads: 0, head_dim: 64, head_dim_v: 64, window: false, softcap: false }, "attention: 8 heads over 0 kv heads"),
            (Op::Rope { style: RopeStyle::Neox, tokens: 1, heads: 1, head_dim: 64, rope_dim: 66 }, "rope: rope_dim 66 / head_dim 64"),
            (Op::Rope { style: RopeStyle::Normal, tokens: 1, heads: 1, head_dim: 64, rope_dim: 31 }, "rope: rope_dim 31 / head_dim 64"),
            (Op::CopyCols { rows: 1, src_width: 10, col: 8, cols: 3 }, "copy_cols: columns 8..11 of rows of 10"),
            (Op::CopyCols { rows: 1, src_width: 10, col: usize::MAX, cols: 3 }, "of rows of 10"),
            (Op::TopK { n: 1000, k: MAX_DEVICE_TOP_K + 1 }, "top_k: k = 257 exceeds 256"),
            (Op::Matmul { dtype: DType::Q4K, rows: 1, n: 4, k: 100 }, "matmul: 100 columns are not whole Q4_K blocks"),
        ];
        for (op, want) in bad {
            let e = op.check().unwrap_err().to_string();
            assert!(e.contains(want), "{op:?}: {e}");
        }
        let good = [
            Op::Attention { tokens: 1, past: 5, n_heads: 9, n_kv_heads: 3, head_dim: 64, head_dim_v: 64, window: true, softcap: true },
            Op::Rope { style: RopeStyle::Neox, tokens: 1, heads: 1, head_dim: 64, rope_dim: 64 },
            Op::CopyCols { rows: 1, src_width: 10, col: 7, cols: 3 },
            Op::TopK { n: 10, k: MAX_DEVICE_TOP_K },
            Op::Matmul { dtype: DType::Q4K, rows: 1, n: 4, k: 512 },
        ];
        for op in good {
            assert!(op.check().is_ok(), "{op:?}");
        }
    }
}
