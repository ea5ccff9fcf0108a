//! Loader cases on GGUF files written by the test itself: each asserts the exact config
//! or the exact error kind.

use strata::arch::{Param, Part, TensorId};
use strata::model::gguf::{Array, GgufHeader, Value};
use strata::model::{analyze, Analysis, LayerAttention, ModelFiles, RopeStyle, Source};
use strata::quant::DType;
use strata::source::SliceSource;
use strata::{ErrorKind, Shape};
use strata_conformance::{GgufWriter, Tiny};

fn parse(bytes: Vec<u8>) -> Result<ModelFiles, strata::Error> {
    ModelFiles::from_gguf(&SliceSource::new("test.gguf", bytes))
}

fn analyze_bytes(bytes: Vec<u8>) -> Analysis {
    analyze(parse(bytes).expect("structurally valid"))
}

fn kinds(a: &Analysis) -> Vec<&ErrorKind> {
    a.errors.iter().map(|e| e.kind()).collect()
}

fn valid(w: &GgufWriter) -> strata::ModelConfig {
    let a = analyze_bytes(w.build());
    assert!(a.is_valid(), "expected valid, got errors: {:#?}", a.errors);
    a.config.unwrap()
}

#[test]
fn qwen2_without_rope_dimension_count_derives_head_dim_and_rope_dim() {
    let t = Tiny::qwen2();
    let w = t.gguf();
    assert!(!w.kvs.iter().any(|(k, _)| k.contains("rope.dimension_count") || k.contains("key_length")));
    let c = valid(&w);
    assert_eq!(c.head_dim, 16); // 64 / 4
    assert_eq!(c.rope_dim, 16);
    assert_eq!(c.head_dim_v, 16);
    assert_eq!(c.rope_style, RopeStyle::Neox);
    assert!(c.attn_bias);
    assert!(matches!(&c.provenance["head_dim"], Source::Derived(d) if d.contains("64 / 4")));
    assert!(matches!(&c.provenance["rope_dim"], Source::Derived(_)));
}

#[test]
fn explicit_key_length_overrides_hidden_over_heads() {
    // hidden 64 / 4 heads = 16, but the file says 32: projections are 4*32 = 128 wide.
    let t = Tiny { head_dim: Some(32), ..Tiny::llama() };
    let c = valid(&t.gguf());
    assert_eq!(c.head_dim, 32);
    assert_eq!(c.rope_dim, 32);
    assert_eq!(c.provenance["head_dim"], Source::GgufKey("llama.attention.key_length".into()));

    // The same file, but with tensors shaped for the derived 16: every projection is wrong.
    let wrong = Tiny { head_dim: None, ..Tiny::llama() }.gguf().kv("llama.attention.key_length", Value::U32(32));
    let a = analyze_bytes(wrong.build());
    assert!(!a.is_valid());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, expected, found, .. }
        if tensor == "blk.0.attn_q.weight" && *expected == Shape(vec![128, 64]) && *found == Shape(vec![64, 64]))));
}

#[test]
fn rope_dimension_count_overrides_for_partial_rotary() {
    let w = Tiny::llama().gguf().kv("llama.rope.dimension_count", Value::U32(8));
    let c = valid(&w);
    assert_eq!((c.head_dim, c.rope_dim), (16, 8));
    let odd = Tiny::llama().gguf().kv("llama.rope.dimension_count", Value::U32(40));
    let a = analyze_bytes(odd.build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::InvalidConfig { message } if message.contains("rope_dim (40)"))));
}

#[test]
fn gqa_kv_heads_shape_k_and_v() {
    let t = Tiny { heads: 8, kv_heads: Some(2), hidden: 64, ..Tiny::llama() };
    let c = valid(&t.gguf());
    assert_eq!((c.n_heads, c.n_kv_heads, c.head_dim), (8, 2, 8));
    // K is n_kv_heads * head_dim = 16 wide; a K written for 8 kv heads is rejected.
    let wrong = t.gguf().reshape("blk.1.attn_k.weight", &[64, 64]);
    let a = analyze_bytes(wrong.build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, expected, .. }
        if tensor == "blk.1.attn_k.weight" && *expected == Shape(vec![16, 64]))));
}

#[test]
fn missing_kv_head_key_defaults_to_n_heads() {
    let t = Tiny { kv_heads: None, ..Tiny::llama() };
    let c = valid(&t.gguf());
    assert_eq!(c.n_kv_heads, c.n_heads);
    assert!(matches!(&c.provenance["n_kv_heads"], Source::Derived(_)));
}

#[test]
fn kv_heads_must_divide_heads() {
    let w = Tiny::llama().gguf().kv("llama.attention.head_count_kv", Value::U32(3));
    let a = analyze_bytes(w.build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::InvalidConfig { message } if message.contains("not divisible by n_kv_heads (3)"))));
}

#[test]
fn zero_valued_keys_are_errors_never_zero_sized() {
    for key in ["llama.attention.head_count", "llama.attention.key_length", "llama.rope.dimension_count", "llama.attention.head_count_kv"] {
        let a = analyze_bytes(Tiny::llama().gguf().kv(key, Value::U32(0)).build());
        assert!(!a.is_valid() && a.clone().into_model().is_err(), "{key}=0 must not load");
        if let Some(c) = &a.config {
            assert!(c.head_dim > 0 && c.rope_dim > 0 && c.n_kv_heads > 0 && c.n_heads > 0);
        }
        assert!(
            kinds(&a).iter().any(|k| matches!(k, ErrorKind::BadValue { key: k2, value, .. } if k2.contains(key) && value == "0")),
            "{key}: {:?}",
            a.errors
        );
    }
}

#[test]
fn missing_required_key_is_named() {
    let a = analyze_bytes(Tiny::llama().gguf().remove_kv("llama.block_count").build());
    assert!(a.config.is_none());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingKey { key } if key.contains("llama.block_count"))));
}

#[test]
fn wrong_key_type_is_named() {
    let a = analyze_bytes(Tiny::llama().gguf().kv("llama.embedding_length", Value::String("64".into())).build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::BadKeyType { key, found, .. } if key.contains("llama.embedding_length") && found == "string")));
}

#[test]
fn tied_head_is_the_embedding_tensor_itself() {
    let files = parse(Tiny::llama().gguf().build()).unwrap();
    let m = analyze(files).into_model().unwrap();
    assert!(m.config.tied_embeddings);
    let embd = m.index.get(TensorId::global(Part::TokenEmbd, Param::Weight)).unwrap();
    let head = m.index.get(TensorId::global(Part::Output, Param::Weight)).unwrap();
    assert_eq!(embd, head, "one tensor, one buffer");
    assert!(std::ptr::eq(
        m.tensor(TensorId::global(Part::Output, Param::Weight)).unwrap(),
        m.tensor(TensorId::global(Part::TokenEmbd, Param::Weight)).unwrap()
    ));
}

#[test]
fn untied_head_is_its_own_tensor() {
    let t = Tiny { tied: false, ..Tiny::llama() };
    let m = analyze(parse(t.gguf().build()).unwrap()).into_model().unwrap();
    assert!(!m.config.tied_embeddings);
    assert_eq!(m.tensor(TensorId::global(Part::Output, Param::Weight)).unwrap().name, "output.weight");
    // A head of the wrong vocabulary is caught.
    let a = analyze_bytes(t.gguf().reshape("output.weight", &[100, 64]).build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, .. } if tensor == "output.weight")));
}

#[test]
fn attention_biases_required_for_qwen2_optional_for_llama() {
    let a = analyze_bytes(Tiny::qwen2().gguf().remove_tensor("blk.1.attn_k.bias").build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingTensor { tensor, .. } if tensor == "blk.1.attn_k.bias")));

    let with_bias = Tiny { qkv_bias: true, ..Tiny::llama() };
    let c = valid(&with_bias.gguf());
    assert!(c.attn_bias);
    let c = valid(&Tiny::llama().gguf());
    assert!(!c.attn_bias);
    // All layers or none: layer 0 has biases, layer 1 lacks one.
    let a = analyze_bytes(with_bias.gguf().remove_tensor("blk.1.attn_v.bias").build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingTensor { tensor, .. } if tensor == "blk.1.attn_v.bias")));
    // A bias of the wrong width.
    let a = analyze_bytes(Tiny::qwen2().gguf().reshape("blk.0.attn_q.bias", &[32]).build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, expected, .. } if tensor == "blk.0.attn_q.bias" && *expected == Shape(vec![64]))));
}

#[test]
fn tensor_twice_as_wide_as_the_config_says() {
    // ffn_down takes intermediate_size (96) inputs; the file gives 192.
    let a = analyze_bytes(Tiny::llama().gguf().reshape("blk.0.ffn_down.weight", &[64, 192]).build());
    assert!(!a.is_valid());
    let e = a.errors.iter().find(|e| matches!(*e.kind, ErrorKind::ShapeMismatch { .. })).expect("shape error");
    assert_eq!(
        *e.kind,
        ErrorKind::ShapeMismatch {
            tensor: "blk.0.ffn_down.weight".into(),
            expected: Shape(vec![64, 96]),
            found: Shape(vec![64, 192]),
            why: "[hidden_size, intermediate_size]".into(),
        }
    );
    let msg = e.to_string();
    assert!(msg.starts_with("test.gguf: tensor \"blk.0.ffn_down.weight\": expected shape [64, 96]"), "{msg}");
}

#[test]
fn missing_required_tensor() {
    let a = analyze_bytes(Tiny::llama().gguf().remove_tensor("blk.1.ffn_gate.weight").build());
    assert_eq!(
        kinds(&a),
        vec![&ErrorKind::MissingTensor { tensor: "blk.1.ffn_gate.weight".into(), hint: String::new() }]
    );
}

#[test]
fn tensor_past_the_last_layer() {
    let w = Tiny::llama().gguf().tensor("blk.2.attn_norm.weight", &[64], DType::F32);
    let a = analyze_bytes(w.build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::LayerOutOfRange { layer: 2, n_layers: 2, .. })));
}

#[test]
fn unknown_architecture() {
    let a = analyze_bytes(Tiny::llama().gguf().kv("general.architecture", Value::String("mamba".into())).build());
    assert!(matches!(kinds(&a).as_slice(), [ErrorKind::UnknownArchitecture { name, .. }] if name == "mamba"));
}

#[test]
fn unsupported_weight_dtype() {
    let t = Tiny { hidden: 256, ff: 256, heads: 4, ..Tiny::llama() };
    let a = analyze_bytes(t.gguf().retype("blk.0.attn_q.weight", DType::IQ2XXS).build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::UnsupportedDtype { tensor, dtype, .. } if tensor == "blk.0.attn_q.weight" && dtype == "IQ2_XXS")));
    // Quantized norms are refused too.
    let a = analyze_bytes(t.gguf().retype("blk.0.attn_norm.weight", DType::Q8_0).build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::UnsupportedDtype { tensor, .. } if tensor == "blk.0.attn_norm.weight")));
}

#[test]
fn quantized_model_and_bf16_native_dtype() {
    let q = Tiny { hidden: 64, ff: 128, dtype: DType::Q8_0, ..Tiny::llama() };
    assert_eq!(valid(&q.gguf()).native_dtype, DType::Q8_0);
    let b = Tiny { dtype: DType::BF16, ..Tiny::llama() };
    assert_eq!(valid(&b.gguf()).native_dtype, DType::BF16);
}

#[test]
fn gemma3_layers_and_explicit_head_dim() {
    let c = valid(&Tiny::gemma3().gguf());
    assert_eq!((c.hidden_size, c.n_heads, c.head_dim), (64, 2, 48));
    assert!(c.qk_norm && c.tied_embeddings);
    assert_eq!(c.sliding_window, Some(32));
    assert_eq!(c.rope_base_local, Some(10000.0));
    use LayerAttention::{Global as G, Local as L};
    assert_eq!(c.layer_attention, vec![L, L, L, L, L, G, L]);
    assert_eq!(c.embedding_scale, Some(8.0));
    let a = analyze_bytes(Tiny::gemma3().gguf().remove_tensor("blk.3.attn_k_norm.weight").build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingTensor { tensor, .. } if tensor == "blk.3.attn_k_norm.weight")));
}

#[test]
fn vocab_size_key_must_agree_with_token_list() {
    let a = analyze_bytes(Tiny::llama().gguf().kv("llama.vocab_size", Value::U32(129)).build());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::InvalidConfig { message } if message.contains("vocab_size 129"))));
}

// ------------------------------------------------------------------------------------
// Structural errors: the header itself is broken.

fn parse_err(bytes: Vec<u8>) -> ErrorKind {
    match parse(bytes) {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            assert_eq!(e.file, "test.gguf");
            *e.kind
        }
    }
}

#[test]
fn bad_magic() {
    let mut b = Tiny::llama().gguf().build();
    b[..4].copy_from_slice(b"GGML");
    assert_eq!(parse_err(b), ErrorKind::BadMagic { found: *b"GGML" });
}

#[test]
fn unsupported_versions() {
    for (version, hint) in [(1u32, "32-bit counts"), (4, ""), (3u32.swap_bytes(), "big-endian")] {
        let mut w = Tiny::llama().gguf();
        w.version = version;
        match parse_err(w.build()) {
            ErrorKind::UnsupportedVersion { version: v, hint: h } => {
                assert_eq!(v, version);
                assert!(h.contains(hint), "{h}");
            }
            other => panic!("{other:?}"),
        }
    }
    let mut w = Tiny::llama().gguf();
    w.version = 2;
    assert!(parse(w.build()).is_ok(), "GGUF v2 is read");
}

#[test]
fn lying_tensor_count() {
    let mut w = Tiny::llama().gguf();
    w.tensor_count_override = Some(u64::MAX / 2);
    match parse_err(w.build()) {
        ErrorKind::CountTooLarge { what, claimed, .. } => {
            assert_eq!(what, "tensor count");
            assert_eq!(claimed, u64::MAX / 2);
        }
        other => panic!("{other:?}"),
    }
    // A count that fits the file but exceeds the tensors present runs into the data.
    let mut w = Tiny::llama().gguf();
    w.tensor_count_override = Some(w.tensors.len() as u64 + 1);
    assert!(parse(w.build()).is_err());
}

#[test]
fn lying_kv_count_and_array_length() {
    let mut w = Tiny::llama().gguf();
    w.kv_count_override = Some(1 << 40);
    assert!(matches!(parse_err(w.build()), ErrorKind::CountTooLarge { what, .. } if what == "metadata key count"));

    // An array claiming 2^60 u32 elements: refused before any allocation.
    let mut b = GgufWriter::new().kv("x", Value::Array(Array::U32(vec![1, 2]))).build();
    let at = b.windows(8).position(|w| w == 2u64.to_le_bytes()).unwrap();
    b[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(parse_err(b), ErrorKind::CountTooLarge { what, claimed, .. } if what.contains("\"x\"") && claimed == 1 << 60));
}

#[test]
fn overlapping_tensors() {
    let mut w = Tiny::llama().gguf();
    // Tensor 3 starts where tensor 2 does.
    let (a, b) = (w.tensors[2].name.clone(), w.tensors[3].name.clone());
    let bytes = w.build();
    let h = GgufHeader::read(&SliceSource::new("t", bytes)).unwrap();
    w.offset_overrides = vec![(3, h.tensors[2].offset)];
    match parse_err(w.build()) {
        ErrorKind::OverlappingTensors { first, second, .. } => {
            let mut pair = [first, second];
            pair.sort();
            let mut want = [a, b];
            want.sort();
            assert_eq!(pair, want);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn misaligned_and_out_of_bounds_tensors() {
    let mut w = Tiny::llama().gguf();
    w.offset_overrides = vec![(1, 4)];
    assert!(matches!(parse_err(w.build()), ErrorKind::MisalignedTensor { offset: 4, alignment: 32, .. }));
    let mut w = Tiny::llama().gguf();
    w.offset_overrides = vec![(0, 1 << 40)];
    assert!(matches!(parse_err(w.build()), ErrorKind::TensorOutOfBounds { tensor, .. } if tensor == "token_embd.weight"));
    let mut w = Tiny::llama().gguf();
    w.offset_overrides = vec![(0, u64::MAX - 31)];
    assert!(matches!(parse_err(w.build()), ErrorKind::TensorOutOfBounds { .. }));
}

#[test]
fn truncated_file_every_prefix_is_an_error_never_a_panic() {
    let t = Tiny { layers: 1, hidden: 8, heads: 2, kv_heads: Some(1), ff: 8, vocab: 6, ..Tiny::llama() };
    let bytes = t.gguf().build();
    let full_len = bytes.len();
    let mut truncated_kinds = 0;
    for cut in 0..full_len {
        match parse(bytes[..cut].to_vec()) {
            Ok(_) => panic!("prefix of {cut}/{full_len} bytes parsed"),
            Err(e) => {
                // A count checked against the bytes left is how a cut inside the counts shows.
                if matches!(*e.kind, ErrorKind::Truncated { .. } | ErrorKind::TensorOutOfBounds { .. } | ErrorKind::CountTooLarge { .. }) {
                    truncated_kinds += 1;
                }
            }
        }
    }
    // Cuts in the header: "truncated"; cuts in the data: "out of bounds".
    assert_eq!(truncated_kinds, full_len, "every cut is reported as truncation");
    assert!(parse(bytes).is_ok());
}

#[test]
fn bad_utf8_key_and_value() {
    let mut b = GgufWriter::new().kv("general.name", Value::String("abc".into())).build();
    let at = b.windows(3).position(|w| w == b"abc").unwrap();
    b[at] = 0xff;
    assert!(matches!(parse_err(b), ErrorKind::BadUtf8 { what, .. } if what.contains("general.name")));
    let mut b = GgufWriter::new().kv("general.name", Value::String("abc".into())).build();
    let at = b.windows(4).position(|w| w == b"gene").unwrap();
    b[at] = 0xc3;
    assert!(matches!(parse_err(b), ErrorKind::BadUtf8 { what, .. } if what.contains("key of metadata entry 0")));
}

#[test]
fn bad_value_type_bool_and_nesting() {
    let mut b = GgufWriter::new().kv("k", Value::U32(7)).build();
    b[24 + 8 + 1..24 + 8 + 1 + 4].copy_from_slice(&99u32.to_le_bytes());
    assert_eq!(parse_err(b), ErrorKind::BadValueType { key: "k".into(), type_id: 99 });
    let mut b = GgufWriter::new().kv("k", Value::Bool(true)).build();
    b[24 + 8 + 1 + 4] = 2; // header, key "k", type, then the bool byte
    assert_eq!(parse_err(b), ErrorKind::BadBool { key: "k".into(), value: 2 });
    let mut deep = Array::U8(vec![1]);
    for _ in 0..9 {
        deep = Array::Array(vec![deep]);
    }
    let b = GgufWriter::new().kv("deep", Value::Array(deep)).build();
    assert!(matches!(parse_err(b), ErrorKind::NestingTooDeep { .. }));
}

#[test]
fn duplicate_keys_and_tensors() {
    let mut w = GgufWriter::new().kv("a", Value::U8(1));
    w.kvs.push(("a".into(), Value::U8(2)));
    assert_eq!(parse_err(w.build()), ErrorKind::DuplicateKey { key: "a".into() });
    let mut w = Tiny::llama().gguf();
    let t = w.tensors[0].clone();
    w.tensors.push(t);
    assert!(matches!(parse_err(w.build()), ErrorKind::DuplicateTensor { name } if name == "token_embd.weight"));
}

#[test]
fn bad_alignment_and_partial_blocks() {
    let w = Tiny::llama().gguf().kv("general.alignment", Value::U32(24));
    assert_eq!(parse_err(w.build()), ErrorKind::BadAlignment { alignment: 24 });
    let w = Tiny::llama().gguf().kv("general.alignment", Value::U64(64));
    assert!(matches!(parse_err(w.build()), ErrorKind::BadKeyType { .. }));
    let mut w = Tiny::llama().gguf().kv("general.alignment", Value::U32(64));
    w.alignment = 64;
    assert_eq!(GgufHeader::read(&SliceSource::new("t", w.build())).unwrap().alignment, 64);
    // Q4_K blocks hold 256 values; a 64-wide row is not a whole block.
    let mut b = GgufWriter::new().tensor("x.weight", &[2, 256], DType::Q4K).build();
    let dims = b.windows(8).position(|w| w == b"x.weight").unwrap() + 8 + 4; // name, n_dims
    let at = dims + b[dims..].windows(8).position(|w| w == 256u64.to_le_bytes()).unwrap();
    b[at..at + 8].copy_from_slice(&64u64.to_le_bytes());
    assert!(matches!(parse_err(b), ErrorKind::BadTensorSize { reason, .. } if reason.contains("block size 256")));
}

#[test]
fn unknown_ggml_type_and_too_many_dims() {
    let mut b = GgufWriter::new().tensor("x.weight", &[4], DType::F32).build();
    let at = b.windows(8).position(|w| w == b"x.weight").unwrap() + 8 + 4 + 8; // name, n_dims, dim
    b[at..at + 4].copy_from_slice(&4u32.to_le_bytes()); // Q4_2: retired
    assert!(matches!(parse_err(b), ErrorKind::UnknownGgmlType { type_id: 4, .. }));
    let b = GgufWriter::new().tensor("x.weight", &[1, 1, 1, 1, 4], DType::F32).build();
    assert!(matches!(parse_err(b), ErrorKind::TooManyDims { n_dims: 5, .. }));
}

#[test]
fn every_metadata_type_round_trips() {
    let values = vec![
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-5)),
        ("u16", Value::U16(65000)),
        ("i16", Value::I16(-30000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("f32", Value::F32(1.5e-6)),
        ("bool", Value::Bool(true)),
        ("string", Value::String("héllo ✓".into())),
        ("u64", Value::U64(u64::MAX)),
        ("i64", Value::I64(i64::MIN)),
        ("f64", Value::F64(-2.5e300)),
        ("arr_str", Value::Array(Array::String(vec!["a".into(), "".into(), "ü".into()]))),
        ("arr_f32", Value::Array(Array::F32(vec![1.0, -0.5]))),
        ("arr_bool", Value::Array(Array::Bool(vec![true, false]))),
        ("arr_i64", Value::Array(Array::I64(vec![-1, 1]))),
        ("arr_nested", Value::Array(Array::Array(vec![Array::U16(vec![1, 2]), Array::String(vec!["x".into()])]))),
        ("arr_empty", Value::Array(Array::U8(vec![]))),
    ];
    let mut w = GgufWriter::new();
    for (k, v) in &values {
        w = w.kv(k, v.clone());
    }
    let h = GgufHeader::read(&SliceSource::new("t", w.build())).unwrap();
    assert_eq!(h.metadata.len(), values.len());
    for (k, v) in &values {
        assert_eq!(h.get(k), Some(v), "{k}");
    }
}

#[test]
fn tensor_byte_sizes_for_every_ggml_type() {
    // Two rows of 256 elements (a whole block for every format), checked against the
    // writer's own size arithmetic and the data offsets the writer laid out.
    let mut w = GgufWriter::new();
    for &d in strata::quant::ALL_DTYPES.iter().filter(|d| d.ggml_id().is_some()) {
        let (block, _) = d.block();
        let row = 256u64.max(block).div_ceil(block) * block;
        w = w.tensor(&format!("t{}.weight", d.name()), &[2, row], d);
    }
    let h = GgufHeader::read(&SliceSource::new("t", w.build())).unwrap();
    for t in &h.tensors {
        assert_eq!(t.nbytes, strata_conformance::ggml_nbytes(t.dtype, &t.shape().0), "{}", t.name);
    }
}


#[test]
fn layer_count_beyond_the_tensor_table_is_refused_before_allocating() {
    // Found by the fuzzer: 2^21 claimed layers in a file of 14 tensors.
    let a = analyze_bytes(Tiny::llama().gguf().kv("llama.block_count", Value::U32(0x0020_0001)).build());
    assert!(a.config.is_none());
    assert_eq!(a.errors.len(), 1, "{:?}", a.errors);
    assert!(matches!(a.errors[0].kind(), ErrorKind::InvalidConfig { message } if message.contains("2097153")));
}
