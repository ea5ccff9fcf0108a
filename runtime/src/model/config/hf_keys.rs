//! config.json (and generation_config.json) -> [`Params`]: typed reads of the fields each
//! architecture's transformers class uses, nested `text_config` included.

use serde_json::Value as Json;

use super::*;
use crate::arch::activation_from_hf;

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
    // Mixtral and gpt-oss: num_local_experts; Qwen-MoE and OLMoE: num_experts (0: dense).
    if let Some(field) = ["num_local_experts", "num_experts"].into_iter().find(|f| k.get(f).is_some_and(|(v, _)| v.as_u64() != Some(0))) {
        p.n_experts = k.positive(field);
    }
    if p.n_experts.is_some() {
        p.n_experts_used = k.required("num_experts_per_tok");
        p.expert_intermediate_size = k.positive("moe_intermediate_size");
    }
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
