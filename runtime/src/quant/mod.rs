//! Tensor element formats ("dtypes"): every ggml type a GGUF file can hold and every
//! safetensors dtype, with their block geometry so that a tensor's byte size is exact.
//!
//! The block table matches ggml's `type_traits` (checked against the `gguf` Python
//! package by `tests/fixtures/ggml_types.json`, made by `scripts/make_fixtures.py`).
//! `dequant` holds the CPU dequantisation of the compute formats.

pub mod dequant;
pub mod scan;

use std::fmt;

/// A tensor element format. The discriminant is the ggml type id stored in GGUF files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum DType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2K = 10,
    Q3K = 11,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
    IQ2XXS = 16,
    IQ2XS = 17,
    IQ3XXS = 18,
    IQ1S = 19,
    IQ4NL = 20,
    IQ3S = 21,
    IQ2S = 22,
    IQ4XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
    // Formats that only safetensors files carry (no ggml id); ids above any ggml id.
    U8 = 1000,
    Bool = 1001,
    F8E4M3 = 1002,
    F8E5M2 = 1003,
}

/// Every format, in ggml id order (safetensors-only formats last).
pub const ALL_DTYPES: &[DType] = &[
    DType::F32, DType::F16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
    DType::Q8_0, DType::Q8_1, DType::Q2K, DType::Q3K, DType::Q4K, DType::Q5K,
    DType::Q6K, DType::Q8K, DType::IQ2XXS, DType::IQ2XS, DType::IQ3XXS, DType::IQ1S,
    DType::IQ4NL, DType::IQ3S, DType::IQ2S, DType::IQ4XS, DType::I8, DType::I16,
    DType::I32, DType::I64, DType::F64, DType::IQ1M, DType::BF16, DType::TQ1_0,
    DType::TQ2_0, DType::MXFP4, DType::NVFP4, DType::Q1_0, DType::U8, DType::Bool,
    DType::F8E4M3, DType::F8E5M2,
];

/// The weight formats strata computes with, in ggml id order: the one list that the
/// loader, the reference dequantiser and the error messages read.
pub const WEIGHT_DTYPES: &[DType] = &[
    DType::F32, DType::F16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
    DType::Q2K, DType::Q3K, DType::Q4K, DType::Q5K, DType::Q6K, DType::IQ4NL, DType::IQ4XS,
    DType::BF16, DType::MXFP4,
];

/// `WEIGHT_DTYPES` by name, comma-separated (for error messages).
pub fn weight_dtype_names() -> String {
    WEIGHT_DTYPES.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
}

impl DType {
    /// The format of a ggml type id; `None` for ids that ggml never assigned or retired
    /// (4, 5: Q4_2/Q4_3; 31-33, 36-38: the removed interleaved Q4_0_4_4 family).
    pub fn from_ggml_id(id: u32) -> Option<DType> {
        ALL_DTYPES.iter().copied().find(|d| d.ggml_id() == Some(id))
    }

    /// The ggml type id, or `None` for safetensors-only formats.
    pub fn ggml_id(self) -> Option<u32> {
        let id = self as u32;
        (id < 1000).then_some(id)
    }

    /// The format named by a safetensors header `dtype` string.
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<DType> {
        use safetensors::Dtype as S;
        Some(match d {
            S::F64 => DType::F64,
            S::F32 => DType::F32,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::I64 => DType::I64,
            S::I32 => DType::I32,
            S::I16 => DType::I16,
            S::I8 => DType::I8,
            S::U8 => DType::U8,
            S::BOOL => DType::Bool,
            S::F8_E4M3 => DType::F8E4M3,
            S::F8_E5M2 => DType::F8E5M2,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block). Plain formats have blocks of one element.
    pub fn block(self) -> (u64, u64) {
        use DType::*;
        match self {
            F32 => (1, 4),
            F16 | BF16 => (1, 2),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 40),
            Q2K => (256, 84),
            Q3K => (256, 110),
            Q4K => (256, 144),
            Q5K => (256, 176),
            Q6K => (256, 210),
            Q8K => (256, 292),
            IQ2XXS => (256, 66),
            IQ2XS => (256, 74),
            IQ3XXS => (256, 98),
            IQ1S => (256, 50),
            IQ4NL => (32, 18),
            IQ3S => (256, 110),
            IQ2S => (256, 82),
            IQ4XS => (256, 136),
            I8 | U8 | Bool | F8E4M3 | F8E5M2 => (1, 1),
            I16 => (1, 2),
            I32 => (1, 4),
            I64 | F64 => (1, 8),
            IQ1M => (256, 56),
            TQ1_0 => (256, 54),
            TQ2_0 => (256, 66),
            MXFP4 => (32, 17),
            NVFP4 => (64, 36),
            Q1_0 => (128, 18),
        }
    }

    /// True for block-quantised formats (block size > 1).
    pub fn is_quantized(self) -> bool {
        self.block().0 > 1
    }

    /// True for plain floating-point formats that norms and biases may use.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Formats the strata engine computes with ([`WEIGHT_DTYPES`]). A file holding a
    /// weight in any other format is rejected at load with `UnsupportedDtype`; a backend
    /// says which of these it runs with `Backend::supports`.
    pub fn is_supported_weight(self) -> bool {
        WEIGHT_DTYPES.contains(&self)
    }

    /// Bytes of one row of `row_len` elements, or `None` when the row is not a whole
    /// number of blocks or the size overflows.
    pub fn row_bytes(self, row_len: u64) -> Option<u64> {
        let (block, bytes) = self.block();
        if row_len % block != 0 {
            return None;
        }
        (row_len / block).checked_mul(bytes)
    }

    /// Bytes of a tensor with the given ggml-order dims (`dims[0]` is the row length).
    /// `None` on overflow or a row that is not a whole number of blocks.
    pub fn tensor_bytes(self, ggml_dims: &[u64]) -> Option<u64> {
        let row_len = ggml_dims.first().copied().unwrap_or(1);
        let rows = ggml_dims
            .iter()
            .skip(1)
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        self.row_bytes(row_len)?.checked_mul(rows)
    }

    /// The name ggml and llama.cpp use (`Q4_K`, `BF16`, ...).
    pub fn name(self) -> &'static str {
        use DType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            IQ2XXS => "IQ2_XXS",
            IQ2XS => "IQ2_XS",
            IQ3XXS => "IQ3_XXS",
            IQ1S => "IQ1_S",
            IQ4NL => "IQ4_NL",
            IQ3S => "IQ3_S",
            IQ2S => "IQ2_S",
            IQ4XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
            U8 => "U8",
            Bool => "BOOL",
            F8E4M3 => "F8_E4M3",
            F8E5M2 => "F8_E5M2",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `general.file_type` values of llama.cpp (`LLAMA_FTYPE_*`), for display only: the
/// per-tensor dtypes are the truth.
pub fn llama_file_type_name(ftype: u32) -> Option<&'static str> {
    Some(match ftype {
        0 => "ALL_F32",
        1 => "MOSTLY_F16",
        2 => "MOSTLY_Q4_0",
        3 => "MOSTLY_Q4_1",
        7 => "MOSTLY_Q8_0",
        8 => "MOSTLY_Q5_0",
        9 => "MOSTLY_Q5_1",
        10 => "MOSTLY_Q2_K",
        11 => "MOSTLY_Q3_K_S",
        12 => "MOSTLY_Q3_K_M",
        13 => "MOSTLY_Q3_K_L",
        14 => "MOSTLY_Q4_K_S",
        15 => "MOSTLY_Q4_K_M",
        16 => "MOSTLY_Q5_K_S",
        17 => "MOSTLY_Q5_K_M",
        18 => "MOSTLY_Q6_K",
        19 => "MOSTLY_IQ2_XXS",
        20 => "MOSTLY_IQ2_XS",
        21 => "MOSTLY_Q2_K_S",
        22 => "MOSTLY_IQ3_XS",
        23 => "MOSTLY_IQ3_XXS",
        24 => "MOSTLY_IQ1_S",
        25 => "MOSTLY_IQ4_NL",
        26 => "MOSTLY_IQ3_S",
        27 => "MOSTLY_IQ3_M",
        28 => "MOSTLY_IQ2_S",
        29 => "MOSTLY_IQ2_M",
        30 => "MOSTLY_IQ4_XS",
        31 => "MOSTLY_IQ1_M",
        32 => "MOSTLY_BF16",
        36 => "MOSTLY_TQ1_0",
        37 => "MOSTLY_TQ2_0",
        38 => "MOSTLY_MXFP4_MOE",
        39 => "MOSTLY_NVFP4",
        40 => "MOSTLY_Q1_0",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_ids_round_trip_and_retired_ids_are_unknown() {
        for &d in ALL_DTYPES {
            if let Some(id) = d.ggml_id() {
                assert_eq!(DType::from_ggml_id(id), Some(d));
            }
        }
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, 999, u32::MAX] {
            assert_eq!(DType::from_ggml_id(id), None, "id {id}");
        }
    }

    #[test]
    fn tensor_bytes_rejects_partial_blocks_and_overflow() {
        assert_eq!(DType::Q4K.tensor_bytes(&[512, 3]), Some(2 * 144 * 3));
        assert_eq!(DType::Q4K.tensor_bytes(&[640, 3]), None);
        assert_eq!(DType::F32.tensor_bytes(&[u64::MAX, 2]), None);
        assert_eq!(DType::F32.tensor_bytes(&[]), Some(4));
    }
}
