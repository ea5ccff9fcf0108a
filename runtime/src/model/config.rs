//! `ModelConfig`: the hyperparameters of a model, built the same way for both formats —
//! derive a default, then override from an optional key, then validate — with the source
//! of every value recorded (`provenance`).
//!
//! The format readers (`from_gguf`, `from_hf`) only translate keys into a [`Params`]
//! draft; everything that derives, defaults or validates is in [`finish`], once.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value as Json;

use crate::arch::{activation_from_hf, Arch, SlidingPattern};
use crate::error::{Error, ErrorKind};
use crate::model::gguf::{Array, GgufHeader, Value};
use crate::quant::DType;

/// Where a config value came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Source {
    /// A GGUF metadata key.
    GgufKey(String),
    /// A config.json field (dotted path for nested fields).
    ConfigJson(String),
    /// A generation_config.json field.
    GenerationConfig(String),
    /// Read off the tensor table (a shape, or a tensor's absence).
    Tensor(String),
    /// Computed from other values.
    Derived(String),
    /// Fixed by the architecture or the reference implementation when the file is silent.
    Default(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::GgufKey(k) => write!(f, "gguf key {k}"),
            Source::ConfigJson(k) => write!(f, "config.json {k}"),
            Source::GenerationConfig(k) => write!(f, "generation_config.json {k}"),
            Source::Tensor(t) => write!(f, "tensor table: {t}"),
            Source::Derived(d) => write!(f, "derived: {d}"),
            Source::Default(d) => write!(f, "default: {d}"),
        }
    }
}

/// The op set's vocabulary (defined with the backends, which must not depend on the
/// model configuration).
pub use crate::backend::{Activation, RopeStyle};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    None,
    Linear { factor: f32 },
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_context_length: u32 },
    /// `attn_factor` is the final scale of cos/sin (YaRN's mscale included).
    Yarn { factor: f32, original_context_length: u32, beta_fast: f32, beta_slow: f32, attn_factor: f32 },
    /// Per-frequency factors stored as tensors (llama.cpp `rope_freqs`, Phi-3 LongRoPE).
    FactorTensors { tensors: Vec<String> },
    /// Phi-3 LongRoPE factors from config.json.
    LongRope { original_context_length: u32, long_factor: Vec<f32>, short_factor: Vec<f32> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    Rms,
}

/// Attention kind of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerAttention {
    Global,
    /// Sliding-window attention over the last `sliding_window` positions.
    Local,
}

/// The hyperparameters of a model: everything the engine needs to know about shapes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelConfig {
    pub architecture: Arch,
    pub n_layers: u32,
    pub hidden_size: u32,
    /// FFN width (per branch; a fused gate|up tensor is twice this).
    pub intermediate_size: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    /// Query/key head dimension.
    pub head_dim: u32,
    /// Value head dimension (equal to `head_dim` in every supported model so far).
    pub head_dim_v: u32,
    /// Leading dims of each head that RoPE rotates (`< head_dim` for partial rotary).
    pub rope_dim: u32,
    pub rope_style: RopeStyle,
    /// RoPE frequency base of global layers.
    pub rope_base: f32,
    /// RoPE frequency base of local (sliding-window) layers, when it differs (Gemma 3).
    pub rope_base_local: Option<f32>,
    pub rope_scaling: RopeScaling,
    pub sliding_window: Option<u32>,
    /// One entry per layer.
    pub layer_attention: Vec<LayerAttention>,
    pub norm: NormKind,
    pub norm_eps: f32,
    /// Added to every norm weight before use (1.0 for HF Gemma checkpoints, whose RMSNorm
    /// computes `x * (1 + w)`; 0.0 where the file already stores `1 + w`, as GGUF does).
    pub norm_weight_offset: f32,
    pub activation: Activation,
    pub vocab_size: u32,
    pub context_length: u32,
    /// The output head is the token embedding tensor (one buffer).
    pub tied_embeddings: bool,
    /// Q/K/V projections have biases (Qwen2; optional in Llama).
    pub attn_bias: bool,
    pub attn_output_bias: bool,
    /// Per-head RMSNorm on Q and K (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Q|K|V is one tensor (Phi-3).
    pub fused_qkv: bool,
    /// gate|up is one tensor (Phi-3).
    pub fused_gate_up: bool,
    /// Embeddings are multiplied by this (Gemma: sqrt(hidden)).
    pub embedding_scale: Option<f32>,
    /// Scale applied to QK^T (1/sqrt(head_dim) unless the model says otherwise).
    pub attention_scale: f32,
    pub attn_logit_softcap: Option<f32>,
    pub final_logit_softcap: Option<f32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    /// Every token that ends generation (eos, eot, eom, end-of-turn...).
    pub eog_token_ids: Vec<u32>,
    /// The dtype holding most of the weight bytes (BF16 stays BF16, never "f16").
    pub native_dtype: DType,
    /// What the file declares (`general.file_type`, `torch_dtype`), when it does.
    pub declared_dtype: Option<String>,
    /// Where each field above came from, by field name.
    pub provenance: BTreeMap<&'static str, Source>,
}

impl Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Serialize for DType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A value with its source.
pub type Sourced<T> = Option<(T, Source)>;

/// What a format reader found, before deriving and validating. `None` = absent.
#[derive(Default, Debug)]
pub struct Params {
    pub n_layers: Sourced<u32>,
    pub hidden_size: Sourced<u32>,
    pub intermediate_size: Sourced<u32>,
    pub n_heads: Sourced<u32>,
    pub n_kv_heads: Sourced<u32>,
    pub head_dim: Sourced<u32>,
    pub head_dim_v: Sourced<u32>,
    pub rope_dim: Sourced<u32>,
    pub partial_rotary_factor: Sourced<f32>,
    pub rope_base: Sourced<f32>,
    pub rope_base_local: Sourced<f32>,
    pub rope_scaling: Sourced<RopeScaling>,
    pub sliding_window: Sourced<u32>,
    /// Explicit per-layer kinds (HF `layer_types`).
    pub layer_types: Sourced<Vec<LayerAttention>>,
    /// Explicit local/global period (HF `sliding_window_pattern`).
    pub sliding_period: Sourced<u32>,
    pub norm_eps: Sourced<f32>,
    pub activation: Sourced<Activation>,
    pub vocab_size: Sourced<u32>,
    /// Vocabulary size implied by the tokenizer (GGUF token list), checked against the rest.
    pub tokenizer_vocab: Sourced<u32>,
    pub context_length: Sourced<u32>,
    pub tied_embeddings: Sourced<bool>,
    pub query_pre_attn_scalar: Sourced<f32>,
    pub attn_logit_softcap: Sourced<f32>,
    pub final_logit_softcap: Sourced<f32>,
    pub bos_token_id: Sourced<u32>,
    pub eos_token_id: Sourced<u32>,
    pub eog_token_ids: Vec<(u32, Source)>,
    pub declared_dtype: Sourced<String>,
    /// true for config.json, false for GGUF: picks the architecture's rope style and
    /// norm-weight convention for that weight layout.
    pub hf_layout: bool,
}

/// Collects errors while reading keys so that all problems are reported together.
pub(crate) struct Errs<'a> {
    pub file: &'a str,
    pub list: Vec<Error>,
}

impl Errs<'_> {
    pub fn push(&mut self, kind: ErrorKind) {
        self.list.push(Error::new(self.file, kind));
    }
}

// ---------------------------------------------------------------------------------------
// GGUF keys -> Params

/// Typed access to GGUF keys, reporting wrong types and invalid values as errors.
struct GgufKeys<'a, 'e> {
    h: &'a GgufHeader,
    arch: &'a str,
    errs: &'a mut Errs<'e>,
}

impl GgufKeys<'_, '_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    fn bad_type(&mut self, key: &str, expected: &str, v: &Value) {
        self.errs.push(ErrorKind::BadKeyType { key: format!("GGUF key {key}"), expected: expected.into(), found: v.type_name() });
    }

    /// A positive integer (0 is refused: a present key never yields 0). Per-layer arrays
    /// (some files store head counts per layer) are accepted when all entries agree.
    fn positive(&mut self, key: &str) -> Sourced<u32> {
        let v = self.h.get(key)?;
        let n = match v {
            Value::Array(a) => match a.to_u64s() {
                Some(vals) if !vals.is_empty() && vals.iter().all(|&x| x == vals[0]) => Some(vals[0]),
                Some(vals) if !vals.is_empty() => {
                    self.errs.push(ErrorKind::BadValue {
                        key: format!("GGUF key {key}"),
                        value: format!("{vals:?}"),
                        reason: "per-layer values that differ are not supported".into(),
                    });
                    return None;
                }
                _ => None,
            },
            _ => v.as_u64(),
        };
        match n {
            None => {
                self.bad_type(key, "a non-negative integer", v);
                None
            }
            Some(0) => {
                self.errs.push(ErrorKind::BadValue { key: format!("GGUF key {key}"), value: "0".into(), reason: "must be > 0".into() });
                None
            }
            Some(n) => match u32::try_from(n) {
                Ok(n) => Some((n, Source::GgufKey(key.into()))),
                Err(_) => {
                    self.errs.push(ErrorKind::BadValue { key: format!("GGUF key {key}"), value: n.to_string(), reason: "does not fit in 32 bits".into() });
                    None
                }
            },
        }
    }

    fn required(&mut self, key: &str) -> Sourced<u32> {
        if self.h.get(key).is_none() {
            self.errs.push(ErrorKind::MissingKey { key: format!("GGUF key {key}") });
            return None;
        }
        self.positive(key)
    }

    /// A finite, positive float.
    fn positive_f32(&mut self, key: &str) -> Sourced<f32> {
        let v = self.h.get(key)?;
        match v.as_f64() {
            Some(x) if x.is_finite() && x > 0.0 => Some((x as f32, Source::GgufKey(key.into()))),
            Some(x) => {
                self.errs.push(ErrorKind::BadValue { key: format!("GGUF key {key}"), value: x.to_string(), reason: "must be finite and > 0".into() });
                None
            }
            None => {
                self.bad_type(key, "a number", v);
                None
            }
        }
    }

    fn token_id(&mut self, key: &str) -> Sourced<u32> {
        let v = self.h.get(key)?;
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some((n, Source::GgufKey(key.into()))),
            None => {
                self.bad_type(key, "a token id (u32)", v);
                None
            }
        }
    }

    fn string(&mut self, key: &str) -> Option<&str> {
        let v = self.h.get(key)?;
        if v.as_str().is_none() {
            self.bad_type(key, "a string", v);
        }
        v.as_str()
    }
}

/// Token texts that end a turn or generation (llama.cpp's end-of-generation list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "<|end_of_text|>", "<｜end▁of▁sentence｜>",
];

/// Reads the GGUF keys of `arch` into a draft.
pub(crate) fn from_gguf(h: &GgufHeader, arch_key: &str, errs: &mut Errs) -> Params {
    let mut k = GgufKeys { h, arch: arch_key, errs };
    let mut p = Params { hf_layout: false, ..Params::default() };
    p.n_layers = k.required(&k.key("block_count"));
    p.hidden_size = k.required(&k.key("embedding_length"));
    p.intermediate_size = k.required(&k.key("feed_forward_length"));
    p.n_heads = k.required(&k.key("attention.head_count"));
    p.context_length = k.required(&k.key("context_length"));
    p.n_kv_heads = k.positive(&k.key("attention.head_count_kv"));
    p.head_dim = k.positive(&k.key("attention.key_length"));
    p.head_dim_v = k.positive(&k.key("attention.value_length"));
    p.rope_dim = k.positive(&k.key("rope.dimension_count"));
    p.rope_base = k.positive_f32(&k.key("rope.freq_base"));
    p.rope_base_local = k.positive_f32(&k.key("rope.freq_base_swa"));
    p.sliding_window = k.positive(&k.key("attention.sliding_window"));
    p.sliding_period = k.positive(&k.key("attention.sliding_window_pattern"));
    p.vocab_size = k.positive(&k.key("vocab_size"));
    p.attn_logit_softcap = k.positive_f32(&k.key("attn_logit_softcapping"));
    p.final_logit_softcap = k.positive_f32(&k.key("final_logit_softcapping"));
    let rms = k.key("attention.layer_norm_rms_epsilon");
    p.norm_eps = k.positive_f32(&rms);
    if p.norm_eps.is_none() && h.get(&rms).is_none() {
        k.errs.push(ErrorKind::MissingKey { key: format!("GGUF key {rms}") });
    }

    // RoPE scaling: keys when present (linear, yarn); Llama 3 and LongRoPE factors are
    // tensors in GGUF and are picked up from the tensor table in `finish`.
    let scaling_key = k.key("rope.scaling.type");
    if let Some(kind) = k.string(&scaling_key).map(str::to_owned) {
        let factor = k.positive_f32(&k.key("rope.scaling.factor")).map(|v| v.0);
        let orig = k.positive(&k.key("rope.scaling.original_context_length")).map(|v| v.0);
        let src = Source::GgufKey(scaling_key.clone());
        let scaling = match kind.as_str() {
            "none" => Some(RopeScaling::None),
            "linear" => factor.map(|factor| RopeScaling::Linear { factor }),
            "yarn" => factor.map(|factor| RopeScaling::Yarn {
                factor,
                original_context_length: orig.unwrap_or(0),
                beta_fast: k.positive_f32(&k.key("rope.scaling.yarn_beta_fast")).map_or(32.0, |v| v.0),
                beta_slow: k.positive_f32(&k.key("rope.scaling.yarn_beta_slow")).map_or(1.0, |v| v.0),
                // llama.cpp scales cos/sin by attn_factor * (1 + 0.1 ln factor).
                attn_factor: k.positive_f32(&k.key("rope.scaling.attn_factor")).map_or(1.0, |v| v.0) * yarn_mscale(factor, 1.0),
            }),
            "longrope" => None, // factors come as tensors
            other => {
                k.errs.push(ErrorKind::BadValue {
                    key: format!("GGUF key {scaling_key}"),
                    value: other.into(),
                    reason: "unknown RoPE scaling type (known: none, linear, yarn, longrope)".into(),
                });
                None
            }
        };
        if scaling.is_none() && matches!(kind.as_str(), "linear" | "yarn") {
            k.errs.push(ErrorKind::MissingKey { key: format!("GGUF key {} (needed by {kind} scaling)", k.key("rope.scaling.factor")) });
        }
        p.rope_scaling = scaling.map(|s| (s, src));
    }

    p.bos_token_id = k.token_id("tokenizer.ggml.bos_token_id");
    p.eos_token_id = k.token_id("tokenizer.ggml.eos_token_id");
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(id) = k.token_id(key) {
            p.eog_token_ids.push(id);
        }
    }
    match h.get("tokenizer.ggml.tokens") {
        Some(Value::Array(Array::String(tokens))) => {
            if let Ok(n) = u32::try_from(tokens.len()) {
                if n > 0 {
                    p.tokenizer_vocab = Some((n, Source::GgufKey("tokenizer.ggml.tokens (length)".into())));
                }
            }
            for (id, text) in tokens.iter().enumerate() {
                if EOG_TEXTS.contains(&text) {
                    let src = Source::GgufKey(format!("tokenizer.ggml.tokens[{id}] = {text:?}"));
                    p.eog_token_ids.push((id as u32, src));
                }
            }
        }
        Some(other) => k.bad_type("tokenizer.ggml.tokens", "an array of strings", other),
        None => {}
    }
    if let Some(Value::U32(ft)) = h.get("general.file_type") {
        let name = crate::quant::llama_file_type_name(*ft).map_or_else(|| format!("file_type {ft}"), str::to_owned);
        p.declared_dtype = Some((name, Source::GgufKey("general.file_type".into())));
    }
    p
}

// ---------------------------------------------------------------------------------------
// config.json -> Params

/// Typed access to config.json fields.
struct HfKeys<'a, 'e> {
    root: &'a Json,
    /// `text_config` for multimodal wrappers (Gemma 3 4B+), else the root.
    text: &'a Json,
    prefix: &'static str,
    errs: &'a mut Errs<'e>,
}

impl<'a> HfKeys<'a, '_> {
    fn get(&self, field: &str) -> Option<(&'a Json, String)> {
        match self.text.get(field) {
            Some(Json::Null) | None => {}
            Some(v) => return Some((v, format!("{}{field}", self.prefix))),
        }
        match self.root.get(field) {
            Some(Json::Null) | None => None,
            Some(v) => Some((v, field.to_owned())),
        }
    }

    fn bad(&mut self, field: &str, expected: &str, v: &Json) {
        self.errs.push(ErrorKind::BadKeyType { key: format!("config.json {field}"), expected: expected.into(), found: v.to_string() });
    }

    fn positive(&mut self, field: &str) -> Sourced<u32> {
        let (v, path) = self.get(field)?;
        match v.as_u64() {
            Some(0) => {
                self.errs.push(ErrorKind::BadValue { key: format!("config.json {path}"), value: "0".into(), reason: "must be > 0".into() });
                None
            }
            Some(n) if n <= u64::from(u32::MAX) => Some((n as u32, Source::ConfigJson(path))),
            _ => {
                self.bad(&path, "a positive 32-bit integer", v);
                None
            }
        }
    }

    fn required(&mut self, field: &str) -> Sourced<u32> {
        if self.get(field).is_none() {
            self.errs.push(ErrorKind::MissingKey { key: format!("config.json field {field}") });
            return None;
        }
        self.positive(field)
    }

    fn positive_f32(&mut self, field: &str) -> Sourced<f32> {
        let (v, path) = self.get(field)?;
        json_positive_f32(self.errs, v, path)
    }

    fn boolean(&mut self, field: &str) -> Sourced<bool> {
        let (v, path) = self.get(field)?;
        match v.as_bool() {
            Some(b) => Some((b, Source::ConfigJson(path))),
            None => {
                self.bad(&path, "true or false", v);
                None
            }
        }
    }

    fn string(&mut self, field: &str) -> Option<(String, String)> {
        let (v, path) = self.get(field)?;
        match v.as_str() {
            Some(s) => Some((s.to_owned(), path)),
            None => {
                self.bad(&path, "a string", v);
                None
            }
        }
    }

    /// A token id or a list of them (`eos_token_id: [1, 106]`). Token ids belong to the
    /// whole model (its tokenizer), so a multimodal wrapper's top level wins over
    /// `text_config`.
    fn token_ids(&mut self, field: &str) -> Vec<(u32, Source)> {
        let root = self.root.get(field).filter(|v| !v.is_null()).map(|v| (v, field.to_owned()));
        let Some((v, path)) = root.or_else(|| self.get(field)) else { return Vec::new() };
        let ids: Option<Vec<u32>> = match v {
            Json::Array(items) => items.iter().map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok())).collect(),
            other => other.as_u64().and_then(|n| u32::try_from(n).ok()).map(|n| vec![n]),
        };
        match ids {
            Some(ids) => ids.into_iter().map(|id| (id, Source::ConfigJson(path.clone()))).collect(),
            None => {
                self.bad(&path, "a token id or a list of token ids", v);
                Vec::new()
            }
        }
    }
}

/// YaRN's attention scale for a context extension `factor`: `0.1 * m * ln(factor) + 1`.
pub fn yarn_mscale(factor: f32, m: f32) -> f32 {
    if factor <= 1.0 {
        1.0
    } else {
        0.1 * m * factor.ln() + 1.0
    }
}

/// A finite, positive number at `path` of config.json; anything else is a `BadKeyType`.
fn json_positive_f32(errs: &mut Errs, v: &Json, path: String) -> Sourced<f32> {
    match v.as_f64() {
        Some(x) if x.is_finite() && x > 0.0 => Some((x as f32, Source::ConfigJson(path))),
        _ => {
            errs.push(ErrorKind::BadKeyType { key: format!("config.json {path}"), expected: "a finite number > 0".into(), found: v.to_string() });
            None
        }
    }
}

fn f32_list(v: Option<&Json>) -> Option<Vec<f32>> {
    v?.as_array()?.iter().map(|x| x.as_f64().map(|f| f as f32)).collect()
}

/// The RoPE scaling described by one HF parameter object (`rope_scaling`, or an entry of
/// `rope_parameters`), whose kind is `rope_type` (older files: `type`).
fn hf_rope_scaling(errs: &mut Errs, v: &Json, path: &str, context: Option<u32>) -> Sourced<RopeScaling> {
    let src = Source::ConfigJson(path.to_owned());
    let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(Json::as_str).unwrap_or("default").to_owned();
    let num = |name: &str| v.get(name).and_then(Json::as_f64).map(|x| x as f32);
    let orig = v
        .get("original_max_position_embeddings")
        .and_then(Json::as_u64)
        .and_then(|n| u32::try_from(n).ok());
    let factor = num("factor");
    let scaling = match (kind.as_str(), factor) {
        ("default", _) => Some(RopeScaling::None),
        ("linear", Some(factor)) => Some(RopeScaling::Linear { factor }),
        ("llama3", Some(factor)) => Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor: num("low_freq_factor").unwrap_or(1.0),
            high_freq_factor: num("high_freq_factor").unwrap_or(4.0),
            original_context_length: orig.unwrap_or(8192),
        }),
        ("yarn", Some(factor)) => Some(RopeScaling::Yarn {
            factor,
            original_context_length: orig.or(context).unwrap_or(0),
            beta_fast: num("beta_fast").unwrap_or(32.0),
            beta_slow: num("beta_slow").unwrap_or(1.0),
            // transformers: `attention_factor`, else mscale(factor [, mscale, mscale_all_dim]).
            attn_factor: num("attention_factor").unwrap_or_else(|| match (num("mscale"), num("mscale_all_dim")) {
                (Some(m), Some(a)) if m != 0.0 && a != 0.0 => yarn_mscale(factor, m) / yarn_mscale(factor, a),
                _ => yarn_mscale(factor, 1.0),
            }),
        }),
        ("longrope", _) => match (f32_list(v.get("long_factor")), f32_list(v.get("short_factor"))) {
            (Some(long_factor), Some(short_factor)) => Some(RopeScaling::LongRope {
                original_context_length: orig.unwrap_or(4096),
                long_factor,
                short_factor,
            }),
            _ => None,
        },
        _ => None,
    };
    if scaling.is_none() {
        errs.push(ErrorKind::BadValue {
            key: format!("config.json {path}"),
            value: v.to_string(),
            reason: "unsupported or incomplete RoPE scaling (known: default, linear, llama3, yarn, longrope; each with its factor)".into(),
        });
    }
    scaling.map(|s| (s, src))
}

/// RoPE base, local base and scaling: `rope_parameters` (transformers >= 4.56: one object,
/// or one per layer type) or the older `rope_theta` / `rope_scaling` / `rope_local_base_freq`.
fn hf_rope(k: &mut HfKeys, p: &mut Params) {
    let context = p.context_length.as_ref().map(|c| c.0);
    let Some((params, path)) = k.get("rope_parameters") else {
        p.rope_base = k.positive_f32("rope_theta");
        p.rope_base_local = k.positive_f32("rope_local_base_freq");
        if let Some((v, path)) = k.get("rope_scaling") {
            p.rope_scaling = hf_rope_scaling(k.errs, v, &path, context);
        }
        return;
    };
    let theta = |errs: &mut Errs, obj: &Json, path: &str| -> Sourced<f32> {
        json_positive_f32(errs, obj.get("rope_theta")?, format!("{path}.rope_theta"))
    };
    let (global, global_path) = match params.get("full_attention") {
        Some(g) => (g, format!("{path}.full_attention")),
        None => (params, path.clone()),
    };
    p.rope_base = theta(k.errs, global, &global_path);
    p.rope_scaling = hf_rope_scaling(k.errs, global, &global_path, context);
    if let Some(f) = global.get("partial_rotary_factor") {
        match f.as_f64() {
            Some(x) if x > 0.0 && x <= 1.0 => p.partial_rotary_factor = Some((x as f32, Source::ConfigJson(format!("{global_path}.partial_rotary_factor")))),
            _ => k.errs.push(ErrorKind::BadValue {
                key: format!("config.json {global_path}.partial_rotary_factor"),
                value: f.to_string(),
                reason: "must be in (0, 1]".into(),
            }),
        }
    }
    if let Some(local) = params.get("sliding_attention") {
        let local_path = format!("{path}.sliding_attention");
        p.rope_base_local = theta(k.errs, local, &local_path);
        if let Some((scaling, _)) = hf_rope_scaling(k.errs, local, &local_path, context) {
            if scaling != RopeScaling::None {
                k.errs.push(ErrorKind::BadValue {
                    key: format!("config.json {local_path}"),
                    value: local.to_string(),
                    reason: "RoPE scaling on sliding-window layers is not supported".into(),
                });
            }
        }
    }
}

/// Reads config.json (and generation_config.json) into a draft.
pub(crate) fn from_hf(config: &Json, generation: Option<&Json>, arch: Arch, errs: &mut Errs) -> Params {
    let (text, prefix) = match config.get("text_config") {
        Some(t @ Json::Object(_)) => (t, "text_config."),
        _ => (config, ""),
    };
    let mut k = HfKeys { root: config, text, prefix, errs };
    let spec = arch.spec();
    let mut p = Params { hf_layout: true, ..Params::default() };
    p.n_layers = k.required("num_hidden_layers");
    p.hidden_size = k.required("hidden_size");
    p.intermediate_size = k.required("intermediate_size");
    p.n_heads = k.required("num_attention_heads");
    p.vocab_size = k.required("vocab_size");
    p.context_length = k.required("max_position_embeddings");
    p.n_kv_heads = k.positive("num_key_value_heads");
    p.head_dim = k.positive("head_dim");
    p.partial_rotary_factor = k.positive_f32("partial_rotary_factor");
    p.norm_eps = k.positive_f32("rms_norm_eps");
    p.query_pre_attn_scalar = k.positive_f32("query_pre_attn_scalar");
    p.attn_logit_softcap = k.positive_f32("attn_logit_softcapping");
    p.final_logit_softcap = k.positive_f32("final_logit_softcapping");
    p.tied_embeddings = k.boolean("tie_word_embeddings");
    hf_rope(&mut k, &mut p);

    // Sliding window: Qwen2 only uses it with `use_sliding_window: true`.
    let use_sw = k.boolean("use_sliding_window");
    if use_sw.as_ref().is_none_or(|(on, _)| *on) {
        p.sliding_window = k.positive("sliding_window");
    }
    p.sliding_period = k.positive("sliding_window_pattern");
    if let Some((v, path)) = k.get("layer_types") {
        let kinds: Option<Vec<LayerAttention>> = v.as_array().and_then(|items| {
            items
                .iter()
                .map(|t| match t.as_str() {
                    Some("full_attention") => Some(LayerAttention::Global),
                    Some("sliding_attention") => Some(LayerAttention::Local),
                    _ => None,
                })
                .collect()
        });
        match kinds {
            Some(kinds) => p.layer_types = Some((kinds, Source::ConfigJson(path))),
            None => {
                k.bad(&path, "a list of \"full_attention\" / \"sliding_attention\"", v);
            }
        }
    }

    let act_field = if k.get("hidden_activation").is_some() { "hidden_activation" } else { "hidden_act" };
    if let Some((name, path)) = k.string(act_field) {
        match activation_from_hf(&name) {
            Some(a) if a == spec.activation => p.activation = Some((a, Source::ConfigJson(path))),
            _ => k.errs.push(ErrorKind::BadValue {
                key: format!("config.json {path}"),
                value: name,
                reason: format!("{} uses {:?}", arch, spec.activation),
            }),
        }
    }

    p.bos_token_id = k.token_ids("bos_token_id").into_iter().next();
    let eos = k.token_ids("eos_token_id");
    p.eos_token_id = eos.first().cloned();
    p.eog_token_ids = eos;
    p.declared_dtype = k.string("torch_dtype").or_else(|| k.string("dtype")).map(|(d, path)| (d, Source::ConfigJson(path)));
    if let Some(g) = generation {
        // generation_config.json may list more end-of-generation ids (e.g. <end_of_turn>).
        let mut gk = HfKeys { root: g, text: g, prefix: "", errs: &mut *k.errs };
        let relabel = |ids: Vec<(u32, Source)>, field: &str| -> Vec<(u32, Source)> {
            ids.into_iter().map(|(id, _)| (id, Source::GenerationConfig(field.into()))).collect()
        };
        p.eog_token_ids.extend(relabel(gk.token_ids("eos_token_id"), "eos_token_id"));
        if p.bos_token_id.is_none() {
            p.bos_token_id = relabel(gk.token_ids("bos_token_id"), "bos_token_id").into_iter().next();
        }
    }
    p
}

// ---------------------------------------------------------------------------------------
// Params -> ModelConfig: derive, override, validate (shared by both formats)

/// What the tensor table tells the config (presence of optional tensors, shapes).
pub(crate) trait TensorFacts {
    fn has(&self, id: crate::arch::TensorId) -> bool;
    fn shape(&self, id: crate::arch::TensorId) -> Option<Vec<u64>>;
    /// The dtype holding the most bytes among weight matrices, if any.
    fn dominant_weight_dtype(&self) -> Option<DType>;
    /// How many tensors the file holds (bounds what a header may claim).
    fn count(&self) -> usize;
}

/// Records a value and where it came from.
struct Prov(BTreeMap<&'static str, Source>);

impl Prov {
    fn take<T>(&mut self, field: &'static str, v: (T, Source)) -> T {
        self.0.insert(field, v.1);
        v.0
    }
}

/// Derives, overrides and validates. Returns `None` when a required value is missing or
/// invalid (every reason is in `errs`).
pub(crate) fn finish(p: Params, arch: Arch, t: &dyn TensorFacts, errs: &mut Errs) -> Option<ModelConfig> {
    use crate::arch::{Param, Part, TensorId};
    let spec = arch.spec();
    let mut pv = Prov(BTreeMap::new());
    let bad = |errs: &mut Errs, message: String| errs.push(ErrorKind::InvalidConfig { message });

    let n_layers = pv.take("n_layers", p.n_layers?);
    let hidden = pv.take("hidden_size", p.hidden_size?);
    let ff = pv.take("intermediate_size", p.intermediate_size?);
    let n_heads = pv.take("n_heads", p.n_heads?);
    let context_length = pv.take("context_length", p.context_length?);
    let layer0 = |part, param| TensorId::layer(0, part, param);
    // Every layer holds several tensors: a layer count beyond the tensor count is a lie,
    // refused before anything is sized by it (per-layer lists, expected-tensor specs).
    if n_layers as usize > t.count() {
        bad(errs, format!("n_layers = {n_layers} cannot be right: the file holds only {} tensors", t.count()));
        return None;
    }

    // n_kv_heads: default n_heads (no grouped-query attention), override from the key.
    let n_kv_heads = pv.take(
        "n_kv_heads",
        p.n_kv_heads.unwrap_or((n_heads, Source::Derived(format!("= n_heads ({n_heads}): no kv-head key, no GQA")))),
    );
    let mut ok = true;
    if n_heads % n_kv_heads != 0 {
        bad(errs, format!("n_heads ({n_heads}) is not divisible by n_kv_heads ({n_kv_heads})"));
        ok = false;
    }

    // head_dim: derive hidden / n_heads, then override from an explicit key.
    let derived_head_dim = (hidden % n_heads == 0)
        .then(|| (hidden / n_heads, Source::Derived(format!("hidden_size / n_heads = {hidden} / {n_heads}"))));
    let head_dim = match (p.head_dim, derived_head_dim) {
        (Some(explicit), _) => pv.take("head_dim", explicit),
        (None, Some(derived)) => pv.take("head_dim", derived),
        (None, None) => {
            bad(errs, format!("hidden_size ({hidden}) is not divisible by n_heads ({n_heads}) and the file gives no head_dim"));
            return None;
        }
    };
    let head_dim_v = pv.take(
        "head_dim_v",
        p.head_dim_v.unwrap_or((head_dim, Source::Derived(format!("= head_dim ({head_dim})")))),
    );

    // rope_dim: derive head_dim (times partial_rotary_factor), override from the key.
    let derived_rope = match p.partial_rotary_factor {
        Some((f, src)) if f < 1.0 => {
            ((head_dim as f32 * f) as u32, Source::Derived(format!("head_dim * partial_rotary_factor = {head_dim} * {f} ({src})")))
        }
        _ => (head_dim, Source::Derived(format!("= head_dim ({head_dim})"))),
    };
    let rope_dim = pv.take("rope_dim", p.rope_dim.unwrap_or(derived_rope));
    if rope_dim > head_dim || rope_dim % 2 != 0 || rope_dim == 0 {
        bad(errs, format!("rope_dim ({rope_dim}) must be even, > 0 and at most head_dim ({head_dim})"));
        ok = false;
    }
    let rope_style = pv.take(
        "rope_style",
        if p.hf_layout {
            (spec.rope_style_hf, Source::Default(format!("{arch} HF weight layout")))
        } else {
            (spec.rope_style_gguf, Source::Default(format!("{arch} GGUF weight layout (llama.cpp)")))
        },
    );
    let default_base = if p.hf_layout { spec.hf_default_rope_theta } else { 10_000.0 };
    let rope_base = pv.take("rope_base", p.rope_base.unwrap_or((default_base, Source::Default(format!("{default_base} ({arch})")))));
    let rope_base_local = match p.rope_base_local {
        Some(v) => Some(pv.take("rope_base_local", v)),
        None => spec
            .default_rope_base_local
            .map(|b| pv.take("rope_base_local", (b, Source::Default(format!("{b} for {arch} local layers"))))),
    };

    // RoPE scaling: keys, else factor tensors (llama.cpp stores Llama 3 / LongRoPE factors).
    let factor_tensors: Vec<String> = [Part::RopeFreqs, Part::RopeFactorsLong, Part::RopeFactorsShort]
        .into_iter()
        .map(|part| TensorId::global(part, Param::Weight))
        .filter(|&id| t.has(id))
        .map(|id| id.gguf_name())
        .collect();
    let rope_scaling = pv.take(
        "rope_scaling",
        match p.rope_scaling {
            Some(s) => s,
            None if !factor_tensors.is_empty() => {
                let src = Source::Tensor(factor_tensors.join(", "));
                (RopeScaling::FactorTensors { tensors: factor_tensors }, src)
            }
            None => (RopeScaling::None, Source::Default("no scaling".into())),
        },
    );

    // Sliding window and per-layer attention kinds.
    let window_default = spec.default_window.filter(|_| matches!(spec.sliding, SlidingPattern::EvenLayersLocal | SlidingPattern::Period(_)));
    let sliding_window = match p.sliding_window {
        Some(w) => Some(pv.take("sliding_window", w)),
        None => window_default.map(|w| pv.take("sliding_window", (w, Source::Default(format!("{w} ({arch})"))))),
    };
    let layer_attention = match p.layer_types {
        Some((kinds, src)) => {
            if kinds.len() != n_layers as usize {
                bad(errs, format!("layer_types lists {} layers but the model has {n_layers} ({src})", kinds.len()));
                return None;
            }
            pv.take("layer_attention", (kinds, src))
        }
        None => {
            let (pattern, src) = match (spec.sliding, p.sliding_period) {
                (SlidingPattern::Period(_), Some((n, src))) => (SlidingPattern::Period(n), src),
                (pattern, _) => (pattern, Source::Default(format!("{arch} layer pattern {pattern:?}"))),
            };
            let kinds = (0..n_layers)
                .map(|i| match pattern {
                    SlidingPattern::None => LayerAttention::Global,
                    SlidingPattern::AllLayers if sliding_window.is_some() => LayerAttention::Local,
                    SlidingPattern::AllLayers => LayerAttention::Global,
                    SlidingPattern::EvenLayersLocal if i % 2 == 0 => LayerAttention::Local,
                    SlidingPattern::EvenLayersLocal => LayerAttention::Global,
                    SlidingPattern::Period(n) if (i + 1) % n == 0 => LayerAttention::Global,
                    SlidingPattern::Period(_) => LayerAttention::Local,
                })
                .collect();
            pv.take("layer_attention", (kinds, src))
        }
    };
    if layer_attention.contains(&LayerAttention::Local) && sliding_window.is_none() {
        bad(errs, "some layers use sliding-window attention but no window size is given".into());
        ok = false;
    }

    let norm_eps = match p.norm_eps {
        Some(v) => pv.take("norm_eps", v),
        None if p.hf_layout => pv.take("norm_eps", (spec.hf_default_eps, Source::Default(format!("{} (transformers {arch})", spec.hf_default_eps)))),
        None => return None, // required in GGUF; already reported
    };
    let norm_weight_offset = pv.take(
        "norm_weight_offset",
        if p.hf_layout {
            (spec.hf_norm_weight_offset, Source::Default(format!("{arch} HF RMSNorm convention")))
        } else {
            (0.0, Source::Default("GGUF stores the effective norm weights".into()))
        },
    );
    let activation = pv.take("activation", p.activation.unwrap_or((spec.activation, Source::Default(format!("{arch}")))));

    // Vocabulary: GGUF derives it from the token list, overridden by `vocab_size`; both
    // must agree; with neither, the embedding tensor's rows give it.
    let embd = TensorId::global(Part::TokenEmbd, Param::Weight);
    let vocab_size = match (p.vocab_size, p.tokenizer_vocab) {
        (Some((v, src)), Some((tv, tsrc))) if v != tv && !p.hf_layout => {
            bad(errs, format!("vocab_size {v} ({src}) differs from the {tv} tokens of the tokenizer ({tsrc})"));
            return None;
        }
        (Some(v), _) => pv.take("vocab_size", v),
        (None, Some(tv)) => pv.take("vocab_size", tv),
        (None, None) => match t.shape(embd).and_then(|s| s.first().copied()).and_then(|v| u32::try_from(v).ok()).filter(|&v| v > 0) {
            Some(v) => pv.take("vocab_size", (v, Source::Tensor(format!("{} rows", embd.gguf_name())))),
            None => {
                errs.push(ErrorKind::MissingKey { key: "vocabulary size (no vocab_size key, no token list, no embedding tensor)".into() });
                return None;
            }
        },
    };

    let output = TensorId::global(Part::Output, Param::Weight);
    let tied_embeddings = pv.take(
        "tied_embeddings",
        match p.tied_embeddings {
            Some(v) => v,
            None if p.hf_layout => (spec.hf_tie_default, Source::Default(format!("tie_word_embeddings = {} (transformers {arch})", spec.hf_tie_default))),
            None => (!t.has(output), Source::Tensor(format!("output.weight {}", if t.has(output) { "present" } else { "absent: head = token_embd.weight" }))),
        },
    );

    let flag = |pv: &mut Prov, field: &'static str, on: bool, why: String| pv.take(field, (on, Source::Tensor(why)));
    let q_bias = layer0(Part::AttnQ, Param::Bias);
    let qkv_bias = layer0(Part::AttnQkv, Param::Bias);
    let spec_requires = |part, param| spec.layer_tensors.iter().any(|&(p2, q2, n)| p2 == part && q2 == param && n == crate::arch::Need::Required);
    let attn_bias = if spec_requires(Part::AttnQ, Param::Bias) {
        pv.take("attn_bias", (true, Source::Default(format!("{arch} has Q/K/V biases"))))
    } else {
        let on = t.has(q_bias) || t.has(qkv_bias);
        flag(&mut pv, "attn_bias", on, format!("layer 0 Q/K/V bias {}", if on { "present" } else { "absent" }))
    };
    let o_bias = layer0(Part::AttnOutput, Param::Bias);
    let attn_output_bias = flag(&mut pv, "attn_output_bias", t.has(o_bias), format!("layer 0 output-projection bias {}", if t.has(o_bias) { "present" } else { "absent" }));
    let qk_norm = pv.take("qk_norm", (spec_requires(Part::AttnQNorm, Param::Weight), Source::Default(format!("{arch}"))));
    let quirks = &spec.quirks;
    let fused_qkv = quirks.fused_qkv && (t.has(layer0(Part::AttnQkv, Param::Weight)) || !t.has(layer0(Part::AttnQ, Param::Weight)));
    let fused_qkv = flag(&mut pv, "fused_qkv", fused_qkv, if fused_qkv { "layer 0 has one Q|K|V tensor".into() } else { "layer 0 has split Q/K/V".into() });
    let fused_gate_up = pv.take("fused_gate_up", (quirks.fused_gate_up, Source::Default(format!("{arch}"))));

    let embedding_scale = spec.embedding_scale.then(|| {
        pv.take("embedding_scale", ((hidden as f32).sqrt(), Source::Derived(format!("sqrt(hidden_size) = sqrt({hidden})"))))
    });
    let quirk_scalar = quirks.gguf_query_pre_attn_scalar.and_then(|rule| rule(&crate::arch::Dims { n_layers, hidden, n_heads }));
    let attention_scale = pv.take(
        "attention_scale",
        match p.query_pre_attn_scalar {
            Some((q, src)) => (1.0 / q.sqrt(), Source::Derived(format!("1 / sqrt(query_pre_attn_scalar = {q}) ({src})"))),
            // A GGUF without the key: the architecture's rule for its shape, if it has one.
            None if !p.hf_layout && quirk_scalar.is_some() => {
                let (q, rule) = quirk_scalar.expect("matched");
                (1.0 / q.sqrt(), Source::Derived(format!("1 / sqrt({rule} = {q})")))
            }
            None => (1.0 / (head_dim as f32).sqrt(), Source::Derived(format!("1 / sqrt(head_dim = {head_dim})"))),
        },
    );
    let default_cap = |v: Option<f32>| v.map(|v| (v, Source::Default(format!("{v} ({arch})"))));
    let attn_logit_softcap = p.attn_logit_softcap.or_else(|| default_cap(quirks.default_softcaps.0)).map(|v| pv.take("attn_logit_softcap", v));
    let final_logit_softcap = p.final_logit_softcap.or_else(|| default_cap(quirks.default_softcaps.1)).map(|v| pv.take("final_logit_softcap", v));

    let bos_token_id = p.bos_token_id.map(|v| pv.take("bos_token_id", v));
    let eos_token_id = p.eos_token_id.map(|v| pv.take("eos_token_id", v));
    let mut eog_token_ids: Vec<u32> = p.eog_token_ids.iter().map(|(id, _)| *id).collect();
    eog_token_ids.sort_unstable();
    eog_token_ids.dedup();
    if !p.eog_token_ids.is_empty() {
        let mut sources: Vec<String> = p.eog_token_ids.iter().map(|(_, s)| s.to_string()).collect();
        sources.dedup();
        pv.0.insert("eog_token_ids", Source::Derived(sources.join("; ")));
    }
    for (name, id) in [("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id)] {
        if let Some(id) = id.filter(|&id| id >= vocab_size) {
            bad(errs, format!("{name} {id} is outside the vocabulary (vocab_size {vocab_size})"));
            ok = false;
        }
    }
    eog_token_ids.retain(|&id| id < vocab_size);

    let native_dtype = pv.take(
        "native_dtype",
        match t.dominant_weight_dtype() {
            Some(d) => (d, Source::Tensor("dtype holding the most decoder-layer weight bytes".into())),
            None => (DType::F32, Source::Default("no weight matrices".into())),
        },
    );
    let declared_dtype = p.declared_dtype.map(|v| pv.take("declared_dtype", v));

    ok.then_some(ModelConfig {
        architecture: arch,
        n_layers,
        hidden_size: hidden,
        intermediate_size: ff,
        n_heads,
        n_kv_heads,
        head_dim,
        head_dim_v,
        rope_dim,
        rope_style,
        rope_base,
        rope_base_local,
        rope_scaling,
        sliding_window,
        layer_attention,
        norm: NormKind::Rms,
        norm_eps,
        norm_weight_offset,
        activation,
        vocab_size,
        context_length,
        tied_embeddings,
        attn_bias,
        attn_output_bias,
        qk_norm,
        fused_qkv,
        fused_gate_up,
        embedding_scale,
        attention_scale,
        attn_logit_softcap,
        final_logit_softcap,
        bos_token_id,
        eos_token_id,
        eog_token_ids,
        native_dtype,
        declared_dtype,
        provenance: pv.0,
    })
}
