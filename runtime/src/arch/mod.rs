//! Architectures: one file each, holding what differs between them — names, rope style,
//! activation, which tensors a layer has, the loader's defaults. This module sits below
//! the model loader (which reads these specs) and names nothing of it: the shapes a
//! config implies are `model::tensors`, the forward graph is `forward`.
//!
//! Canonical tensor roles ([`Part`] + [`Param`], with a layer index for decoder-layer
//! tensors) map to GGUF names (`blk.3.attn_q.weight`) and Hugging Face names
//! (`model.layers.3.self_attn.q_proj.weight`); both resolve to the same [`TensorId`].

pub mod forward;
pub mod gemma2;
pub mod gemma3;
pub mod llama;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

use std::fmt;

use crate::backend::{Activation, RopeStyle};

/// The decoder-only architectures strata knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Llama 2/3, SmolLM/SmolLM2, TinyLlama, Mistral.
    Llama,
    Qwen2,
    Qwen3,
    Gemma2,
    Gemma3,
    Phi3,
}

pub const ALL_ARCHS: &[Arch] = &[Arch::Llama, Arch::Qwen2, Arch::Qwen3, Arch::Gemma2, Arch::Gemma3, Arch::Phi3];

/// How layers use sliding-window attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlidingPattern {
    /// Every layer attends globally.
    None,
    /// Every layer uses the window when the config sets one (Mistral, Phi-3).
    AllLayers,
    /// Layer `i` is local when `i % 2 == 0` (Gemma 2).
    EvenLayersLocal,
    /// Layer `i` is global when `(i + 1) % period == 0`, local otherwise (Gemma 3: 6).
    Period(u32),
}

/// Whether a tensor must be present in every layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Required,
    /// Present in all layers or in none (decided by layer 0; see `ModelConfig` flags).
    Optional,
}

/// What an architecture fixes (everything else comes from the file's metadata).
pub struct ArchSpec {
    pub arch: Arch,
    /// `general.architecture` values.
    pub gguf_names: &'static [&'static str],
    /// config.json `architectures[0]` values.
    pub hf_architectures: &'static [&'static str],
    /// config.json `model_type` values.
    pub hf_model_types: &'static [&'static str],
    /// RoPE pairing for GGUF weights. llama.cpp's converter permutes Llama Q/K rows so that
    /// rotated pairs are adjacent ("normal"); HF checkpoints keep the rotate-half ("NeoX")
    /// layout. The style belongs to the weight layout, so it is chosen per format.
    pub rope_style_gguf: RopeStyle,
    pub rope_style_hf: RopeStyle,
    pub activation: Activation,
    /// `tie_word_embeddings` when config.json omits it (the transformers class default).
    pub hf_tie_default: bool,
    /// `rms_norm_eps` / `rope_theta` when config.json omits them (transformers defaults).
    pub hf_default_eps: f32,
    pub hf_default_rope_theta: f32,
    pub sliding: SlidingPattern,
    /// Sliding-window size when the file omits it but the pattern needs one.
    pub default_window: Option<u32>,
    /// RoPE base of local layers when the file omits it (Gemma 3: 10000).
    pub default_rope_base_local: Option<f32>,
    /// Embeddings are multiplied by sqrt(hidden) (Gemma).
    pub embedding_scale: bool,
    /// HF Gemma RMSNorm computes `x * (1 + w)`; llama.cpp's converter stores `1 + w`.
    pub hf_norm_weight_offset: f32,
    /// Per-layer tensors and whether each must be present.
    pub layer_tensors: &'static [(Part, Param, Need)],
    /// Global tensors besides embedding, final norm and output head.
    pub extra_global_tensors: &'static [(Part, Param, Need)],
    /// What this architecture does unlike the common decoder (the loader applies it).
    pub quirks: Quirks,
}

/// An architecture's departures from the common decoder, each owned by its file and applied
/// by the loader (`model::config::finish`), which names no architecture itself.
pub struct Quirks {
    /// Q|K|V may come as one projection: fused when layer 0 holds `attn_qkv` or lacks
    /// `attn_q` (Phi-3).
    pub fused_qkv: bool,
    /// gate|up is one projection, twice the FFN width, gate rows first (Phi-3).
    pub fused_gate_up: bool,
    /// Soft-caps when the file gives none: (attention logits, final logits) (Gemma 2).
    pub default_softcaps: (Option<f32>, Option<f32>),
    /// `query_pre_attn_scalar` that a GGUF has no key for, from the model's shape, with the
    /// rule's name (Gemma 2 27B, as llama.cpp scales it).
    pub gguf_query_pre_attn_scalar: Option<fn(&Dims) -> Option<(f32, &'static str)>>,
    /// Hugging Face module names that differ from the Llama family's (`None`: the part has
    /// no HF tensor in this architecture).
    pub hf_names: &'static [(Part, Option<&'static str>)],
}

/// The sizes a quirk may depend on.
pub struct Dims {
    pub n_layers: u32,
    pub hidden: u32,
    pub n_heads: u32,
}

impl Quirks {
    /// No departure: the common decoder.
    pub const NONE: Quirks = Quirks { fused_qkv: false, fused_gate_up: false, default_softcaps: (None, None), gguf_query_pre_attn_scalar: None, hf_names: &[] };
}

impl Arch {
    pub fn spec(self) -> &'static ArchSpec {
        match self {
            Arch::Llama => &llama::SPEC,
            Arch::Qwen2 => &qwen2::SPEC,
            Arch::Qwen3 => &qwen3::SPEC,
            Arch::Gemma2 => &gemma2::SPEC,
            Arch::Gemma3 => &gemma3::SPEC,
            Arch::Phi3 => &phi3::SPEC,
        }
    }

    pub fn name(self) -> &'static str {
        self.spec().gguf_names[0]
    }

    pub fn from_gguf_name(name: &str) -> Option<Arch> {
        ALL_ARCHS.iter().copied().find(|a| a.spec().gguf_names.contains(&name))
    }

    /// From config.json: `architectures[0]` first, then `model_type`.
    pub fn from_hf(architectures: Option<&str>, model_type: Option<&str>) -> Option<Arch> {
        let by_class = architectures
            .and_then(|c| ALL_ARCHS.iter().copied().find(|a| a.spec().hf_architectures.contains(&c)));
        by_class.or_else(|| {
            model_type.and_then(|t| ALL_ARCHS.iter().copied().find(|a| a.spec().hf_model_types.contains(&t)))
        })
    }

    pub fn supported_list() -> String {
        ALL_ARCHS.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A module of the model. Layer parts live in every decoder block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    TokenEmbd,
    OutputNorm,
    Output,
    /// Llama 3 RoPE frequency factors (llama.cpp precomputes them into a tensor).
    RopeFreqs,
    /// Phi-3 LongRoPE factors.
    RopeFactorsLong,
    RopeFactorsShort,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    /// Phi-3's fused Q|K|V projection.
    AttnQkv,
    AttnOutput,
    AttnQNorm,
    AttnKNorm,
    /// Gemma's norm after attention (before the residual add).
    AttnPostNorm,
    FfnNorm,
    FfnGate,
    /// Phi-3: the fused gate|up projection, twice the FFN width.
    FfnUp,
    FfnDown,
    /// Gemma's norm after the FFN.
    FfnPostNorm,
    /// A mixture-of-experts layer's router: `[n_experts, hidden]`.
    FfnGateInp,
    /// The experts' gate, up and down projections. GGUF stacks a layer's experts in one
    /// tensor (`[n_experts, rows, cols]`, `blk.L.ffn_gate_exps.weight`); Hugging Face (and
    /// GGUFs from before llama.cpp stacked them) keep one tensor per expert. Either way
    /// expert `e` is `TensorId::expert(layer, e, part, param)` (see `LoadedModel::expert`).
    FfnGateExps,
    FfnUpExps,
    FfnDownExps,
}

impl Part {
    pub fn is_layer(self) -> bool {
        !matches!(
            self,
            Part::TokenEmbd | Part::OutputNorm | Part::Output | Part::RopeFreqs | Part::RopeFactorsLong | Part::RopeFactorsShort
        )
    }

    /// True for vectors that scale activations (norm weights).
    pub fn is_norm(self) -> bool {
        matches!(
            self,
            Part::OutputNorm | Part::AttnNorm | Part::AttnQNorm | Part::AttnKNorm | Part::AttnPostNorm | Part::FfnNorm | Part::FfnPostNorm
        )
    }

    /// A layer's experts' projections (stacked, or one tensor per expert).
    pub fn is_expert(self) -> bool {
        matches!(self, Part::FfnGateExps | Part::FfnUpExps | Part::FfnDownExps)
    }

    /// The GGUF name of one expert's own tensor (`blk.L.ffn_gate.E.weight`, the layout
    /// llama.cpp wrote before it stacked experts).
    fn gguf_expert_name(self) -> Option<&'static str> {
        match self {
            Part::FfnGateExps => Some("ffn_gate"),
            Part::FfnUpExps => Some("ffn_up"),
            Part::FfnDownExps => Some("ffn_down"),
            _ => None,
        }
    }

    pub fn is_rope_factors(self) -> bool {
        matches!(self, Part::RopeFreqs | Part::RopeFactorsLong | Part::RopeFactorsShort)
    }

    pub fn gguf_name(self) -> &'static str {
        match self {
            Part::TokenEmbd => "token_embd",
            Part::OutputNorm => "output_norm",
            Part::Output => "output",
            Part::RopeFreqs => "rope_freqs",
            Part::RopeFactorsLong => "rope_factors_long",
            Part::RopeFactorsShort => "rope_factors_short",
            Part::AttnNorm => "attn_norm",
            Part::AttnQ => "attn_q",
            Part::AttnK => "attn_k",
            Part::AttnV => "attn_v",
            Part::AttnQkv => "attn_qkv",
            Part::AttnOutput => "attn_output",
            Part::AttnQNorm => "attn_q_norm",
            Part::AttnKNorm => "attn_k_norm",
            Part::AttnPostNorm => "post_attention_norm",
            Part::FfnNorm => "ffn_norm",
            Part::FfnGate => "ffn_gate",
            Part::FfnUp => "ffn_up",
            Part::FfnDown => "ffn_down",
            Part::FfnPostNorm => "post_ffw_norm",
            Part::FfnGateInp => "ffn_gate_inp",
            Part::FfnGateExps => "ffn_gate_exps",
            Part::FfnUpExps => "ffn_up_exps",
            Part::FfnDownExps => "ffn_down_exps",
        }
    }

    /// The Hugging Face module name (without `model.layers.N.`): the architecture's own
    /// (`Quirks::hf_names`), else the Llama family's. An expert part's name has a `*` where
    /// the expert's index goes (`mlp.experts.*.gate_proj`: Hugging Face stores each expert
    /// as its own tensor).
    pub fn hf_name(self, arch: Arch) -> Option<&'static str> {
        if let Some(&(_, name)) = arch.spec().quirks.hf_names.iter().find(|(p, _)| *p == self) {
            return name;
        }
        Some(match self {
            Part::TokenEmbd => "model.embed_tokens",
            Part::OutputNorm => "model.norm",
            Part::Output => "lm_head",
            Part::RopeFreqs | Part::RopeFactorsLong | Part::RopeFactorsShort => return None,
            Part::AttnNorm => "input_layernorm",
            Part::AttnQ => "self_attn.q_proj",
            Part::AttnK => "self_attn.k_proj",
            Part::AttnV => "self_attn.v_proj",
            Part::AttnQkv => "self_attn.qkv_proj",
            Part::AttnOutput => "self_attn.o_proj",
            Part::AttnQNorm => "self_attn.q_norm",
            Part::AttnKNorm => "self_attn.k_norm",
            Part::AttnPostNorm => return None,
            // In Llama-family checkpoints "post_attention_layernorm" is the pre-FFN norm.
            Part::FfnNorm => "post_attention_layernorm",
            Part::FfnGate => "mlp.gate_proj",
            Part::FfnUp => "mlp.up_proj",
            Part::FfnDown => "mlp.down_proj",
            Part::FfnPostNorm => return None,
            // Qwen2-MoE / Qwen3-MoE / OLMoE names (Mixtral's `block_sparse_moe.*` would be
            // its architecture's quirk).
            Part::FfnGateInp => "mlp.gate",
            Part::FfnGateExps => "mlp.experts.*.gate_proj",
            Part::FfnUpExps => "mlp.experts.*.up_proj",
            Part::FfnDownExps => "mlp.experts.*.down_proj",
        })
    }
}

pub const ALL_PARTS: &[Part] = &[
    Part::TokenEmbd, Part::OutputNorm, Part::Output, Part::RopeFreqs, Part::RopeFactorsLong,
    Part::RopeFactorsShort, Part::AttnNorm, Part::AttnQ, Part::AttnK, Part::AttnV, Part::AttnQkv,
    Part::AttnOutput, Part::AttnQNorm, Part::AttnKNorm, Part::AttnPostNorm, Part::FfnNorm,
    Part::FfnGate, Part::FfnUp, Part::FfnDown, Part::FfnPostNorm, Part::FfnGateInp,
    Part::FfnGateExps, Part::FfnUpExps, Part::FfnDownExps,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Param {
    Weight,
    Bias,
}

impl Param {
    fn suffix(self) -> &'static str {
        match self {
            Param::Weight => "weight",
            Param::Bias => "bias",
        }
    }
}

/// A canonical tensor role: the same id for the GGUF and the HF name of a tensor. Its
/// dimensions are the layer and, for an expert part, the expert: `expert: None` is a
/// layer's stacked experts (`[n_experts, rows, cols]`), `Some(e)` expert `e` alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId {
    pub layer: Option<u32>,
    pub expert: Option<u32>,
    pub part: Part,
    pub param: Param,
}

impl TensorId {
    pub fn global(part: Part, param: Param) -> Self {
        TensorId { layer: None, expert: None, part, param }
    }

    /// A layer's tensor (for an expert part: all its experts, stacked).
    pub fn layer(layer: u32, part: Part, param: Param) -> Self {
        TensorId { layer: Some(layer), expert: None, part, param }
    }

    /// Expert `expert` of an expert part in `layer`.
    pub fn expert(layer: u32, expert: u32, part: Part, param: Param) -> Self {
        debug_assert!(part.is_expert(), "{part:?} has no experts");
        TensorId { layer: Some(layer), expert: Some(expert), part, param }
    }

    /// The stacked tensor this expert is a slice of (itself when not an expert).
    pub fn stacked(self) -> Self {
        TensorId { expert: None, ..self }
    }

    pub fn gguf_name(&self) -> String {
        let p = self.param.suffix();
        match (self.layer, self.expert.zip(self.part.gguf_expert_name())) {
            (Some(l), Some((e, base))) => format!("blk.{l}.{base}.{e}.{p}"),
            (Some(l), None) => format!("blk.{l}.{}.{p}", self.part.gguf_name()),
            (None, _) => format!("{}.{p}", self.part.gguf_name()),
        }
    }

    /// `None` where the architecture's checkpoints have no such tensor (HF keeps no
    /// stacked experts).
    pub fn hf_name(&self, arch: Arch) -> Option<String> {
        let module = self.part.hf_name(arch)?;
        let module = match (module.contains('*'), self.expert) {
            (true, Some(e)) => module.replacen('*', &e.to_string(), 1),
            (true, None) => return None,
            (false, _) => module.to_owned(),
        };
        Some(match self.layer {
            Some(l) => format!("model.layers.{l}.{module}.{}", self.param.suffix()),
            None => format!("{module}.{}", self.param.suffix()),
        })
    }
}

/// Why a name did not resolve to a role.
#[derive(Debug, PartialEq, Eq)]
pub enum NameError {
    /// Not a tensor strata knows (reported as a warning and ignored).
    Unknown,
    /// A layer tensor whose index is not a number (`blk.x.attn_q.weight`).
    BadLayer,
}

fn split_param(name: &str) -> Option<(&str, Param)> {
    if let Some(stem) = name.strip_suffix(".weight") {
        Some((stem, Param::Weight))
    } else {
        name.strip_suffix(".bias").map(|stem| (stem, Param::Bias))
    }
}

fn parse_layer(s: &str) -> Result<u32, NameError> {
    // Plain decimal only: no sign, no leading '+', no overflow.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::BadLayer);
    }
    s.parse().map_err(|_| NameError::BadLayer)
}

/// Resolves a GGUF tensor name (`blk.3.attn_q.weight`, `token_embd.weight`; an expert's
/// own tensor `blk.3.ffn_gate.5.weight`).
pub fn parse_gguf_name(name: &str) -> Result<TensorId, NameError> {
    let (stem, param) = split_param(name).ok_or(NameError::Unknown)?;
    if let Some(rest) = stem.strip_prefix("blk.") {
        // The role first, then the indices: an unknown role is Unknown whatever its index.
        let (layer, part) = rest.split_once('.').ok_or(NameError::Unknown)?;
        if let Some((base, e)) = part.split_once('.') {
            let part = ALL_PARTS.iter().copied().find(|p| p.gguf_expert_name() == Some(base)).ok_or(NameError::Unknown)?;
            return Ok(TensorId::expert(parse_layer(layer)?, parse_layer(e)?, part, param));
        }
        let part = ALL_PARTS.iter().copied().find(|p| p.is_layer() && p.gguf_name() == part).ok_or(NameError::Unknown)?;
        return Ok(TensorId::layer(parse_layer(layer)?, part, param));
    }
    let part = ALL_PARTS.iter().copied().find(|p| !p.is_layer() && p.gguf_name() == stem).ok_or(NameError::Unknown)?;
    Ok(TensorId::global(part, param))
}

/// Resolves a Hugging Face tensor name for `arch`. Multimodal checkpoints that nest the
/// language model (`model.language_model.layers.N...`) resolve like text-only ones.
pub fn parse_hf_name(arch: Arch, name: &str) -> Result<TensorId, NameError> {
    let name = name
        .strip_prefix("model.language_model.")
        .map(|rest| format!("model.{rest}"))
        .or_else(|| name.strip_prefix("language_model.").map(str::to_owned))
        .unwrap_or_else(|| name.to_owned());
    let (stem, param) = split_param(&name).ok_or(NameError::Unknown)?;
    if let Some(rest) = stem.strip_prefix("model.layers.") {
        let (layer, module) = rest.split_once('.').ok_or(NameError::Unknown)?;
        for &part in ALL_PARTS.iter().filter(|p| p.is_layer()) {
            let Some(name) = part.hf_name(arch) else { continue };
            match name.split_once('*') {
                None if name == module => return Ok(TensorId::layer(parse_layer(layer)?, part, param)),
                Some((before, after)) => {
                    if let Some(e) = module.strip_prefix(before).and_then(|m| m.strip_suffix(after)) {
                        return Ok(TensorId::expert(parse_layer(layer)?, parse_layer(e)?, part, param));
                    }
                }
                None => {}
            }
        }
        return Err(NameError::Unknown);
    }
    let part = ALL_PARTS
        .iter()
        .copied()
        .find(|p| !p.is_layer() && p.hf_name(arch) == Some(stem))
        .ok_or(NameError::Unknown)?;
    Ok(TensorId::global(part, param))
}

/// The activation names config.json may use for each supported activation.
pub fn activation_from_hf(name: &str) -> Option<Activation> {
    match name {
        "silu" | "swish" => Some(Activation::Silu),
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Some(Activation::GeluTanh),
        _ => None,
    }
}

/// Layer tensors of the Llama family: shared by several architecture files.
pub(crate) const LLAMA_LAYER: &[(Part, Param, Need)] = &[
    (Part::AttnNorm, Param::Weight, Need::Required),
    (Part::AttnQ, Param::Weight, Need::Required),
    (Part::AttnK, Param::Weight, Need::Required),
    (Part::AttnV, Param::Weight, Need::Required),
    (Part::AttnQ, Param::Bias, Need::Optional),
    (Part::AttnK, Param::Bias, Need::Optional),
    (Part::AttnV, Param::Bias, Need::Optional),
    (Part::AttnOutput, Param::Weight, Need::Required),
    (Part::AttnOutput, Param::Bias, Need::Optional),
    (Part::FfnNorm, Param::Weight, Need::Required),
    (Part::FfnGate, Param::Weight, Need::Required),
    (Part::FfnUp, Param::Weight, Need::Required),
    (Part::FfnDown, Param::Weight, Need::Required),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_and_hf_names_resolve_to_the_same_role() {
        for &arch in ALL_ARCHS {
            for &part in ALL_PARTS {
                for param in [Param::Weight, Param::Bias] {
                    let mut ids = vec![if part.is_layer() { TensorId::layer(7, part, param) } else { TensorId::global(part, param) }];
                    if part.is_expert() {
                        ids.push(TensorId::expert(7, 12, part, param));
                    }
                    for id in ids {
                        assert_eq!(parse_gguf_name(&id.gguf_name()), Ok(id));
                        if let Some(hf) = id.hf_name(arch) {
                            assert_eq!(parse_hf_name(arch, &hf), Ok(id), "{arch} {hf}");
                        }
                    }
                }
            }
        }
        // The same HF module name means different roles in Llama and Gemma checkpoints.
        let n = "model.layers.0.post_attention_layernorm.weight";
        assert_eq!(parse_hf_name(Arch::Llama, n).unwrap().part, Part::FfnNorm);
        assert_eq!(parse_hf_name(Arch::Gemma3, n).unwrap().part, Part::AttnPostNorm);
        assert_eq!(parse_gguf_name("blk.-1.attn_q.weight"), Err(NameError::BadLayer));
        assert_eq!(parse_gguf_name("blk.99999999999.attn_q.weight"), Err(NameError::BadLayer));
        assert_eq!(parse_gguf_name("blk.0.attn_q.scales"), Err(NameError::Unknown));
        assert_eq!(
            parse_hf_name(Arch::Gemma3, "model.language_model.layers.2.self_attn.q_norm.weight"),
            Ok(TensorId::layer(2, Part::AttnQNorm, Param::Weight))
        );
    }

    /// Expert tensors by the names llama.cpp and transformers write (llama.cpp's
    /// `LLM_TENSOR_FFN_*_EXPS` and the legacy per-expert `ffn_gate.%d`; Qwen-MoE's
    /// `mlp.experts.N.*_proj`).
    #[test]
    fn expert_tensors_resolve_by_layer_and_expert() {
        let (w, up) = (Param::Weight, Part::FfnUpExps);
        assert_eq!(parse_gguf_name("blk.3.ffn_up_exps.weight"), Ok(TensorId::layer(3, up, w)));
        assert_eq!(parse_gguf_name("blk.3.ffn_up.5.weight"), Ok(TensorId::expert(3, 5, up, w)));
        assert_eq!(parse_gguf_name("blk.3.ffn_gate_inp.weight"), Ok(TensorId::layer(3, Part::FfnGateInp, w)));
        assert_eq!(parse_hf_name(Arch::Qwen3, "model.layers.3.mlp.experts.5.up_proj.weight"), Ok(TensorId::expert(3, 5, up, w)));
        assert_eq!(parse_hf_name(Arch::Qwen3, "model.layers.3.mlp.gate.weight"), Ok(TensorId::layer(3, Part::FfnGateInp, w)));
        assert_eq!(parse_hf_name(Arch::Qwen3, "model.layers.3.mlp.experts.x.up_proj.weight"), Err(NameError::BadLayer));
        assert_eq!(parse_gguf_name("blk.3.ffn_up.-1.weight"), Err(NameError::BadLayer));
        assert_eq!(parse_gguf_name("blk.3.attn_q.5.weight"), Err(NameError::Unknown));
        assert_eq!(TensorId::expert(3, 5, up, w).stacked(), TensorId::layer(3, up, w));
        // Hugging Face has no stacked-experts name.
        assert_eq!(TensorId::layer(3, up, w).hf_name(Arch::Qwen3), None);
    }
}
