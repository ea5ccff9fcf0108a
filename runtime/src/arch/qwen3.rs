//! Qwen3 (dense): no Q/K/V biases, per-head RMSNorm on Q and K (QK-norm), explicit head_dim.

use super::{Quirks, Arch, ArchSpec, Need, Param, Part, SlidingPattern};
use crate::backend::{Activation, RopeStyle};

pub static SPEC: ArchSpec = ArchSpec {
    arch: Arch::Qwen3,
    gguf_names: &["qwen3"],
    hf_architectures: &["Qwen3ForCausalLM"],
    hf_model_types: &["qwen3"],
    rope_style_gguf: RopeStyle::Neox,
    rope_style_hf: RopeStyle::Neox,
    activation: Activation::Silu,
    hf_tie_default: false,
    hf_default_eps: 1e-6,
    hf_default_rope_theta: 10_000.0,
    sliding: SlidingPattern::None,
    default_window: None,
    default_rope_base_local: None,
    embedding_scale: false,
    hf_norm_weight_offset: 0.0,
    layer_tensors: &[
        (Part::AttnNorm, Param::Weight, Need::Required),
        (Part::AttnQ, Param::Weight, Need::Required),
        (Part::AttnK, Param::Weight, Need::Required),
        (Part::AttnV, Param::Weight, Need::Required),
        (Part::AttnQNorm, Param::Weight, Need::Required),
        (Part::AttnKNorm, Param::Weight, Need::Required),
        (Part::AttnOutput, Param::Weight, Need::Required),
        (Part::FfnNorm, Param::Weight, Need::Required),
        (Part::FfnGate, Param::Weight, Need::Required),
        (Part::FfnUp, Param::Weight, Need::Required),
        (Part::FfnDown, Param::Weight, Need::Required),
    ],
    extra_global_tensors: &[],
    quirks: Quirks::NONE,
};
