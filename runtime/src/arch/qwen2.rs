//! Qwen2 / Qwen2.5: the Llama block with mandatory Q/K/V biases and NeoX RoPE.

use super::{Quirks, Arch, ArchSpec, Need, Param, Part, SlidingPattern};
use crate::backend::{Activation, RopeStyle};

pub static SPEC: ArchSpec = ArchSpec {
    arch: Arch::Qwen2,
    gguf_names: &["qwen2"],
    hf_architectures: &["Qwen2ForCausalLM"],
    hf_model_types: &["qwen2"],
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
        (Part::AttnQ, Param::Bias, Need::Required),
        (Part::AttnK, Param::Bias, Need::Required),
        (Part::AttnV, Param::Bias, Need::Required),
        (Part::AttnOutput, Param::Weight, Need::Required),
        (Part::FfnNorm, Param::Weight, Need::Required),
        (Part::FfnGate, Param::Weight, Need::Required),
        (Part::FfnUp, Param::Weight, Need::Required),
        (Part::FfnDown, Param::Weight, Need::Required),
    ],
    extra_global_tensors: &[],
    quirks: Quirks::NONE,
};
