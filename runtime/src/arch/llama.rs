//! Llama family: Llama 2/3, SmolLM/SmolLM2, TinyLlama, Mistral. Pre-norm RMSNorm blocks,
//! SiLU-gated FFN, optional Q/K/V/O biases, GQA, optional Llama 3 RoPE factors.

use super::{Quirks, Arch, ArchSpec, Need, Param, Part, SlidingPattern, LLAMA_LAYER};
use crate::backend::{Activation, RopeStyle};

pub static SPEC: ArchSpec = ArchSpec {
    arch: Arch::Llama,
    gguf_names: &["llama", "mistral"],
    hf_architectures: &["LlamaForCausalLM", "MistralForCausalLM"],
    hf_model_types: &["llama", "mistral"],
    rope_style_gguf: RopeStyle::Normal,
    rope_style_hf: RopeStyle::Neox,
    activation: Activation::Silu,
    hf_tie_default: false,
    hf_default_eps: 1e-6,
    hf_default_rope_theta: 10_000.0,
    sliding: SlidingPattern::AllLayers,
    default_window: None,
    default_rope_base_local: None,
    embedding_scale: false,
    hf_norm_weight_offset: 0.0,
    layer_tensors: LLAMA_LAYER,
    extra_global_tensors: &[(Part::RopeFreqs, Param::Weight, Need::Optional)],
    quirks: Quirks::NONE,
};
