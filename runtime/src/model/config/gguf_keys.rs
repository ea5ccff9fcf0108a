//! GGUF metadata keys -> [`Params`]: typed reads, wrong types and invalid values reported.

use super::*;
use crate::model::gguf::{Array, GgufHeader, Value};

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
    // llama.cpp writes expert_count only for MoE models; 0 means dense too. A MoE model
    // must say how many experts a token uses.
    let experts = k.key("expert_count");
    if h.get(&experts).and_then(Value::as_u64) != Some(0) {
        p.n_experts = k.positive(&experts);
    }
    if p.n_experts.is_some() {
        p.n_experts_used = k.required(&k.key("expert_used_count"));
        p.expert_intermediate_size = k.positive(&k.key("expert_feed_forward_length"));
    }
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
