//! CPU dequantisation against llama.cpp's Python implementation (`gguf.quants.dequantize`,
//! fixtures from scripts/make_quant_fixtures.py): random blocks of every compute format,
//! and rows of real tensors read from the real models.

use serde_json::Value as Json;
use strata::arch::TensorId;
use strata::quant::dequant::{dequantize, DequantError};
use strata::quant::DType;
use strata::source::{ByteSource, FileSource};
use strata_conformance::models;

fn fixture() -> Json {
    strata_conformance::fixtures::json("dequant.json")
}

fn dtype(name: &str) -> DType {
    strata::quant::ALL_DTYPES.iter().copied().find(|d| d.name() == name).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn floats(v: &Json) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn random_blocks_of_every_format_equal_gguf_py() {
    let fx = fixture();
    let cases = fx["blocks"].as_array().unwrap();
    assert_eq!(cases.len(), 16, "F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K Q2_K Q3_K IQ4_NL IQ4_XS MXFP4");
    // Every format strata computes with has its blocks here.
    for d in strata::quant::WEIGHT_DTYPES {
        assert!(cases.iter().any(|c| c["type"] == d.name()), "{d} has no fixture blocks");
    }
    for case in cases {
        let d = dtype(case["type"].as_str().unwrap());
        let raw = hex(case["raw_hex"].as_str().unwrap());
        let want = floats(&case["values"]);
        let mut got = vec![f32::NAN; want.len()];
        dequantize(d, &raw, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // The same formula in the same f32 arithmetic order: the same bits.
            assert_eq!(g.to_bits(), w.to_bits(), "{d} value {i}: {g} vs {w}");
        }
    }
}

#[test]
fn real_tensor_rows_equal_gguf_py() {
    let fx = fixture();
    for case in fx["real_rows"].as_array().unwrap() {
        let Some(path) = models::find(case["file"].as_str().unwrap()) else { return };
        let m = strata::model::load(&path).unwrap();
        let name = case["tensor"].as_str().unwrap();
        let id: TensorId = strata::arch::parse_gguf_name(name).unwrap();
        let t = m.tensor(id).unwrap();
        let row = case["row"].as_u64().unwrap();
        let cols = t.shape.0[1];
        let row_bytes = t.dtype.row_bytes(cols).unwrap();
        let src = FileSource::open(&path).unwrap();
        let mut raw = vec![0u8; row_bytes as usize];
        src.read_exact_at(t.offset + row * row_bytes, &mut raw).unwrap();
        let mut got = vec![0f32; cols as usize];
        dequantize(t.dtype, &raw, &mut got).unwrap();
        let want = floats(&case["values"]);
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{name} row {row} col {i}: {g} vs {w}");
        }
    }
}

#[test]
fn wrong_sizes_and_formats_are_errors() {
    let mut out = [0f32; 32];
    assert!(matches!(dequantize(DType::Q8_0, &[0; 33], &mut out), Err(DequantError::Size { .. })));
    assert!(matches!(dequantize(DType::Q4K, &[0; 144], &mut out), Err(DequantError::Size { .. })));
    let mut out = [0f32; 256];
    assert_eq!(dequantize(DType::IQ2XXS, &[0; 66], &mut out), Err(DequantError::Unsupported(DType::IQ2XXS)));
}

/// Rows of the files llama.cpp's llama-quantize (and gguf-py's MXFP4 quantiser) wrote
/// (scripts/make_quant_models.sh), committed with their bytes so that this runs without
/// the files: one tensor's first and last row per new weight type, bit for bit.
#[test]
fn llama_quantize_rows_equal_gguf_py() {
    let fx = strata_conformance::fixtures::json("reference/quant/dequant.json");
    let rows = fx["rows"].as_array().unwrap();
    for name in ["Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS", "MXFP4"] {
        assert!(rows.iter().any(|r| r["type"] == name), "no {name} rows");
    }
    for case in rows {
        let d = dtype(case["type"].as_str().unwrap());
        let raw = hex(case["raw_hex"].as_str().unwrap());
        let want = floats(&case["values"]);
        let mut got = vec![f32::NAN; want.len()];
        dequantize(d, &raw, &mut got).unwrap();
        let at = format!("{} {} row {}", case["file"].as_str().unwrap(), case["tensor"].as_str().unwrap(), case["row"]);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{at} col {i}: {g} vs {w}");
        }
    }
}
