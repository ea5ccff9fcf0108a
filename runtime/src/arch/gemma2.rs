//! Gemma 2: pre- and post-norms around attention and FFN, GELU-tanh gating, embeddings
//! scaled by sqrt(hidden), tied head, logit soft-capping, local (even) / global (odd) layers.

use super::{Dims, Quirks, Arch, ArchSpec, Need, Param, Part, SlidingPattern};
use crate::backend::{Activation, RopeStyle};

pub(crate) const GEMMA2_LAYER: &[(Part, Param, Need)] = &[
    (Part::AttnNorm, Param::Weight, Need::Required),
    (Part::AttnQ, Param::Weight, Need::Required),
    (Part::AttnK, Param::Weight, Need::Required),
    (Part::AttnV, Param::Weight, Need::Required),
    (Part::AttnOutput, Param::Weight, Need::Required),
    (Part::AttnPostNorm, Param::Weight, Need::Required),
    (Part::FfnNorm, Param::Weight, Need::Required),
    (Part::FfnGate, Param::Weight, Need::Required),
    (Part::FfnUp, Param::Weight, Need::Required),
    (Part::FfnDown, Param::Weight, Need::Required),
    (Part::FfnPostNorm, Param::Weight, Need::Required),
];

/// Gemma's norms in Hugging Face checkpoints: a norm after attention, and the pre-FFN norm
/// under its own name (a Llama checkpoint's "post_attention_layernorm" is its pre-FFN norm).
pub(crate) const GEMMA_HF_NAMES: &[(Part, Option<&str>)] = &[
    (Part::AttnPostNorm, Some("post_attention_layernorm")),
    (Part::FfnNorm, Some("pre_feedforward_layernorm")),
    (Part::FfnPostNorm, Some("post_feedforward_layernorm")),
];

/// llama.cpp's rule for Gemma 2 27B GGUFs (46 layers), which carry no
/// `query_pre_attn_scalar`: queries scale by 1 / sqrt(hidden / n_heads), not head_dim.
fn query_pre_attn_scalar_27b(d: &Dims) -> Option<(f32, &'static str)> {
    (d.n_layers == 46).then(|| ((d.hidden / d.n_heads) as f32, "hidden_size / n_heads: llama.cpp's Gemma 2 27B rule"))
}

pub static SPEC: ArchSpec = ArchSpec {
    arch: Arch::Gemma2,
    gguf_names: &["gemma2"],
    hf_architectures: &["Gemma2ForCausalLM"],
    hf_model_types: &["gemma2"],
    rope_style_gguf: RopeStyle::Neox,
    rope_style_hf: RopeStyle::Neox,
    activation: Activation::GeluTanh,
    hf_tie_default: true,
    hf_default_eps: 1e-6,
    hf_default_rope_theta: 10_000.0,
    sliding: SlidingPattern::EvenLayersLocal,
    default_window: Some(4096),
    default_rope_base_local: None,
    embedding_scale: true,
    hf_norm_weight_offset: 1.0,
    layer_tensors: GEMMA2_LAYER,
    extra_global_tensors: &[],
    quirks: Quirks {
        default_softcaps: (Some(50.0), Some(30.0)),
        gguf_query_pre_attn_scalar: Some(query_pre_attn_scalar_27b),
        hf_names: GEMMA_HF_NAMES,
        ..Quirks::NONE
    },
};
