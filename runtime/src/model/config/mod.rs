//! `ModelConfig`: the hyperparameters of a model, built the same way for both formats —
//! derive a default, then override from an optional key, then validate — with the source
//! of every value recorded (`provenance`).
//!
//! The format readers only translate keys into a [`Params`] draft (`gguf_keys.rs`:
//! GGUF metadata, `hf_keys.rs`: config.json and generation_config.json); everything that
//! derives, defaults or validates is in `derive.rs` ([`finish`]), once, for both.

mod derive;
mod gguf_keys;
mod hf_keys;

pub(crate) use derive::{finish, TensorFacts};
pub(crate) use gguf_keys::from_gguf;
pub(crate) use hf_keys::from_hf;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::arch::Arch;
use crate::error::{Error, ErrorKind};
use crate::quant::DType;

/// Where a config value came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Source {
    /// A GGUF metadata key.
    GgufKey(String),
    /// A config.json field (dotted path for nested fields).
    ConfigJson(String),
    /// A generation_config.json field.
    GenerationConfig(String),
    /// Read off the tensor table (a shape, or a tensor's absence).
    Tensor(String),
    /// Computed from other values.
    Derived(String),
    /// Fixed by the architecture or the reference implementation when the file is silent.
    Default(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::GgufKey(k) => write!(f, "gguf key {k}"),
            Source::ConfigJson(k) => write!(f, "config.json {k}"),
            Source::GenerationConfig(k) => write!(f, "generation_config.json {k}"),
            Source::Tensor(t) => write!(f, "tensor table: {t}"),
            Source::Derived(d) => write!(f, "derived: {d}"),
            Source::Default(d) => write!(f, "default: {d}"),
        }
    }
}

/// The op set's vocabulary (defined with the backends, which must not depend on the
/// model configuration).
pub use crate::backend::{Activation, RopeStyle};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    None,
    Linear { factor: f32 },
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_context_length: u32 },
    /// `attn_factor` is the final scale of cos/sin (YaRN's mscale included).
    Yarn { factor: f32, original_context_length: u32, beta_fast: f32, beta_slow: f32, attn_factor: f32 },
    /// Per-frequency factors stored as tensors (llama.cpp `rope_freqs`, Phi-3 LongRoPE).
    FactorTensors { tensors: Vec<String> },
    /// Phi-3 LongRoPE factors from config.json.
    LongRope { original_context_length: u32, long_factor: Vec<f32>, short_factor: Vec<f32> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    Rms,
}

/// Attention kind of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerAttention {
    Global,
    /// Sliding-window attention over the last `sliding_window` positions.
    Local,
}

/// How a file keeps a MoE layer's experts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpertLayout {
    /// One `[n_experts, rows, cols]` tensor per projection (llama.cpp's `ffn_*_exps`).
    Stacked,
    /// One tensor per expert (Hugging Face; GGUFs from before llama.cpp stacked them).
    PerExpert,
}

/// The hyperparameters of a model: everything the engine needs to know about shapes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelConfig {
    pub architecture: Arch,
    pub n_layers: u32,
    pub hidden_size: u32,
    /// FFN width (per branch; a fused gate|up tensor is twice this).
    pub intermediate_size: u32,
    /// Experts per mixture-of-experts FFN; 0: a dense FFN. The loader refuses MoE models
    /// until their FFN block runs (it names the key), rather than a missing dense tensor;
    /// their shapes are still checked (`strata inspect` shows every problem).
    pub n_experts: u32,
    /// Experts each token is routed to (MoE only).
    pub n_experts_used: Option<u32>,
    /// One expert's FFN width (MoE only; Qwen-MoE's `moe_intermediate_size`, else
    /// `intermediate_size`).
    pub expert_intermediate_size: Option<u32>,
    /// How the file keeps a layer's experts (MoE only).
    pub expert_layout: Option<ExpertLayout>,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    /// Query/key head dimension.
    pub head_dim: u32,
    /// Value head dimension (equal to `head_dim` in every supported model so far).
    pub head_dim_v: u32,
    /// Leading dims of each head that RoPE rotates (`< head_dim` for partial rotary).
    pub rope_dim: u32,
    pub rope_style: RopeStyle,
    /// RoPE frequency base of global layers.
    pub rope_base: f32,
    /// RoPE frequency base of local (sliding-window) layers, when it differs (Gemma 3).
    pub rope_base_local: Option<f32>,
    pub rope_scaling: RopeScaling,
    pub sliding_window: Option<u32>,
    /// One entry per layer.
    pub layer_attention: Vec<LayerAttention>,
    pub norm: NormKind,
    pub norm_eps: f32,
    /// Added to every norm weight before use (1.0 for HF Gemma checkpoints, whose RMSNorm
    /// computes `x * (1 + w)`; 0.0 where the file already stores `1 + w`, as GGUF does).
    pub norm_weight_offset: f32,
    pub activation: Activation,
    pub vocab_size: u32,
    pub context_length: u32,
    /// The output head is the token embedding tensor (one buffer).
    pub tied_embeddings: bool,
    /// Q/K/V projections have biases (Qwen2; optional in Llama).
    pub attn_bias: bool,
    pub attn_output_bias: bool,
    /// Per-head RMSNorm on Q and K (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Q|K|V is one tensor (Phi-3).
    pub fused_qkv: bool,
    /// gate|up is one tensor (Phi-3).
    pub fused_gate_up: bool,
    /// Embeddings are multiplied by this (Gemma: sqrt(hidden)).
    pub embedding_scale: Option<f32>,
    /// Scale applied to QK^T (1/sqrt(head_dim) unless the model says otherwise).
    pub attention_scale: f32,
    pub attn_logit_softcap: Option<f32>,
    pub final_logit_softcap: Option<f32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    /// Every token that ends generation (eos, eot, eom, end-of-turn...).
    pub eog_token_ids: Vec<u32>,
    /// The dtype holding most of the weight bytes (BF16 stays BF16, never "f16").
    pub native_dtype: DType,
    /// What the file declares (`general.file_type`, `torch_dtype`), when it does.
    pub declared_dtype: Option<String>,
    /// Where each field above came from.
    pub provenance: Provenance,
}

/// A [`ModelConfig`] field whose source is recorded: provenance is keyed by these, not by
/// strings, so a misspelt field does not compile. Each is named as it serialises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    NLayers,
    HiddenSize,
    IntermediateSize,
    NExperts,
    NExpertsUsed,
    ExpertIntermediateSize,
    ExpertLayout,
    NHeads,
    NKvHeads,
    HeadDim,
    HeadDimV,
    RopeDim,
    RopeStyle,
    RopeBase,
    RopeBaseLocal,
    RopeScaling,
    SlidingWindow,
    LayerAttention,
    NormEps,
    NormWeightOffset,
    Activation,
    VocabSize,
    ContextLength,
    TiedEmbeddings,
    AttnBias,
    AttnOutputBias,
    QkNorm,
    FusedQkv,
    FusedGateUp,
    EmbeddingScale,
    AttentionScale,
    AttnLogitSoftcap,
    FinalLogitSoftcap,
    BosTokenId,
    EosTokenId,
    EogTokenIds,
    NativeDtype,
    DeclaredDtype,
}

impl Field {
    pub const ALL: &'static [Field] = &[Field::NLayers, Field::HiddenSize, Field::IntermediateSize, Field::NExperts, Field::NExpertsUsed, Field::ExpertIntermediateSize, Field::ExpertLayout, Field::NHeads, Field::NKvHeads, Field::HeadDim, Field::HeadDimV, Field::RopeDim, Field::RopeStyle, Field::RopeBase, Field::RopeBaseLocal, Field::RopeScaling, Field::SlidingWindow, Field::LayerAttention, Field::NormEps, Field::NormWeightOffset, Field::Activation, Field::VocabSize, Field::ContextLength, Field::TiedEmbeddings, Field::AttnBias, Field::AttnOutputBias, Field::QkNorm, Field::FusedQkv, Field::FusedGateUp, Field::EmbeddingScale, Field::AttentionScale, Field::AttnLogitSoftcap, Field::FinalLogitSoftcap, Field::BosTokenId, Field::EosTokenId, Field::EogTokenIds, Field::NativeDtype, Field::DeclaredDtype];

    /// The field's name in `ModelConfig` (and in `strata inspect --json`).
    pub fn name(self) -> &'static str {
        match self {
            Field::NLayers => "n_layers",
            Field::HiddenSize => "hidden_size",
            Field::IntermediateSize => "intermediate_size",
            Field::NExperts => "n_experts",
            Field::NExpertsUsed => "n_experts_used",
            Field::ExpertIntermediateSize => "expert_intermediate_size",
            Field::ExpertLayout => "expert_layout",
            Field::NHeads => "n_heads",
            Field::NKvHeads => "n_kv_heads",
            Field::HeadDim => "head_dim",
            Field::HeadDimV => "head_dim_v",
            Field::RopeDim => "rope_dim",
            Field::RopeStyle => "rope_style",
            Field::RopeBase => "rope_base",
            Field::RopeBaseLocal => "rope_base_local",
            Field::RopeScaling => "rope_scaling",
            Field::SlidingWindow => "sliding_window",
            Field::LayerAttention => "layer_attention",
            Field::NormEps => "norm_eps",
            Field::NormWeightOffset => "norm_weight_offset",
            Field::Activation => "activation",
            Field::VocabSize => "vocab_size",
            Field::ContextLength => "context_length",
            Field::TiedEmbeddings => "tied_embeddings",
            Field::AttnBias => "attn_bias",
            Field::AttnOutputBias => "attn_output_bias",
            Field::QkNorm => "qk_norm",
            Field::FusedQkv => "fused_qkv",
            Field::FusedGateUp => "fused_gate_up",
            Field::EmbeddingScale => "embedding_scale",
            Field::AttentionScale => "attention_scale",
            Field::AttnLogitSoftcap => "attn_logit_softcap",
            Field::FinalLogitSoftcap => "final_logit_softcap",
            Field::BosTokenId => "bos_token_id",
            Field::EosTokenId => "eos_token_id",
            Field::EogTokenIds => "eog_token_ids",
            Field::NativeDtype => "native_dtype",
            Field::DeclaredDtype => "declared_dtype",
        }
    }

    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.name() == name)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where each recorded field of a [`ModelConfig`] came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provenance(BTreeMap<Field, Source>);

impl Provenance {
    pub fn get(&self, field: Field) -> Option<&Source> {
        self.0.get(&field)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Field, &Source)> {
        self.0.iter().map(|(f, s)| (*f, s))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Forgets every source (to compare two configs by their values alone).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub(crate) fn insert(&mut self, field: Field, source: Source) {
        self.0.insert(field, source);
    }

    /// Records where `v`'s value came from and returns the value.
    pub(crate) fn take<T>(&mut self, field: Field, v: (T, Source)) -> T {
        self.insert(field, v.1);
        v.0
    }
}

impl std::ops::Index<Field> for Provenance {
    type Output = Source;
    fn index(&self, field: Field) -> &Source {
        self.0.get(&field).unwrap_or_else(|| panic!("no source recorded for {field}"))
    }
}

impl Serialize for Provenance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(f, src)| (f.name(), src)))
    }
}

impl Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Serialize for DType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A value with its source.
pub type Sourced<T> = Option<(T, Source)>;

/// What a format reader found, before deriving and validating. `None` = absent.
#[derive(Default, Debug)]
pub struct Params {
    pub n_layers: Sourced<u32>,
    pub hidden_size: Sourced<u32>,
    pub intermediate_size: Sourced<u32>,
    /// Experts per MoE layer (absent or 0: dense).
    pub n_experts: Sourced<u32>,
    pub n_experts_used: Sourced<u32>,
    pub expert_intermediate_size: Sourced<u32>,
    pub n_heads: Sourced<u32>,
    pub n_kv_heads: Sourced<u32>,
    pub head_dim: Sourced<u32>,
    pub head_dim_v: Sourced<u32>,
    pub rope_dim: Sourced<u32>,
    pub partial_rotary_factor: Sourced<f32>,
    pub rope_base: Sourced<f32>,
    pub rope_base_local: Sourced<f32>,
    pub rope_scaling: Sourced<RopeScaling>,
    pub sliding_window: Sourced<u32>,
    /// Explicit per-layer kinds (HF `layer_types`).
    pub layer_types: Sourced<Vec<LayerAttention>>,
    /// Explicit local/global period (HF `sliding_window_pattern`).
    pub sliding_period: Sourced<u32>,
    pub norm_eps: Sourced<f32>,
    pub activation: Sourced<Activation>,
    pub vocab_size: Sourced<u32>,
    /// Vocabulary size implied by the tokenizer (GGUF token list), checked against the rest.
    pub tokenizer_vocab: Sourced<u32>,
    pub context_length: Sourced<u32>,
    pub tied_embeddings: Sourced<bool>,
    pub query_pre_attn_scalar: Sourced<f32>,
    pub attn_logit_softcap: Sourced<f32>,
    pub final_logit_softcap: Sourced<f32>,
    pub bos_token_id: Sourced<u32>,
    pub eos_token_id: Sourced<u32>,
    pub eog_token_ids: Vec<(u32, Source)>,
    pub declared_dtype: Sourced<String>,
    /// true for config.json, false for GGUF: picks the architecture's rope style and
    /// norm-weight convention for that weight layout.
    pub hf_layout: bool,
}

/// Collects errors while reading keys so that all problems are reported together.
pub(crate) struct Errs<'a> {
    pub file: &'a str,
    pub list: Vec<Error>,
}

impl Errs<'_> {
    pub fn push(&mut self, kind: ErrorKind) {
        self.list.push(Error::new(self.file, kind));
    }
}

/// YaRN's attention scale for a context extension `factor`: `0.1 * m * ln(factor) + 1`.
pub fn yarn_mscale(factor: f32, m: f32) -> f32 {
    if factor <= 1.0 {
        1.0
    } else {
        0.1 * m * factor.ln() + 1.0
    }
}
