//! Loader cases on the real models (fetched by scripts/fetch_models.sh, never committed),
//! checked against llama.cpp's Python reader (fixtures from scripts/make_fixtures.py), the
//! gguf-rs crate, and the values the models' metadata and HF configs state.

use serde_json::Value as Json;
use strata::arch::{Param, Part, TensorId};
use strata::model::gguf::Value;
use strata::model::{self, LayerAttention, ModelFiles, RopeStyle};
use strata::source::{ByteSource, FileSource};
use strata_conformance::models;

fn fixture(name: &str) -> Json {
    strata_conformance::fixtures::json(name)
}

#[test]
fn smollm2_config_matches_its_metadata() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let m = model::load(&path).expect("SmolLM2 loads");
    let c = &m.config;
    assert_eq!(c.architecture.name(), "llama");
    assert_eq!((c.n_layers, c.hidden_size, c.n_heads, c.n_kv_heads, c.head_dim), (30, 576, 9, 3, 64));
    assert_eq!((c.intermediate_size, c.vocab_size, c.context_length, c.rope_dim), (1536, 49152, 8192, 64));
    assert_eq!(c.rope_base, 100000.0);
    assert_eq!(c.rope_style, RopeStyle::Normal);
    assert!(c.tied_embeddings);
    assert_eq!((c.bos_token_id, c.eos_token_id), (Some(1), Some(2)));
    assert_eq!(c.native_dtype, strata::quant::DType::Q4_1);
    assert!(c.layer_attention.iter().all(|&k| k == LayerAttention::Global));
    let head = m.index.get(TensorId::global(Part::Output, Param::Weight));
    assert_eq!(head, m.index.get(TensorId::global(Part::TokenEmbd, Param::Weight)), "tied head = embedding");
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn gemma3_config_matches_its_metadata() {
    let Some(path) = models::find(models::GEMMA3) else { return };
    let m = model::load(&path).expect("Gemma 3 loads");
    let c = &m.config;
    assert_eq!(c.architecture.name(), "gemma3");
    // head_dim 256 is NOT hidden / heads (640 / 4 = 160): it comes from key_length.
    assert_eq!((c.hidden_size, c.n_heads, c.n_kv_heads, c.head_dim, c.head_dim_v), (640, 4, 1, 256, 256));
    assert_eq!((c.n_layers, c.intermediate_size, c.vocab_size, c.context_length), (18, 2048, 262144, 32768));
    assert_eq!(c.rope_dim, 256);
    assert_eq!((c.rope_base, c.rope_base_local), (1_000_000.0, Some(10_000.0)));
    assert_eq!(c.sliding_window, Some(512));
    let globals: Vec<usize> = (0..18).filter(|&i| c.layer_attention[i] == LayerAttention::Global).collect();
    assert_eq!(globals, vec![5, 11, 17]);
    assert!(c.tied_embeddings && c.qk_norm);
    assert_eq!(c.embedding_scale, Some(640f32.sqrt()));
    assert!(c.eog_token_ids.contains(&1) && c.eog_token_ids.contains(&106), "{:?}", c.eog_token_ids);
    assert_eq!(m.tensor(TensorId::layer(0, Part::AttnQ, Param::Weight)).unwrap().shape.0, vec![1024, 640]);
}

/// Our tensor table and metadata equal those of llama.cpp's Python reader.
fn check_against_gguf_py(file: &str, fixture_name: &str) {
    let Some(path) = models::find(file) else { return };
    let fx = fixture(fixture_name);
    let files = model::open(&path).unwrap();
    let h = files.gguf.as_ref().unwrap();
    assert_eq!(files.file_bytes, fx["file_bytes"].as_u64().unwrap());
    let tensors = fx["tensors"].as_array().unwrap();
    assert_eq!(h.tensors.len(), tensors.len());
    for (ours, theirs) in files.tensors.iter().zip(tensors) {
        let t = h.tensors.iter().find(|t| t.name == ours.name).unwrap();
        assert_eq!(ours.name, theirs["name"].as_str().unwrap());
        assert_eq!(ours.dtype.name(), theirs["type"].as_str().unwrap(), "{}", ours.name);
        let dims: Vec<u64> = theirs["ggml_dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        assert_eq!(t.dims, dims, "{}", ours.name);
        assert_eq!(ours.offset, theirs["offset"].as_u64().unwrap(), "{}", ours.name);
        assert_eq!(ours.nbytes, theirs["nbytes"].as_u64().unwrap(), "{}", ours.name);
    }
    let meta = fx["metadata"].as_object().unwrap();
    assert_eq!(h.metadata.len(), meta.len());
    for (key, theirs) in meta {
        let ours = h.get(key).unwrap_or_else(|| panic!("missing key {key}"));
        match (theirs["type"].as_str().unwrap(), ours) {
            ("array", Value::Array(a)) => assert_eq!(a.len() as u64, theirs["len"].as_u64().unwrap(), "{key}"),
            ("string", Value::String(s)) => assert_eq!(s, theirs["value"].as_str().unwrap(), "{key}"),
            ("string_len", Value::String(s)) => assert_eq!(s.len() as u64, theirs["value"].as_u64().unwrap(), "{key}"),
            ("bool", Value::Bool(b)) => assert_eq!(*b, theirs["value"].as_bool().unwrap(), "{key}"),
            ("float32", Value::F32(x)) => assert_eq!(f64::from(*x), theirs["value"].as_f64().unwrap(), "{key}"),
            ("uint32", Value::U32(x)) => assert_eq!(u64::from(*x), theirs["value"].as_u64().unwrap(), "{key}"),
            (ty, v) => panic!("{key}: fixture type {ty}, ours {}", v.type_name()),
        }
    }
}

#[test]
fn smollm2_header_equals_gguf_py() {
    check_against_gguf_py(models::SMOLLM2, "smollm2.gguf-py.json");
}

#[test]
fn gemma3_header_equals_gguf_py() {
    check_against_gguf_py(models::GEMMA3, "gemma3.gguf-py.json");
}

#[test]
fn ggml_type_table_equals_gguf_py() {
    let fx = fixture("ggml_types.json");
    let types = fx["types"].as_array().unwrap();
    for t in types {
        let id = t["id"].as_u64().unwrap() as u32;
        let d = strata::quant::DType::from_ggml_id(id).unwrap_or_else(|| panic!("ggml type {id} ({}) unknown", t["name"]));
        assert_eq!(d.name(), t["name"].as_str().unwrap());
        assert_eq!(d.block(), (t["block"].as_u64().unwrap(), t["bytes"].as_u64().unwrap()), "{}", d.name());
    }
    let ours = strata::quant::ALL_DTYPES.iter().filter(|d| d.ggml_id().is_some()).count();
    assert_eq!(ours, types.len(), "same set of ggml types");
}

#[test]
fn header_is_read_lazily() {
    let Some(path) = models::find(models::GEMMA3) else { return };
    let src = FileSource::open(&path).unwrap();
    let files = ModelFiles::from_gguf(&src).unwrap();
    // The header (262144 tokens + scores + types) is ~6.4 MiB of a 241 MiB file.
    let data_offset = files.gguf.as_ref().unwrap().data_offset;
    assert!(src.bytes_read() <= data_offset + (64 << 10), "read {} bytes, header ends at {data_offset}", src.bytes_read());
    assert!(src.bytes_read() * 20 < src.len());
}

/// The HF copy made by scripts/gguf_to_safetensors.py yields the GGUF's config. Fields that
/// differ by design: `rope_style` (llama.cpp permutes Llama Q/K rows: normal pairing in
/// GGUF, rotate-half in HF), the dtypes (the copy is BF16), and the end-of-generation set
/// (llama.cpp also marks tokens by their text, which config.json cannot state).
fn check_hf_copy(dir: &str) {
    let (Some(gguf), Some(st)) = (models::find(models::SMOLLM2), models::find(dir)) else { return };
    let a = model::load(&gguf).unwrap().config;
    let b = model::load(&st).unwrap_or_else(|e| panic!("{e}")).config;
    assert_eq!((a.rope_style, b.rope_style), (RopeStyle::Normal, RopeStyle::Neox));
    assert_eq!(b.native_dtype, strata::quant::DType::BF16, "a bf16 model stays bf16");
    assert_eq!(b.declared_dtype.as_deref(), Some("bfloat16"));
    assert!(a.eog_token_ids.contains(&2) && b.eog_token_ids == vec![2]);
    let strip = |mut c: strata::ModelConfig| {
        c.rope_style = RopeStyle::Neox;
        c.native_dtype = strata::quant::DType::F32;
        c.declared_dtype = None;
        c.eog_token_ids.clear();
        c.provenance.clear();
        c
    };
    assert_eq!(strip(a), strip(b));
}

#[test]
fn smollm2_safetensors_copy_has_the_gguf_config() {
    check_hf_copy(models::SMOLLM2_ST);
}

#[test]
fn smollm2_sharded_safetensors_copy_has_the_gguf_config() {
    check_hf_copy(models::SMOLLM2_ST_SHARDED);
}
