//! Rotary position embedding tables. Angles are `position * inv_freq[i]` for the token's
//! absolute position (`past_len + i`), computed per call: nothing is repeated or truncated
//! to fit a sequence length.

use crate::model::config::{ModelConfig, RopeScaling};
use crate::model::LayerAttention;

/// Why RoPE cannot be set up for a model.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RopeError {
    #[error("RoPE scaling {0} is not implemented yet")]
    Unsupported(String),
    #[error("RoPE frequency factors: expected {expected} values, got {got}")]
    Factors { expected: usize, got: usize },
}

/// Per-pair inverse frequencies for global and local layers.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeTables {
    pub global: Vec<f32>,
    /// Local (sliding-window) layers with their own base (Gemma 3); else same as global.
    pub local: Vec<f32>,
    pub mscale: f32,
}

/// YaRN (as transformers and llama.cpp compute it): high-frequency pairs keep their
/// frequency (extrapolation), low-frequency pairs are divided by `factor`
/// (interpolation), with a linear ramp between the correction dims of `beta_fast` and
/// `beta_slow` rotations over the original context.
fn yarn_inv_freq(inv: &[f32], base: f32, dim: usize, factor: f32, orig_ctx: u32, beta_fast: f32, beta_slow: f32) -> Vec<f32> {
    let corr_dim = |rotations: f32| {
        (dim as f32 * (orig_ctx as f32 / (rotations * 2.0 * std::f32::consts::PI)).ln()) / (2.0 * base.ln())
    };
    let low = corr_dim(beta_fast).floor().max(0.0);
    let high = corr_dim(beta_slow).ceil().min(dim as f32 - 1.0);
    let span = if low == high { 0.001 } else { high - low };
    inv.iter()
        .enumerate()
        .map(|(i, &extrapolation)| {
            let ramp = ((i as f32 - low) / span).clamp(0.0, 1.0);
            let extrapolation_weight = 1.0 - ramp;
            let interpolation = extrapolation / factor;
            interpolation * (1.0 - extrapolation_weight) + extrapolation * extrapolation_weight
        })
        .collect()
}

fn base_inv_freq(base: f32, rope_dim: usize) -> Vec<f32> {
    (0..rope_dim / 2).map(|i| 1.0 / (base as f64).powf(2.0 * i as f64 / rope_dim as f64) as f32).collect()
}

impl RopeTables {
    /// `factors`: the values of a `rope_freqs` tensor when the config names one.
    pub fn new(cfg: &ModelConfig, factors: Option<&[f32]>) -> Result<Self, RopeError> {
        let dim = cfg.rope_dim as usize;
        let scale = |inv: Vec<f32>| -> Result<Vec<f32>, RopeError> {
            Ok(match &cfg.rope_scaling {
                RopeScaling::None => inv,
                RopeScaling::Linear { factor } => inv.into_iter().map(|f| f / factor).collect(),
                RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context_length } => {
                    let orig = *original_context_length as f32;
                    let (low_wl, high_wl) = (orig / low_freq_factor, orig / high_freq_factor);
                    inv.into_iter()
                        .map(|f| {
                            let wavelen = 2.0 * std::f32::consts::PI / f;
                            if wavelen > low_wl {
                                f / factor
                            } else if wavelen < high_wl {
                                f
                            } else {
                                let smooth = (orig / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                                (1.0 - smooth) * f / factor + smooth * f
                            }
                        })
                        .collect()
                }
                RopeScaling::FactorTensors { tensors } if tensors.len() == 1 => {
                    let fac = factors.ok_or(RopeError::Factors { expected: dim / 2, got: 0 })?;
                    if fac.len() != inv.len() {
                        return Err(RopeError::Factors { expected: inv.len(), got: fac.len() });
                    }
                    inv.iter().zip(fac).map(|(f, k)| f / k).collect()
                }
                RopeScaling::Yarn { factor, original_context_length, beta_fast, beta_slow, .. } => {
                    yarn_inv_freq(&inv, cfg.rope_base, dim, *factor, *original_context_length, *beta_fast, *beta_slow)
                }
                other => return Err(RopeError::Unsupported(format!("{other:?}"))),
            })
        };
        let global = scale(base_inv_freq(cfg.rope_base, dim))?;
        let local = match cfg.rope_base_local {
            Some(b) if cfg.layer_attention.contains(&LayerAttention::Local) => base_inv_freq(b, dim),
            _ => global.clone(),
        };
        let mscale = match cfg.rope_scaling {
            RopeScaling::Yarn { attn_factor, .. } => attn_factor,
            _ => 1.0,
        };
        Ok(RopeTables { global, local, mscale })
    }

    pub fn for_layer(&self, kind: LayerAttention) -> &[f32] {
        match kind {
            LayerAttention::Global => &self.global,
            LayerAttention::Local => &self.local,
        }
    }
}
