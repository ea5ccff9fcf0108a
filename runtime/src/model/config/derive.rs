//! [`Params`] -> [`ModelConfig`]: derive, override, validate, shared by both formats, with
//! the source of every value recorded. What an architecture does differently comes from its
//! spec (`arch::ArchSpec`, `arch::Quirks`); this file names no architecture.

use super::*;
use crate::arch::SlidingPattern;

/// What the tensor table tells the config (presence of optional tensors, shapes).
pub(crate) trait TensorFacts {
    fn has(&self, id: crate::arch::TensorId) -> bool;
    fn shape(&self, id: crate::arch::TensorId) -> Option<Vec<u64>>;
    /// The dtype holding the most bytes among weight matrices, if any.
    fn dominant_weight_dtype(&self) -> Option<DType>;
    /// How many tensors the file holds (bounds what a header may claim).
    fn count(&self) -> usize;
}

/// Derives, overrides and validates. Returns `None` when a required value is missing or
/// invalid (every reason is in `errs`).
pub(crate) fn finish(p: Params, arch: Arch, t: &dyn TensorFacts, errs: &mut Errs) -> Option<ModelConfig> {
    use crate::arch::{Param, Part, TensorId};
    let spec = arch.spec();
    let mut pv = Provenance::default();
    let bad = |errs: &mut Errs, message: String| errs.push(ErrorKind::InvalidConfig { message });

    let n_layers = pv.take(Field::NLayers, p.n_layers?);
    let hidden = pv.take(Field::HiddenSize, p.hidden_size?);
    let ff = pv.take(Field::IntermediateSize, p.intermediate_size?);
    let n_experts = match p.n_experts {
        Some((n, source)) => {
            // Refused by name, not by the dense tensors a MoE file lacks.
            errs.push(ErrorKind::UnsupportedFeature { key: source.to_string(), value: n.to_string(), feature: "a mixture-of-experts feed-forward block".into() });
            pv.take(Field::NExperts, (n, source))
        }
        None => pv.take(Field::NExperts, (0, Source::Default("0: a dense feed-forward block".into()))),
    };
    let n_heads = pv.take(Field::NHeads, p.n_heads?);
    let context_length = pv.take(Field::ContextLength, p.context_length?);
    let layer0 = |part, param| TensorId::layer(0, part, param);
    // Every layer holds several tensors: a layer count beyond the tensor count is a lie,
    // refused before anything is sized by it (per-layer lists, expected-tensor specs).
    if n_layers as usize > t.count() {
        bad(errs, format!("n_layers = {n_layers} cannot be right: the file holds only {} tensors", t.count()));
        return None;
    }

    // n_kv_heads: default n_heads (no grouped-query attention), override from the key.
    let n_kv_heads = pv.take(
        Field::NKvHeads,
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
        (Some(explicit), _) => pv.take(Field::HeadDim, explicit),
        (None, Some(derived)) => pv.take(Field::HeadDim, derived),
        (None, None) => {
            bad(errs, format!("hidden_size ({hidden}) is not divisible by n_heads ({n_heads}) and the file gives no head_dim"));
            return None;
        }
    };
    let head_dim_v = pv.take(
        Field::HeadDimV,
        p.head_dim_v.unwrap_or((head_dim, Source::Derived(format!("= head_dim ({head_dim})")))),
    );

    // rope_dim: derive head_dim (times partial_rotary_factor), override from the key.
    let derived_rope = match p.partial_rotary_factor {
        Some((f, src)) if f < 1.0 => {
            ((head_dim as f32 * f) as u32, Source::Derived(format!("head_dim * partial_rotary_factor = {head_dim} * {f} ({src})")))
        }
        _ => (head_dim, Source::Derived(format!("= head_dim ({head_dim})"))),
    };
    let rope_dim = pv.take(Field::RopeDim, p.rope_dim.unwrap_or(derived_rope));
    if rope_dim > head_dim || rope_dim % 2 != 0 || rope_dim == 0 {
        bad(errs, format!("rope_dim ({rope_dim}) must be even, > 0 and at most head_dim ({head_dim})"));
        ok = false;
    }
    let rope_style = pv.take(
        Field::RopeStyle,
        if p.hf_layout {
            (spec.rope_style_hf, Source::Default(format!("{arch} HF weight layout")))
        } else {
            (spec.rope_style_gguf, Source::Default(format!("{arch} GGUF weight layout (llama.cpp)")))
        },
    );
    let default_base = if p.hf_layout { spec.hf_default_rope_theta } else { 10_000.0 };
    let rope_base = pv.take(Field::RopeBase, p.rope_base.unwrap_or((default_base, Source::Default(format!("{default_base} ({arch})")))));
    let rope_base_local = match p.rope_base_local {
        Some(v) => Some(pv.take(Field::RopeBaseLocal, v)),
        None => spec
            .default_rope_base_local
            .map(|b| pv.take(Field::RopeBaseLocal, (b, Source::Default(format!("{b} for {arch} local layers"))))),
    };

    // RoPE scaling: keys, else factor tensors (llama.cpp stores Llama 3 / LongRoPE factors).
    let factor_tensors: Vec<String> = [Part::RopeFreqs, Part::RopeFactorsLong, Part::RopeFactorsShort]
        .into_iter()
        .map(|part| TensorId::global(part, Param::Weight))
        .filter(|&id| t.has(id))
        .map(|id| id.gguf_name())
        .collect();
    let rope_scaling = pv.take(
        Field::RopeScaling,
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
        Some(w) => Some(pv.take(Field::SlidingWindow, w)),
        None => window_default.map(|w| pv.take(Field::SlidingWindow, (w, Source::Default(format!("{w} ({arch})"))))),
    };
    let layer_attention = match p.layer_types {
        Some((kinds, src)) => {
            if kinds.len() != n_layers as usize {
                bad(errs, format!("layer_types lists {} layers but the model has {n_layers} ({src})", kinds.len()));
                return None;
            }
            pv.take(Field::LayerAttention, (kinds, src))
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
            pv.take(Field::LayerAttention, (kinds, src))
        }
    };
    if layer_attention.contains(&LayerAttention::Local) && sliding_window.is_none() {
        bad(errs, "some layers use sliding-window attention but no window size is given".into());
        ok = false;
    }

    let norm_eps = match p.norm_eps {
        Some(v) => pv.take(Field::NormEps, v),
        None if p.hf_layout => pv.take(Field::NormEps, (spec.hf_default_eps, Source::Default(format!("{} (transformers {arch})", spec.hf_default_eps)))),
        None => return None, // required in GGUF; already reported
    };
    let norm_weight_offset = pv.take(
        Field::NormWeightOffset,
        if p.hf_layout {
            (spec.hf_norm_weight_offset, Source::Default(format!("{arch} HF RMSNorm convention")))
        } else {
            (0.0, Source::Default("GGUF stores the effective norm weights".into()))
        },
    );
    let activation = pv.take(Field::Activation, p.activation.unwrap_or((spec.activation, Source::Default(format!("{arch}")))));

    // Vocabulary: GGUF derives it from the token list, overridden by `vocab_size`; both
    // must agree; with neither, the embedding tensor's rows give it.
    let embd = TensorId::global(Part::TokenEmbd, Param::Weight);
    let vocab_size = match (p.vocab_size, p.tokenizer_vocab) {
        (Some((v, src)), Some((tv, tsrc))) if v != tv && !p.hf_layout => {
            bad(errs, format!("vocab_size {v} ({src}) differs from the {tv} tokens of the tokenizer ({tsrc})"));
            return None;
        }
        (Some(v), _) => pv.take(Field::VocabSize, v),
        (None, Some(tv)) => pv.take(Field::VocabSize, tv),
        (None, None) => match t.shape(embd).and_then(|s| s.first().copied()).and_then(|v| u32::try_from(v).ok()).filter(|&v| v > 0) {
            Some(v) => pv.take(Field::VocabSize, (v, Source::Tensor(format!("{} rows", embd.gguf_name())))),
            None => {
                errs.push(ErrorKind::MissingKey { key: "vocabulary size (no vocab_size key, no token list, no embedding tensor)".into() });
                return None;
            }
        },
    };

    let output = TensorId::global(Part::Output, Param::Weight);
    let tied_embeddings = pv.take(
        Field::TiedEmbeddings,
        match p.tied_embeddings {
            Some(v) => v,
            None if p.hf_layout => (spec.hf_tie_default, Source::Default(format!("tie_word_embeddings = {} (transformers {arch})", spec.hf_tie_default))),
            None => (!t.has(output), Source::Tensor(format!("output.weight {}", if t.has(output) { "present" } else { "absent: head = token_embd.weight" }))),
        },
    );

    let (n_experts_used, expert_intermediate_size, expert_layout) = if n_experts > 0 {
        // The readers require the experts-used key of a MoE model (a MissingKey when absent).
        let used = p.n_experts_used.map(|v| pv.take(Field::NExpertsUsed, v));
        if let Some(u) = used.filter(|&u| u > n_experts) {
            bad(errs, format!("n_experts_used ({u}) exceeds n_experts ({n_experts})"));
        }
        let width = p.expert_intermediate_size.unwrap_or((ff, Source::Derived(format!("= intermediate_size ({ff})"))));
        let width = pv.take(Field::ExpertIntermediateSize, width);
        let stacked = t.has(TensorId::layer(0, Part::FfnUpExps, Param::Weight));
        let (layout, why) = if stacked { (ExpertLayout::Stacked, "layer 0 has stacked experts (ffn_up_exps)") } else { (ExpertLayout::PerExpert, "layer 0 has no stacked experts: one tensor per expert") };
        (used, Some(width), Some(pv.take(Field::ExpertLayout, (layout, Source::Tensor(why.into())))))
    } else {
        (None, None, None)
    };

    let flag = |pv: &mut Provenance, field: Field, on: bool, why: String| pv.take(field, (on, Source::Tensor(why)));
    let q_bias = layer0(Part::AttnQ, Param::Bias);
    let qkv_bias = layer0(Part::AttnQkv, Param::Bias);
    let spec_requires = |part, param| spec.layer_tensors.iter().any(|&(p2, q2, n)| p2 == part && q2 == param && n == crate::arch::Need::Required);
    let attn_bias = if spec_requires(Part::AttnQ, Param::Bias) {
        pv.take(Field::AttnBias, (true, Source::Default(format!("{arch} has Q/K/V biases"))))
    } else {
        let on = t.has(q_bias) || t.has(qkv_bias);
        flag(&mut pv, Field::AttnBias, on, format!("layer 0 Q/K/V bias {}", if on { "present" } else { "absent" }))
    };
    let o_bias = layer0(Part::AttnOutput, Param::Bias);
    let attn_output_bias = flag(&mut pv, Field::AttnOutputBias, t.has(o_bias), format!("layer 0 output-projection bias {}", if t.has(o_bias) { "present" } else { "absent" }));
    let qk_norm = pv.take(Field::QkNorm, (spec_requires(Part::AttnQNorm, Param::Weight), Source::Default(format!("{arch}"))));
    let quirks = &spec.quirks;
    let fused_qkv = quirks.fused_qkv && (t.has(layer0(Part::AttnQkv, Param::Weight)) || !t.has(layer0(Part::AttnQ, Param::Weight)));
    let fused_qkv = flag(&mut pv, Field::FusedQkv, fused_qkv, if fused_qkv { "layer 0 has one Q|K|V tensor".into() } else { "layer 0 has split Q/K/V".into() });
    let fused_gate_up = pv.take(Field::FusedGateUp, (quirks.fused_gate_up, Source::Default(format!("{arch}"))));

    let embedding_scale = spec.embedding_scale.then(|| {
        pv.take(Field::EmbeddingScale, ((hidden as f32).sqrt(), Source::Derived(format!("sqrt(hidden_size) = sqrt({hidden})"))))
    });
    let quirk_scalar = quirks.gguf_query_pre_attn_scalar.and_then(|rule| rule(&crate::arch::Dims { n_layers, hidden, n_heads }));
    let attention_scale = pv.take(
        Field::AttentionScale,
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
    let attn_logit_softcap = p.attn_logit_softcap.or_else(|| default_cap(quirks.default_softcaps.0)).map(|v| pv.take(Field::AttnLogitSoftcap, v));
    let final_logit_softcap = p.final_logit_softcap.or_else(|| default_cap(quirks.default_softcaps.1)).map(|v| pv.take(Field::FinalLogitSoftcap, v));

    let bos_token_id = p.bos_token_id.map(|v| pv.take(Field::BosTokenId, v));
    let eos_token_id = p.eos_token_id.map(|v| pv.take(Field::EosTokenId, v));
    let mut eog_token_ids: Vec<u32> = p.eog_token_ids.iter().map(|(id, _)| *id).collect();
    eog_token_ids.sort_unstable();
    eog_token_ids.dedup();
    if !p.eog_token_ids.is_empty() {
        let mut sources: Vec<String> = p.eog_token_ids.iter().map(|(_, s)| s.to_string()).collect();
        sources.dedup();
        pv.insert(Field::EogTokenIds, Source::Derived(sources.join("; ")));
    }
    for (name, id) in [("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id)] {
        if let Some(id) = id.filter(|&id| id >= vocab_size) {
            bad(errs, format!("{name} {id} is outside the vocabulary (vocab_size {vocab_size})"));
            ok = false;
        }
    }
    eog_token_ids.retain(|&id| id < vocab_size);

    let native_dtype = pv.take(
        Field::NativeDtype,
        match t.dominant_weight_dtype() {
            Some(d) => (d, Source::Tensor("dtype holding the most decoder-layer weight bytes".into())),
            None => (DType::F32, Source::Default("no weight matrices".into())),
        },
    );
    let declared_dtype = p.declared_dtype.map(|v| pv.take(Field::DeclaredDtype, v));

    ok.then_some(ModelConfig {
        architecture: arch,
        n_layers,
        hidden_size: hidden,
        intermediate_size: ff,
        n_experts,
        n_experts_used,
        expert_intermediate_size,
        expert_layout,
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
        provenance: pv,
    })
}
