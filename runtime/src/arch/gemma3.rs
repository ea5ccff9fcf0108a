//! Gemma 3 (text): Gemma 2's block plus QK-norm; five local layers (sliding window, RoPE
//! base 10000) then one global layer (the file's RoPE base), no soft-capping.

use super::{Quirks, Arch, ArchSpec, Need, Param, Part, SlidingPattern};
use crate::backend::{Activation, RopeStyle};

pub static SPEC: ArchSpec = ArchSpec {
    arch: Arch::Gemma3,
    gguf_names: &["gemma3"],
    hf_architectures: &["Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"],
    hf_model_types: &["gemma3_text", "gemma3"],
    rope_style_gguf: RopeStyle::Neox,
    rope_style_hf: RopeStyle::Neox,
    activation: Activation::GeluTanh,
    hf_tie_default: true,
    hf_default_eps: 1e-6,
    hf_default_rope_theta: 1_000_000.0,
    sliding: SlidingPattern::Period(6),
    default_window: Some(4096),
    default_rope_base_local: Some(10_000.0),
    embedding_scale: true,
    hf_norm_weight_offset: 1.0,
    layer_tensors: &[
        (Part::AttnNorm, Param::Weight, Need::Required),
        (Part::AttnQ, Param::Weight, Need::Required),
        (Part::AttnK, Param::Weight, Need::Required),
        (Part::AttnV, Param::Weight, Need::Required),
        (Part::AttnQNorm, Param::Weight, Need::Required),
        (Part::AttnKNorm, Param::Weight, Need::Required),
        (Part::AttnOutput, Param::Weight, Need::Required),
        (Part::AttnPostNorm, Param::Weight, Need::Required),
        (Part::FfnNorm, Param::Weight, Need::Required),
        (Part::FfnGate, Param::Weight, Need::Required),
        (Part::FfnUp, Param::Weight, Need::Required),
        (Part::FfnDown, Param::Weight, Need::Required),
        (Part::FfnPostNorm, Param::Weight, Need::Required),
    ],
    extra_global_tensors: &[],
    quirks: Quirks { hf_names: super::gemma2::GEMMA_HF_NAMES, ..Quirks::NONE },
};
