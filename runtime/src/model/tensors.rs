//! The tensors a model's configuration implies, with their row-major shapes and how each
//! shape follows from the config: derived once, for both file formats, and checked against
//! the file's tensor table by `validate`.

use crate::arch::{Need, Param, Part, TensorId};
use crate::model::ModelConfig;

/// A tensor the config implies: its role, row-major shape and how the shape follows
/// from the config (for error messages).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub id: TensorId,
    pub shape: Vec<u64>,
    pub why: String,
    pub required: bool,
}

/// The row-major shape `part`/`param` must have under `cfg`, with its derivation. For an
/// expert part, the shape of one expert (a stacked tensor is `[n_experts]` + this).
pub fn expected_shape(cfg: &ModelConfig, part: Part, param: Param) -> (Vec<u64>, String) {
    let h = u64::from(cfg.hidden_size);
    let ff = u64::from(cfg.intermediate_size);
    let q = u64::from(cfg.n_heads) * u64::from(cfg.head_dim);
    let k = u64::from(cfg.n_kv_heads) * u64::from(cfg.head_dim);
    let v = u64::from(cfg.n_kv_heads) * u64::from(cfg.head_dim_v);
    let o_in = u64::from(cfg.n_heads) * u64::from(cfg.head_dim_v);
    let vocab = u64::from(cfg.vocab_size);
    let (out, inp, why_out, why_in): (u64, Option<u64>, &str, &str) = match part {
        Part::TokenEmbd | Part::Output => (vocab, Some(h), "vocab_size", "hidden_size"),
        Part::OutputNorm | Part::AttnNorm | Part::AttnPostNorm | Part::FfnNorm | Part::FfnPostNorm => {
            (h, None, "hidden_size", "")
        }
        Part::AttnQNorm | Part::AttnKNorm => (u64::from(cfg.head_dim), None, "head_dim", ""),
        Part::RopeFreqs | Part::RopeFactorsLong | Part::RopeFactorsShort => {
            (u64::from(cfg.rope_dim / 2), None, "rope_dim / 2", "")
        }
        Part::AttnQ => (q, Some(h), "n_heads * head_dim", "hidden_size"),
        Part::AttnK => (k, Some(h), "n_kv_heads * head_dim", "hidden_size"),
        Part::AttnV => (v, Some(h), "n_kv_heads * head_dim_v", "hidden_size"),
        Part::AttnQkv => (q.saturating_add(k).saturating_add(v), Some(h), "(n_heads + n_kv_heads) * head_dim + n_kv_heads * head_dim_v", "hidden_size"),
        Part::AttnOutput => (h, Some(o_in), "hidden_size", "n_heads * head_dim_v"),
        Part::FfnGate => (ff, Some(h), "intermediate_size", "hidden_size"),
        Part::FfnUp if cfg.fused_gate_up => (ff.saturating_mul(2), Some(h), "2 * intermediate_size (fused gate|up)", "hidden_size"),
        Part::FfnUp => (ff, Some(h), "intermediate_size", "hidden_size"),
        Part::FfnDown => (h, Some(ff), "hidden_size", "intermediate_size"),
        Part::FfnGateInp => (u64::from(cfg.n_experts), Some(h), "n_experts", "hidden_size"),
        Part::FfnGateExps | Part::FfnUpExps => (eff(cfg), Some(h), "expert_intermediate_size", "hidden_size"),
        Part::FfnDownExps => (h, Some(eff(cfg)), "hidden_size", "expert_intermediate_size"),
    };
    match (param, inp) {
        (Param::Weight, Some(inp)) => (vec![out, inp], format!("[{why_out}, {why_in}]")),
        _ => (vec![out], format!("[{why_out}]")),
    }
}

/// One expert's FFN width.
fn eff(cfg: &ModelConfig) -> u64 {
    u64::from(cfg.expert_intermediate_size.unwrap_or(cfg.intermediate_size))
}

/// Every tensor `cfg` implies, in a stable order: globals, then layer by layer.
pub fn expected_tensors(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let spec = cfg.architecture.spec();
    let mut out = Vec::new();
    let spec_of = |id: TensorId, required: bool| {
        let (shape, why) = expected_shape(cfg, id.part, id.param);
        TensorSpec { id, shape, why, required }
    };
    out.push(spec_of(TensorId::global(Part::TokenEmbd, Param::Weight), true));
    out.push(spec_of(TensorId::global(Part::OutputNorm, Param::Weight), true));
    if !cfg.tied_embeddings {
        out.push(spec_of(TensorId::global(Part::Output, Param::Weight), true));
    }
    for &(part, param, need) in spec.extra_global_tensors {
        out.push(spec_of(TensorId::global(part, param), need == Need::Required));
    }
    let n = u64::from(cfg.n_experts);
    for layer in 0..cfg.n_layers {
        for &(part, param, need) in spec.layer_tensors {
            if layer_tensor_needed(cfg, part, need) {
                out.push(spec_of(TensorId::layer(layer, part, param), true));
            }
        }
        // A MoE layer's FFN: the router, and each projection's experts, stacked or one
        // tensor per expert as the file keeps them.
        if n == 0 {
            continue;
        }
        out.push(spec_of(TensorId::layer(layer, Part::FfnGateInp, Param::Weight), true));
        for part in crate::arch::ALL_PARTS.iter().copied().filter(|p| p.is_expert()) {
            let (shape, why) = expected_shape(cfg, part, Param::Weight);
            match cfg.expert_layout {
                Some(crate::model::config::ExpertLayout::PerExpert) => {
                    for e in 0..cfg.n_experts {
                        out.push(TensorSpec { id: TensorId::expert(layer, e, part, Param::Weight), shape: shape.clone(), why: why.clone(), required: true });
                    }
                }
                _ => out.push(TensorSpec { id: TensorId::layer(layer, part, Param::Weight), shape: [vec![n], shape].concat(), why: format!("[n_experts, {}", &why[1..]), required: true }),
            }
        }
    }
    out
}

/// Whether a layer tensor belongs to the model under `cfg`. Optional layer tensors
/// (biases) are present in all layers or in none, as layer 0 shows: the loader records
/// that in `cfg.attn_bias` / `cfg.attn_output_bias`, and then every layer must have them.
/// A MoE model's experts take the place of the dense FFN projections.
fn layer_tensor_needed(cfg: &ModelConfig, part: Part, need: Need) -> bool {
    let split_qkv = matches!(part, Part::AttnQ | Part::AttnK | Part::AttnV);
    if (part == Part::AttnQkv && !cfg.fused_qkv) || (split_qkv && cfg.fused_qkv) {
        return false;
    }
    if cfg.n_experts > 0 && matches!(part, Part::FfnGate | Part::FfnUp | Part::FfnDown) {
        return false;
    }
    match need {
        Need::Required => true,
        Need::Optional if part == Part::AttnOutput => cfg.attn_output_bias,
        Need::Optional => cfg.attn_bias,
    }
}

