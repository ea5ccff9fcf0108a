//! Phi-3: fused Q|K|V projection (`attn_qkv` / `qkv_proj`; split Q/K/V also accepted), fused
//! gate|up projection twice the FFN width, optional LongRoPE factor tensors, sliding window.

use super::{Quirks, Arch, ArchSpec, Need, Param, Part, SlidingPattern};
use crate::backend::{Activation, RopeStyle};

pub static SPEC: ArchSpec = ArchSpec {
    arch: Arch::Phi3,
    gguf_names: &["phi3"],
    hf_architectures: &["Phi3ForCausalLM"],
    hf_model_types: &["phi3"],
    rope_style_gguf: RopeStyle::Neox,
    rope_style_hf: RopeStyle::Neox,
    activation: Activation::Silu,
    hf_tie_default: false,
    hf_default_eps: 1e-5,
    hf_default_rope_theta: 10_000.0,
    sliding: SlidingPattern::AllLayers,
    default_window: None,
    default_rope_base_local: None,
    embedding_scale: false,
    hf_norm_weight_offset: 0.0,
    layer_tensors: &[
        (Part::AttnNorm, Param::Weight, Need::Required),
        (Part::AttnQkv, Param::Weight, Need::Required),
        (Part::AttnQ, Param::Weight, Need::Required),
        (Part::AttnK, Param::Weight, Need::Required),
        (Part::AttnV, Param::Weight, Need::Required),
        (Part::AttnOutput, Param::Weight, Need::Required),
        (Part::FfnNorm, Param::Weight, Need::Required),
        (Part::FfnUp, Param::Weight, Need::Required),
        (Part::FfnDown, Param::Weight, Need::Required),
    ],
    extra_global_tensors: &[
        (Part::RopeFactorsLong, Param::Weight, Need::Optional),
        (Part::RopeFactorsShort, Param::Weight, Need::Optional),
    ],
    quirks: Quirks { fused_qkv: true, fused_gate_up: true, hf_names: &[(Part::FfnUp, Some("mlp.gate_up_proj"))], ..Quirks::NONE },
};
