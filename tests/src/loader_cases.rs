//! Loader cases on GGUF files written by the case itself: each checks the exact config or
//! the exact error kind. One definition for every target: `tests/tests/loader_gguf.rs`
//! runs them natively, the browser conformance page (`web/conformance`) in wasm on the
//! page. Cases return `Err` instead of panicking (a wasm panic aborts the whole module).

use strata::arch::{Param, Part, TensorId};
use strata::model::gguf::{Array, GgufHeader, Value};
use strata::model::config::ExpertLayout;
use strata::model::{analyze, Analysis, Field, LayerAttention, ModelFiles, RopeStyle, Source};
use strata::quant::DType;
use strata::source::SliceSource;
use strata::{ErrorKind, Shape};

use crate::{GgufWriter, Tiny};

pub type CaseResult = Result<(), String>;

/// `Err` with the condition and its line unless `cond` holds.
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            return Err(format!("line {}: check failed: {}", line!(), stringify!($cond)));
        }
    };
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!("line {}: check failed: {}: {}", line!(), stringify!($cond), format!($($fmt)+)));
        }
    };
}

macro_rules! check_eq {
    ($a:expr, $b:expr $(, $($fmt:tt)+)?) => {{
        match (&$a, &$b) {
            (a, b) if a != b => return Err(format!("line {}: {} != {}: {:?} vs {:?}", line!(), stringify!($a), stringify!($b), a, b)),
            _ => {}
        }
    }};
}

/// `unwrap` that returns an error instead of panicking.
trait Must<T> {
    fn must(self) -> Result<T, String>;
}

impl<T> Must<T> for Option<T> {
    fn must(self) -> Result<T, String> {
        self.ok_or_else(|| "expected a value, found None".to_string())
    }
}

impl<T, E: std::fmt::Debug> Must<T> for Result<T, E> {
    fn must(self) -> Result<T, String> {
        self.map_err(|e| format!("expected Ok, found {e:?}"))
    }
}

/// A named case.
pub type NamedCase = (&'static str, fn() -> CaseResult);

/// Every case, by name.
pub fn cases() -> Vec<NamedCase> {
    vec![
        ("qwen2_without_rope_dimension_count_derives_head_dim_and_rope_dim", qwen2_without_rope_dimension_count_derives_head_dim_and_rope_dim),
        ("explicit_key_length_overrides_hidden_over_heads", explicit_key_length_overrides_hidden_over_heads),
        ("rope_dimension_count_overrides_for_partial_rotary", rope_dimension_count_overrides_for_partial_rotary),
        ("gqa_kv_heads_shape_k_and_v", gqa_kv_heads_shape_k_and_v),
        ("missing_kv_head_key_defaults_to_n_heads", missing_kv_head_key_defaults_to_n_heads),
        ("kv_heads_must_divide_heads", kv_heads_must_divide_heads),
        ("zero_valued_keys_are_errors_never_zero_sized", zero_valued_keys_are_errors_never_zero_sized),
        ("missing_required_key_is_named", missing_required_key_is_named),
        ("wrong_key_type_is_named", wrong_key_type_is_named),
        ("tied_head_is_the_embedding_tensor_itself", tied_head_is_the_embedding_tensor_itself),
        ("untied_head_is_its_own_tensor", untied_head_is_its_own_tensor),
        ("attention_biases_required_for_qwen2_optional_for_llama", attention_biases_required_for_qwen2_optional_for_llama),
        ("tensor_twice_as_wide_as_the_config_says", tensor_twice_as_wide_as_the_config_says),
        ("missing_required_tensor", missing_required_tensor),
        ("tensor_past_the_last_layer", tensor_past_the_last_layer),
        ("unknown_architecture", unknown_architecture),
        ("unsupported_weight_dtype", unsupported_weight_dtype),
        ("quantized_model_and_bf16_native_dtype", quantized_model_and_bf16_native_dtype),
        ("gemma3_layers_and_explicit_head_dim", gemma3_layers_and_explicit_head_dim),
        ("gemma2_default_softcaps_and_the_27b_query_scale", gemma2_default_softcaps_and_the_27b_query_scale),
        ("every_config_value_names_its_source", every_config_value_names_its_source),
        ("a_mixture_of_experts_file_is_refused_by_its_expert_count", a_mixture_of_experts_file_is_refused_by_its_expert_count),
        ("vocab_size_key_must_agree_with_token_list", vocab_size_key_must_agree_with_token_list),
        ("bad_magic", bad_magic),
        ("unsupported_versions", unsupported_versions),
        ("lying_tensor_count", lying_tensor_count),
        ("lying_kv_count_and_array_length", lying_kv_count_and_array_length),
        ("overlapping_tensors", overlapping_tensors),
        ("misaligned_and_out_of_bounds_tensors", misaligned_and_out_of_bounds_tensors),
        ("truncated_file_every_prefix_is_an_error_never_a_panic", truncated_file_every_prefix_is_an_error_never_a_panic),
        ("bad_utf8_key_and_value", bad_utf8_key_and_value),
        ("bad_value_type_bool_and_nesting", bad_value_type_bool_and_nesting),
        ("duplicate_keys_and_tensors", duplicate_keys_and_tensors),
        ("bad_alignment_and_partial_blocks", bad_alignment_and_partial_blocks),
        ("unknown_ggml_type_and_too_many_dims", unknown_ggml_type_and_too_many_dims),
        ("every_metadata_type_round_trips", every_metadata_type_round_trips),
        ("tensor_byte_sizes_for_every_ggml_type", tensor_byte_sizes_for_every_ggml_type),
        ("layer_count_beyond_the_tensor_table_is_refused_before_allocating", layer_count_beyond_the_tensor_table_is_refused_before_allocating),
    ]
}

fn parse(bytes: Vec<u8>) -> Result<ModelFiles, strata::Error> {
    ModelFiles::from_gguf(&SliceSource::new("test.gguf", bytes))
}

fn analyze_bytes(bytes: Vec<u8>) -> Result<Analysis, String> {
    Ok(analyze(parse(bytes).map_err(|e| format!("expected a structurally valid file: {e}"))?))
}

fn kinds(a: &Analysis) -> Vec<&ErrorKind> {
    a.errors.iter().map(|e| e.kind()).collect()
}

fn valid(w: &GgufWriter) -> Result<strata::ModelConfig, String> {
    let a = analyze_bytes(w.build())?;
    check!(a.is_valid(), "expected valid, got errors: {:#?}", a.errors);
    a.config.must()
}

fn qwen2_without_rope_dimension_count_derives_head_dim_and_rope_dim() -> CaseResult {
    let t = Tiny::qwen2();
    let w = t.gguf();
    check!(!w.kvs.iter().any(|(k, _)| k.contains("rope.dimension_count") || k.contains("key_length")));
    let c = valid(&w)?;
    check_eq!(c.head_dim, 16); // 64 / 4
    check_eq!(c.rope_dim, 16);
    check_eq!(c.head_dim_v, 16);
    check_eq!(c.rope_style, RopeStyle::Neox);
    check!(c.attn_bias);
    check!(matches!(&c.provenance[Field::HeadDim], Source::Derived(d) if d.contains("64 / 4")));
    check!(matches!(&c.provenance[Field::RopeDim], Source::Derived(_)));
    Ok(())
}

fn explicit_key_length_overrides_hidden_over_heads() -> CaseResult {
    // hidden 64 / 4 heads = 16, but the file says 32: projections are 4*32 = 128 wide.
    let t = Tiny { head_dim: Some(32), ..Tiny::llama() };
    let c = valid(&t.gguf())?;
    check_eq!(c.head_dim, 32);
    check_eq!(c.rope_dim, 32);
    check_eq!(c.provenance[Field::HeadDim], Source::GgufKey("llama.attention.key_length".into()));

    // The same file, but with tensors shaped for the derived 16: every projection is wrong.
    let wrong = Tiny { head_dim: None, ..Tiny::llama() }.gguf().kv("llama.attention.key_length", Value::U32(32));
    let a = analyze_bytes(wrong.build())?;
    check!(!a.is_valid());
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, expected, found, .. }
        if tensor == "blk.0.attn_q.weight" && *expected == Shape(vec![128, 64]) && *found == Shape(vec![64, 64]))));
    Ok(())
}

fn rope_dimension_count_overrides_for_partial_rotary() -> CaseResult {
    let w = Tiny::llama().gguf().kv("llama.rope.dimension_count", Value::U32(8));
    let c = valid(&w)?;
    check_eq!((c.head_dim, c.rope_dim), (16, 8));
    let odd = Tiny::llama().gguf().kv("llama.rope.dimension_count", Value::U32(40));
    let a = analyze_bytes(odd.build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::InvalidConfig { message } if message.contains("rope_dim (40)"))));
    Ok(())
}

fn gqa_kv_heads_shape_k_and_v() -> CaseResult {
    let t = Tiny { heads: 8, kv_heads: Some(2), hidden: 64, ..Tiny::llama() };
    let c = valid(&t.gguf())?;
    check_eq!((c.n_heads, c.n_kv_heads, c.head_dim), (8, 2, 8));
    // K is n_kv_heads * head_dim = 16 wide; a K written for 8 kv heads is rejected.
    let wrong = t.gguf().reshape("blk.1.attn_k.weight", &[64, 64]);
    let a = analyze_bytes(wrong.build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, expected, .. }
        if tensor == "blk.1.attn_k.weight" && *expected == Shape(vec![16, 64]))));
    Ok(())
}

fn missing_kv_head_key_defaults_to_n_heads() -> CaseResult {
    let t = Tiny { kv_heads: None, ..Tiny::llama() };
    let c = valid(&t.gguf())?;
    check_eq!(c.n_kv_heads, c.n_heads);
    check!(matches!(&c.provenance[Field::NKvHeads], Source::Derived(_)));
    Ok(())
}

fn kv_heads_must_divide_heads() -> CaseResult {
    let w = Tiny::llama().gguf().kv("llama.attention.head_count_kv", Value::U32(3));
    let a = analyze_bytes(w.build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::InvalidConfig { message } if message.contains("not divisible by n_kv_heads (3)"))));
    Ok(())
}

fn zero_valued_keys_are_errors_never_zero_sized() -> CaseResult {
    for key in ["llama.attention.head_count", "llama.attention.key_length", "llama.rope.dimension_count", "llama.attention.head_count_kv"] {
        let a = analyze_bytes(Tiny::llama().gguf().kv(key, Value::U32(0)).build())?;
        check!(!a.is_valid() && a.clone().into_model().is_err(), "{key}=0 must not load");
        if let Some(c) = &a.config {
            check!(c.head_dim > 0 && c.rope_dim > 0 && c.n_kv_heads > 0 && c.n_heads > 0);
        }
        check!(
            kinds(&a).iter().any(|k| matches!(k, ErrorKind::BadValue { key: k2, value, .. } if k2.contains(key) && value == "0")),
            "{key}: {:?}",
            a.errors
        );
    }
    Ok(())
}

fn missing_required_key_is_named() -> CaseResult {
    let a = analyze_bytes(Tiny::llama().gguf().remove_kv("llama.block_count").build())?;
    check!(a.config.is_none());
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingKey { key } if key.contains("llama.block_count"))));
    Ok(())
}

fn wrong_key_type_is_named() -> CaseResult {
    let a = analyze_bytes(Tiny::llama().gguf().kv("llama.embedding_length", Value::String("64".into())).build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::BadKeyType { key, found, .. } if key.contains("llama.embedding_length") && found == "string")));
    Ok(())
}

fn tied_head_is_the_embedding_tensor_itself() -> CaseResult {
    let files = parse(Tiny::llama().gguf().build()).must()?;
    let m = analyze(files).into_model().must()?;
    check!(m.config.tied_embeddings);
    let embd = m.index.get(TensorId::global(Part::TokenEmbd, Param::Weight)).must()?;
    let head = m.index.get(TensorId::global(Part::Output, Param::Weight)).must()?;
    check_eq!(embd, head, "one tensor, one buffer");
    check!(std::ptr::eq(
        m.tensor(TensorId::global(Part::Output, Param::Weight)).must()?,
        m.tensor(TensorId::global(Part::TokenEmbd, Param::Weight)).must()?
    ));
    Ok(())
}

fn untied_head_is_its_own_tensor() -> CaseResult {
    let t = Tiny { tied: false, ..Tiny::llama() };
    let m = analyze(parse(t.gguf().build()).must()?).into_model().must()?;
    check!(!m.config.tied_embeddings);
    check_eq!(m.tensor(TensorId::global(Part::Output, Param::Weight)).must()?.name, "output.weight");
    // A head of the wrong vocabulary is caught.
    let a = analyze_bytes(t.gguf().reshape("output.weight", &[100, 64]).build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, .. } if tensor == "output.weight")));
    Ok(())
}

fn attention_biases_required_for_qwen2_optional_for_llama() -> CaseResult {
    let a = analyze_bytes(Tiny::qwen2().gguf().remove_tensor("blk.1.attn_k.bias").build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingTensor { tensor, .. } if tensor == "blk.1.attn_k.bias")));

    let with_bias = Tiny { qkv_bias: true, ..Tiny::llama() };
    let c = valid(&with_bias.gguf())?;
    check!(c.attn_bias);
    let c = valid(&Tiny::llama().gguf())?;
    check!(!c.attn_bias);
    // All layers or none: layer 0 has biases, layer 1 lacks one.
    let a = analyze_bytes(with_bias.gguf().remove_tensor("blk.1.attn_v.bias").build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingTensor { tensor, .. } if tensor == "blk.1.attn_v.bias")));
    // A bias of the wrong width.
    let a = analyze_bytes(Tiny::qwen2().gguf().reshape("blk.0.attn_q.bias", &[32]).build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, expected, .. } if tensor == "blk.0.attn_q.bias" && *expected == Shape(vec![64]))));
    Ok(())
}

fn tensor_twice_as_wide_as_the_config_says() -> CaseResult {
    // ffn_down takes intermediate_size (96) inputs; the file gives 192.
    let a = analyze_bytes(Tiny::llama().gguf().reshape("blk.0.ffn_down.weight", &[64, 192]).build())?;
    check!(!a.is_valid());
    let e = a.errors.iter().find(|e| matches!(*e.kind, ErrorKind::ShapeMismatch { .. })).must()?;
    check_eq!(
        *e.kind,
        ErrorKind::ShapeMismatch {
            tensor: "blk.0.ffn_down.weight".into(),
            expected: Shape(vec![64, 96]),
            found: Shape(vec![64, 192]),
            why: "[hidden_size, intermediate_size]".into(),
        }
    );
    let msg = e.to_string();
    check!(msg.starts_with("test.gguf: tensor \"blk.0.ffn_down.weight\": expected shape [64, 96]"), "{msg}");
    Ok(())
}

fn missing_required_tensor() -> CaseResult {
    let a = analyze_bytes(Tiny::llama().gguf().remove_tensor("blk.1.ffn_gate.weight").build())?;
    check_eq!(
        kinds(&a),
        vec![&ErrorKind::MissingTensor { tensor: "blk.1.ffn_gate.weight".into(), hint: String::new() }]
    );
    Ok(())
}

fn tensor_past_the_last_layer() -> CaseResult {
    let w = Tiny::llama().gguf().tensor("blk.2.attn_norm.weight", &[64], DType::F32);
    let a = analyze_bytes(w.build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::LayerOutOfRange { layer: 2, n_layers: 2, .. })));
    Ok(())
}

fn unknown_architecture() -> CaseResult {
    let a = analyze_bytes(Tiny::llama().gguf().kv("general.architecture", Value::String("mamba".into())).build())?;
    check!(matches!(kinds(&a).as_slice(), [ErrorKind::UnknownArchitecture { name, .. }] if name == "mamba"));
    Ok(())
}

fn unsupported_weight_dtype() -> CaseResult {
    let t = Tiny { hidden: 256, ff: 256, heads: 4, ..Tiny::llama() };
    let a = analyze_bytes(t.gguf().retype("blk.0.attn_q.weight", DType::IQ2XXS).build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::UnsupportedDtype { tensor, dtype, .. } if tensor == "blk.0.attn_q.weight" && dtype == "IQ2_XXS")));
    // Quantized norms are refused too.
    let a = analyze_bytes(t.gguf().retype("blk.0.attn_norm.weight", DType::Q8_0).build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::UnsupportedDtype { tensor, .. } if tensor == "blk.0.attn_norm.weight")));
    Ok(())
}

fn quantized_model_and_bf16_native_dtype() -> CaseResult {
    let q = Tiny { hidden: 64, ff: 128, dtype: DType::Q8_0, ..Tiny::llama() };
    check_eq!(valid(&q.gguf())?.native_dtype, DType::Q8_0);
    let b = Tiny { dtype: DType::BF16, ..Tiny::llama() };
    check_eq!(valid(&b.gguf())?.native_dtype, DType::BF16);
    Ok(())
}

fn gemma3_layers_and_explicit_head_dim() -> CaseResult {
    let c = valid(&Tiny::gemma3().gguf())?;
    check_eq!((c.hidden_size, c.n_heads, c.head_dim), (64, 2, 48));
    check!(c.qk_norm && c.tied_embeddings);
    check_eq!(c.sliding_window, Some(32));
    check_eq!(c.rope_base_local, Some(10000.0));
    use LayerAttention::{Global as G, Local as L};
    check_eq!(c.layer_attention, vec![L, L, L, L, L, G, L]);
    check_eq!(c.embedding_scale, Some(8.0));
    let a = analyze_bytes(Tiny::gemma3().gguf().remove_tensor("blk.3.attn_k_norm.weight").build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingTensor { tensor, .. } if tensor == "blk.3.attn_k_norm.weight")));
    Ok(())
}

/// Gemma 2's quirks (arch/gemma2.rs), against llama.cpp's `load_hparams` for
/// LLM_ARCH_GEMMA2: soft-caps 50 (attention) and 30 (final) unless the file gives them, and
/// queries scaled by 1/sqrt(n_embd / n_head) for the 27B (46 layers), else 1/sqrt(head_dim).
fn gemma2_default_softcaps_and_the_27b_query_scale() -> CaseResult {
    let gemma2 = |layers| Tiny { arch: "gemma2", layers, hidden: 64, heads: 4, kv_heads: Some(2), head_dim: Some(32), post_norms: true, ..Tiny::llama() };
    let c = valid(&gemma2(2).gguf())?;
    check_eq!((c.attn_logit_softcap, c.final_logit_softcap), (Some(50.0), Some(30.0)));
    check_eq!(c.attention_scale, 1.0 / 32f32.sqrt());
    let c = valid(&gemma2(2).gguf().kv("gemma2.attn_logit_softcapping", Value::F32(20.0)))?;
    check_eq!((c.attn_logit_softcap, c.final_logit_softcap), (Some(20.0), Some(30.0)));
    let c = valid(&gemma2(46).gguf())?;
    check_eq!(c.attention_scale, 1.0 / 16f32.sqrt());
    check!(matches!(&c.provenance[Field::AttentionScale], Source::Derived(d) if d.contains("27B")));
    // Other architectures have neither quirk.
    let c = valid(&Tiny { arch: "gemma3", layers: 46, ..Tiny::gemma3() }.gguf())?;
    check_eq!((c.attn_logit_softcap, c.final_logit_softcap), (None, None));
    check_eq!(c.attention_scale, 1.0 / 48f32.sqrt());
    Ok(())
}

/// Provenance is keyed by `Field`, one per `ModelConfig` field (as it serialises): every
/// field but the fixed ones has a `Field`, and every value a load sets names its source.
fn every_config_value_names_its_source() -> CaseResult {
    for tiny in [Tiny::llama(), Tiny::qwen2(), Tiny::gemma3()] {
        let c = valid(&tiny.gguf())?;
        let serde_json::Value::Object(fields) = serde_json::to_value(&c).map_err(|e| e.to_string())? else { return Err("config is not an object".into()) };
        for (name, value) in &fields {
            if ["architecture", "norm", "provenance"].contains(&name.as_str()) {
                continue;
            }
            let field = Field::from_name(name).ok_or_else(|| format!("ModelConfig.{name} has no provenance Field"))?;
            check!(value.is_null() || c.provenance.get(field).is_some(), "{}: {name} = {value} has no source", tiny.arch);
        }
        for &f in Field::ALL {
            check!(fields.contains_key(f.name()), "Field {f} is not a ModelConfig field");
        }
        check_eq!(fields["provenance"]["n_layers"]["detail"], format!("{}.block_count", tiny.arch));
    }
    Ok(())
}

/// A Mixtral-layout GGUF (the `llama` architecture with `expert_count`, a router and
/// stacked experts, as llama.cpp's converter writes it) is refused by the key that makes
/// it MoE, and by nothing else when it is well formed: its experts' keys, layout and shapes
/// are read and checked as llama.cpp's `load_hparams` / `create_tensors` would (a stack of
/// the wrong size, too many experts used, a missing or surplus expert are each named).
/// `expert_count = 0` is a dense model.
fn a_mixture_of_experts_file_is_refused_by_its_expert_count() -> CaseResult {
    let t = Tiny::llama();
    let moe = |stacked: bool, experts: u64| {
        let mut w = t.gguf().kv("llama.expert_count", Value::U32(4)).kv("llama.expert_used_count", Value::U32(2));
        for l in 0..t.layers {
            for p in ["gate", "up", "down"] {
                w = w.remove_tensor(&format!("blk.{l}.ffn_{p}.weight"));
            }
            w = w.tensor(&format!("blk.{l}.ffn_gate_inp.weight"), &[4, t.hidden], DType::F32);
            for (p, shape) in [("gate", [t.ff, t.hidden]), ("up", [t.ff, t.hidden]), ("down", [t.hidden, t.ff])] {
                if stacked {
                    w = w.tensor(&format!("blk.{l}.ffn_{p}_exps.weight"), &[experts, shape[0], shape[1]], DType::F32);
                } else {
                    for e in 0..experts {
                        w = w.tensor(&format!("blk.{l}.ffn_{p}.{e}.weight"), &shape, DType::F32);
                    }
                }
            }
        }
        w
    };
    let refused_only = |w: &GgufWriter| -> Result<(Analysis, strata::ModelConfig), String> {
        let a = analyze_bytes(w.build())?;
        let k = kinds(&a);
        check!(k.len() == 1 && matches!(k[0], ErrorKind::UnsupportedFeature { .. }), "expected only the MoE refusal: {:#?}", a.errors);
        let c = a.config.clone().must()?;
        Ok((a, c))
    };
    let (a, c) = refused_only(&moe(true, 4))?;
    let ErrorKind::UnsupportedFeature { key, value, feature } = kinds(&a)[0] else { return Err("not UnsupportedFeature".into()) };
    check_eq!((key.as_str(), value.as_str()), ("gguf key llama.expert_count", "4"));
    check!(feature.contains("mixture-of-experts"), "{feature}");
    check!(!a.warnings.iter().any(|w| w.contains("is not used")), "expert tensors are the model's: {:?}", a.warnings);
    check_eq!((c.n_experts, c.n_experts_used, c.expert_intermediate_size), (4, Some(2), Some(t.ff as u32)));
    check_eq!(c.expert_layout, Some(ExpertLayout::Stacked));
    check!(matches!(&c.provenance[Field::ExpertIntermediateSize], Source::Derived(d) if d.contains("intermediate_size")));
    // An expert's own width (Qwen-MoE's expert_feed_forward_length) shapes the experts.
    let a = analyze_bytes(moe(true, 4).kv("llama.expert_feed_forward_length", Value::U32(32)).build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, expected, .. } if tensor == "blk.0.ffn_up_exps.weight" && expected.0 == vec![4, 32, t.hidden])), "{:#?}", a.errors);
    // A stack of 3 where the file says 4.
    let a = analyze_bytes(moe(true, 4).reshape("blk.1.ffn_up_exps.weight", &[3, t.ff, t.hidden]).build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, why, .. } if tensor == "blk.1.ffn_up_exps.weight" && why.contains("n_experts"))), "{:#?}", a.errors);
    let a = analyze_bytes(moe(true, 4).remove_kv("llama.expert_used_count").build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingKey { key } if key.contains("llama.expert_used_count"))), "{:#?}", a.errors);
    let a = analyze_bytes(moe(true, 4).kv("llama.expert_used_count", Value::U32(5)).build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::InvalidConfig { message } if message.contains("n_experts_used (5) exceeds n_experts (4)"))), "{:#?}", a.errors);
    // The per-expert layout llama.cpp wrote before stacking: the same model.
    let (_, c) = refused_only(&moe(false, 4))?;
    check_eq!(c.expert_layout, Some(ExpertLayout::PerExpert));
    let a = analyze_bytes(moe(false, 4).remove_tensor("blk.1.ffn_up.3.weight").build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingTensor { tensor, .. } if tensor == "blk.1.ffn_up.3.weight")), "{:#?}", a.errors);
    let a = analyze_bytes(moe(false, 5).build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ExpertOutOfRange { tensor, expert: 4, n_experts: 4 } if tensor == "blk.0.ffn_gate.4.weight")), "{:#?}", a.errors);
    let c = valid(&t.gguf().kv("llama.expert_count", Value::U32(0)))?;
    check_eq!((c.n_experts, c.n_experts_used, c.expert_layout), (0, None, None));
    check!(matches!(&c.provenance[Field::NExperts], Source::Default(_)));
    Ok(())
}

fn vocab_size_key_must_agree_with_token_list() -> CaseResult {
    let a = analyze_bytes(Tiny::llama().gguf().kv("llama.vocab_size", Value::U32(129)).build())?;
    check!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::InvalidConfig { message } if message.contains("vocab_size 129"))));
    Ok(())
}

// ------------------------------------------------------------------------------------
// Structural errors: the header itself is broken.

fn parse_err(bytes: Vec<u8>) -> Result<ErrorKind, String> {
    match parse(bytes) {
        Ok(_) => Err("expected an error, the file parsed".into()),
        Err(e) => {
            check_eq!(e.file, "test.gguf");
            Ok(*e.kind)
        }
    }
}

fn bad_magic() -> CaseResult {
    let mut b = Tiny::llama().gguf().build();
    b[..4].copy_from_slice(b"GGML");
    check_eq!(parse_err(b)?, ErrorKind::BadMagic { found: *b"GGML" });
    Ok(())
}

fn unsupported_versions() -> CaseResult {
    for (version, hint) in [(1u32, "32-bit counts"), (4, ""), (3u32.swap_bytes(), "big-endian")] {
        let mut w = Tiny::llama().gguf();
        w.version = version;
        match parse_err(w.build())? {
            ErrorKind::UnsupportedVersion { version: v, hint: h } => {
                check_eq!(v, version);
                check!(h.contains(hint), "{h}");
            }
            other => return Err(format!("{other:?}")),
        }
    }
    let mut w = Tiny::llama().gguf();
    w.version = 2;
    check!(parse(w.build()).is_ok(), "GGUF v2 is read");
    Ok(())
}

fn lying_tensor_count() -> CaseResult {
    let mut w = Tiny::llama().gguf();
    w.tensor_count_override = Some(u64::MAX / 2);
    match parse_err(w.build())? {
        ErrorKind::CountTooLarge { what, claimed, .. } => {
            check_eq!(what, "tensor count");
            check_eq!(claimed, u64::MAX / 2);
        }
        other => return Err(format!("{other:?}")),
    }
    // A count that fits the file but exceeds the tensors present runs into the data.
    let mut w = Tiny::llama().gguf();
    w.tensor_count_override = Some(w.tensors.len() as u64 + 1);
    check!(parse(w.build()).is_err());
    Ok(())
}

fn lying_kv_count_and_array_length() -> CaseResult {
    let mut w = Tiny::llama().gguf();
    w.kv_count_override = Some(1 << 40);
    check!(matches!(parse_err(w.build())?, ErrorKind::CountTooLarge { what, .. } if what == "metadata key count"));

    // An array claiming 2^60 u32 elements: refused before any allocation.
    let mut b = GgufWriter::new().kv("x", Value::Array(Array::U32(vec![1, 2]))).build();
    let at = b.windows(8).position(|w| w == 2u64.to_le_bytes()).must()?;
    b[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    check!(matches!(parse_err(b)?, ErrorKind::CountTooLarge { what, claimed, .. } if what.contains("\"x\"") && claimed == 1 << 60));
    Ok(())
}

fn overlapping_tensors() -> CaseResult {
    let mut w = Tiny::llama().gguf();
    // Tensor 3 starts where tensor 2 does.
    let (a, b) = (w.tensors[2].name.clone(), w.tensors[3].name.clone());
    let bytes = w.build();
    let h = GgufHeader::read(&SliceSource::new("t", bytes)).must()?;
    w.offset_overrides = vec![(3, h.tensors[2].offset)];
    match parse_err(w.build())? {
        ErrorKind::OverlappingTensors { first, second, .. } => {
            let mut pair = [first, second];
            pair.sort();
            let mut want = [a, b];
            want.sort();
            check_eq!(pair, want);
        }
        other => return Err(format!("{other:?}")),
    }
    Ok(())
}

fn misaligned_and_out_of_bounds_tensors() -> CaseResult {
    let mut w = Tiny::llama().gguf();
    w.offset_overrides = vec![(1, 4)];
    check!(matches!(parse_err(w.build())?, ErrorKind::MisalignedTensor { offset: 4, alignment: 32, .. }));
    let mut w = Tiny::llama().gguf();
    w.offset_overrides = vec![(0, 1 << 40)];
    check!(matches!(parse_err(w.build())?, ErrorKind::TensorOutOfBounds { tensor, .. } if tensor == "token_embd.weight"));
    let mut w = Tiny::llama().gguf();
    w.offset_overrides = vec![(0, u64::MAX - 31)];
    check!(matches!(parse_err(w.build())?, ErrorKind::TensorOutOfBounds { .. }));
    Ok(())
}

fn truncated_file_every_prefix_is_an_error_never_a_panic() -> CaseResult {
    let t = Tiny { layers: 1, hidden: 8, heads: 2, kv_heads: Some(1), ff: 8, vocab: 6, ..Tiny::llama() };
    let bytes = t.gguf().build();
    let full_len = bytes.len();
    let mut truncated_kinds = 0;
    for cut in 0..full_len {
        match parse(bytes[..cut].to_vec()) {
            Ok(_) => return Err(format!("prefix of {cut}/{full_len} bytes parsed")),
            Err(e) => {
                // A count checked against the bytes left is how a cut inside the counts shows.
                if matches!(*e.kind, ErrorKind::Truncated { .. } | ErrorKind::TensorOutOfBounds { .. } | ErrorKind::CountTooLarge { .. }) {
                    truncated_kinds += 1;
                }
            }
        }
    }
    // Cuts in the header: "truncated"; cuts in the data: "out of bounds".
    check_eq!(truncated_kinds, full_len, "every cut is reported as truncation");
    check!(parse(bytes).is_ok());
    Ok(())
}

fn bad_utf8_key_and_value() -> CaseResult {
    let mut b = GgufWriter::new().kv("general.name", Value::String("abc".into())).build();
    let at = b.windows(3).position(|w| w == b"abc").must()?;
    b[at] = 0xff;
    check!(matches!(parse_err(b)?, ErrorKind::BadUtf8 { what, .. } if what.contains("general.name")));
    let mut b = GgufWriter::new().kv("general.name", Value::String("abc".into())).build();
    let at = b.windows(4).position(|w| w == b"gene").must()?;
    b[at] = 0xc3;
    check!(matches!(parse_err(b)?, ErrorKind::BadUtf8 { what, .. } if what.contains("key of metadata entry 0")));
    Ok(())
}

fn bad_value_type_bool_and_nesting() -> CaseResult {
    let mut b = GgufWriter::new().kv("k", Value::U32(7)).build();
    b[24 + 8 + 1..24 + 8 + 1 + 4].copy_from_slice(&99u32.to_le_bytes());
    check_eq!(parse_err(b)?, ErrorKind::BadValueType { key: "k".into(), type_id: 99 });
    let mut b = GgufWriter::new().kv("k", Value::Bool(true)).build();
    b[24 + 8 + 1 + 4] = 2; // header, key "k", type, then the bool byte
    check_eq!(parse_err(b)?, ErrorKind::BadBool { key: "k".into(), value: 2 });
    let mut deep = Array::U8(vec![1]);
    for _ in 0..9 {
        deep = Array::Array(vec![deep]);
    }
    let b = GgufWriter::new().kv("deep", Value::Array(deep)).build();
    check!(matches!(parse_err(b)?, ErrorKind::NestingTooDeep { .. }));
    Ok(())
}

fn duplicate_keys_and_tensors() -> CaseResult {
    let mut w = GgufWriter::new().kv("a", Value::U8(1));
    w.kvs.push(("a".into(), Value::U8(2)));
    check_eq!(parse_err(w.build())?, ErrorKind::DuplicateKey { key: "a".into() });
    let mut w = Tiny::llama().gguf();
    let t = w.tensors[0].clone();
    w.tensors.push(t);
    check!(matches!(parse_err(w.build())?, ErrorKind::DuplicateTensor { name } if name == "token_embd.weight"));
    Ok(())
}

fn bad_alignment_and_partial_blocks() -> CaseResult {
    let w = Tiny::llama().gguf().kv("general.alignment", Value::U32(24));
    check_eq!(parse_err(w.build())?, ErrorKind::BadAlignment { alignment: 24 });
    let w = Tiny::llama().gguf().kv("general.alignment", Value::U64(64));
    check!(matches!(parse_err(w.build())?, ErrorKind::BadKeyType { .. }));
    let mut w = Tiny::llama().gguf().kv("general.alignment", Value::U32(64));
    w.alignment = 64;
    check_eq!(GgufHeader::read(&SliceSource::new("t", w.build())).must()?.alignment, 64);
    // Q4_K blocks hold 256 values; a 64-wide row is not a whole block.
    let mut b = GgufWriter::new().tensor("x.weight", &[2, 256], DType::Q4K).build();
    let dims = b.windows(8).position(|w| w == b"x.weight").must()? + 8 + 4; // name, n_dims
    let at = dims + b[dims..].windows(8).position(|w| w == 256u64.to_le_bytes()).must()?;
    b[at..at + 8].copy_from_slice(&64u64.to_le_bytes());
    check!(matches!(parse_err(b)?, ErrorKind::BadTensorSize { reason, .. } if reason.contains("block size 256")));
    Ok(())
}

fn unknown_ggml_type_and_too_many_dims() -> CaseResult {
    let mut b = GgufWriter::new().tensor("x.weight", &[4], DType::F32).build();
    let at = b.windows(8).position(|w| w == b"x.weight").must()? + 8 + 4 + 8; // name, n_dims, dim
    b[at..at + 4].copy_from_slice(&4u32.to_le_bytes()); // Q4_2: retired
    check!(matches!(parse_err(b)?, ErrorKind::UnknownGgmlType { type_id: 4, .. }));
    let b = GgufWriter::new().tensor("x.weight", &[1, 1, 1, 1, 4], DType::F32).build();
    check!(matches!(parse_err(b)?, ErrorKind::TooManyDims { n_dims: 5, .. }));
    Ok(())
}

fn every_metadata_type_round_trips() -> CaseResult {
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
        ("arr_str", Value::Array(Array::String(["a", "", "ü"].into_iter().collect()))),
        ("arr_f32", Value::Array(Array::F32(vec![1.0, -0.5]))),
        ("arr_bool", Value::Array(Array::Bool(vec![true, false]))),
        ("arr_i64", Value::Array(Array::I64(vec![-1, 1]))),
        ("arr_nested", Value::Array(Array::Array(vec![Array::U16(vec![1, 2]), Array::String(["x"].into_iter().collect())]))),
        ("arr_empty", Value::Array(Array::U8(vec![]))),
    ];
    let mut w = GgufWriter::new();
    for (k, v) in &values {
        w = w.kv(k, v.clone());
    }
    let h = GgufHeader::read(&SliceSource::new("t", w.build())).must()?;
    check_eq!(h.metadata.len(), values.len());
    for (k, v) in &values {
        check_eq!(h.get(k), Some(v), "{k}");
    }
    Ok(())
}

fn tensor_byte_sizes_for_every_ggml_type() -> CaseResult {
    // Two rows of 256 elements (a whole block for every format), checked against the
    // writer's own size arithmetic and the data offsets the writer laid out.
    let mut w = GgufWriter::new();
    for &d in strata::quant::ALL_DTYPES.iter().filter(|d| d.ggml_id().is_some()) {
        let (block, _) = d.block();
        let row = 256u64.max(block).div_ceil(block) * block;
        w = w.tensor(&format!("t{}.weight", d.name()), &[2, row], d);
    }
    let h = GgufHeader::read(&SliceSource::new("t", w.build())).must()?;
    for t in &h.tensors {
        check_eq!(t.nbytes, crate::ggml_nbytes(t.dtype, &t.shape().0), "{}", t.name);
    }
    Ok(())
}


fn layer_count_beyond_the_tensor_table_is_refused_before_allocating() -> CaseResult {
    // Found by the fuzzer: 2^21 claimed layers in a file of 14 tensors.
    let a = analyze_bytes(Tiny::llama().gguf().kv("llama.block_count", Value::U32(0x0020_0001)).build())?;
    check!(a.config.is_none());
    check_eq!(a.errors.len(), 1, "{:?}", a.errors);
    check!(matches!(a.errors[0].kind(), ErrorKind::InvalidConfig { message } if message.contains("2097153")));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_can_fail() {
        // `valid` on a broken file and a wrong `check_eq!` both come back as errors.
        let e = valid(&Tiny::llama().gguf().remove_tensor("blk.1.ffn_gate.weight")).unwrap_err();
        assert!(e.contains("expected valid") && e.contains("blk.1.ffn_gate.weight"), "{e}");
        let wrong = || -> CaseResult {
            check_eq!(valid(&Tiny::llama().gguf())?.head_dim, 15);
            Ok(())
        };
        assert!(wrong().unwrap_err().contains("16 vs 15"));
    }
}
