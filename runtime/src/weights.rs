//! The per-layer weight store: how the forward pass reaches weights. Today every layer is
//! resident; the layer-streaming scheduler will change residency here without touching
//! the architectures. The output head of a tied model is the embedding weight itself (one
//! buffer, never a copy that could go missing).

use crate::arch::{Param, Part, TensorId};
use crate::backend::{Backend, BackendError};
use crate::model::{LoadedModel, TensorEntry};
use crate::source::ByteSource;

#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("{file}: cannot read tensor {tensor:?}: {message}")]
    Read { file: String, tensor: String, message: String },
    #[error("tensor {tensor:?}: {source}")]
    Backend { tensor: String, source: BackendError },
    #[error("{0}")]
    Unsupported(String),
}

/// The Q/K/V projections: separate, or one fused tensor (Phi-3).
pub enum Qkv<W> {
    Split {
        q: W, // [n_heads * hd, hidden]
        k: W, // [n_kv_heads * hd, hidden]
        v: W, // [n_kv_heads * hd_v, hidden]
    },
    Fused(W), // [(n_heads + n_kv_heads) * hd + n_kv_heads * hd_v, hidden]
}

/// The FFN input projections: separate, or one fused gate|up tensor (Phi-3).
pub enum GateUp<W> {
    Split {
        gate: W, // [ff, hidden]
        up: W,   // [ff, hidden]
    },
    Fused(W), // [2 * ff, hidden]: gate rows first, then up
}

/// The weights of one decoder layer (shapes row-major; `hd` = head_dim).
pub struct LayerWeights<W> {
    pub attn_norm: W,             // [hidden]
    pub qkv: Qkv<W>,
    pub q_bias: Option<W>,        // [n_heads * hd]
    pub k_bias: Option<W>,        // [n_kv_heads * hd]
    pub v_bias: Option<W>,        // [n_kv_heads * hd_v]
    pub o: W,                     // [hidden, n_heads * hd_v]
    pub o_bias: Option<W>,        // [hidden]
    pub q_norm: Option<W>,        // [hd]  (QK-norm)
    pub k_norm: Option<W>,        // [hd]
    pub attn_post_norm: Option<W>, // [hidden] (Gemma)
    pub ffn_norm: W,              // [hidden]
    pub gate_up: GateUp<W>,
    pub down: W,                  // [hidden, ff]
    pub ffn_post_norm: Option<W>, // [hidden] (Gemma)
}

pub struct Weights<B: Backend> {
    pub embed: B::Weight, // [vocab, hidden]
    /// `None` when tied: the head is `embed`.
    output: Option<B::Weight>, // [vocab, hidden]
    pub output_norm: B::Weight, // [hidden]
    pub layers: Vec<LayerWeights<B::Weight>>,
    /// `rope_freqs` values (Llama 3 frequency factors), when present.
    pub rope_factors: Option<Vec<f32>>,
}

impl<B: Backend> Weights<B> {
    /// The output head: the embedding weight itself when tied.
    pub fn output(&self) -> &B::Weight {
        self.output.as_ref().unwrap_or(&self.embed)
    }

    pub fn is_tied(&self) -> bool {
        self.output.is_none()
    }

    /// Uploads every weight of a validated model. `sources[i]` reads `model.files.files[i]`.
    pub fn load(b: &B, m: &LoadedModel, sources: &[&dyn ByteSource]) -> Result<Self, WeightError> {
        Self::load_with_progress(b, m, sources, &mut |_, _| {})
    }

    /// As [`Weights::load`], calling `progress(bytes_done, bytes_total)` after each tensor.
    pub fn load_with_progress(b: &B, m: &LoadedModel, sources: &[&dyn ByteSource], progress: &mut dyn FnMut(u64, u64)) -> Result<Self, WeightError> {
        let cfg = &m.config;
        let total: u64 = m.files.tensors.iter().map(|t| t.nbytes).sum();
        let done = std::cell::Cell::new(0u64);
        let progress = std::cell::RefCell::new(progress);
        let bytes = |t: &TensorEntry| -> Result<Vec<u8>, WeightError> {
            let src = sources.get(t.file).ok_or_else(|| WeightError::Read { file: format!("file #{}", t.file), tensor: t.name.clone(), message: "no source".into() })?;
            let mut buf = vec![0u8; t.nbytes as usize];
            src.read_exact_at(t.offset, &mut buf).map_err(|e| WeightError::Read { file: src.name().into(), tensor: t.name.clone(), message: e.to_string() })?;
            done.set(done.get() + t.nbytes);
            (progress.borrow_mut())(done.get(), total);
            Ok(buf)
        };
        let upload = |t: &TensorEntry| -> Result<B::Weight, WeightError> {
            let (rows, cols) = match t.shape.0.as_slice() {
                [n] => (1, *n as usize),
                [r, c] => (*r as usize, *c as usize),
                other => return Err(WeightError::Unsupported(format!("tensor {:?} has {} dims", t.name, other.len()))),
            };
            b.upload_weight(t.dtype, rows, cols, &bytes(t)?).map_err(|source| WeightError::Backend { tensor: t.name.clone(), source })
        };
        // Validation guarantees required tensors exist; a missing one here is a bug upstream.
        let get = |id: TensorId| m.tensor(id).ok_or_else(|| WeightError::Unsupported(format!("tensor {} missing after validation", id.gguf_name())));
        let req = |id: TensorId| upload(get(id)?);
        let opt = |id: TensorId| m.tensor(id).map(upload).transpose();
        let g = |part| TensorId::global(part, Param::Weight);
        let embed = req(g(Part::TokenEmbd))?;
        let output = if cfg.tied_embeddings { None } else { Some(req(g(Part::Output))?) };
        let output_norm = req(g(Part::OutputNorm))?;
        let rope_factors = match m.tensor(g(Part::RopeFreqs)) {
            Some(t) => {
                let raw = bytes(t)?;
                let mut v = vec![0f32; t.shape.0.iter().product::<u64>() as usize];
                crate::quant::dequant::dequantize(t.dtype, &raw, &mut v).map_err(|e| WeightError::Unsupported(e.to_string()))?;
                Some(v)
            }
            None => None,
        };
        let mut layers = Vec::with_capacity(cfg.n_layers as usize);
        for l in 0..cfg.n_layers {
            let w = |part| TensorId::layer(l, part, Param::Weight);
            let bias = |part| TensorId::layer(l, part, Param::Bias);
            layers.push(LayerWeights {
                attn_norm: req(w(Part::AttnNorm))?,
                qkv: if cfg.fused_qkv {
                    Qkv::Fused(req(w(Part::AttnQkv))?)
                } else {
                    Qkv::Split { q: req(w(Part::AttnQ))?, k: req(w(Part::AttnK))?, v: req(w(Part::AttnV))? }
                },
                q_bias: opt(bias(Part::AttnQ))?,
                k_bias: opt(bias(Part::AttnK))?,
                v_bias: opt(bias(Part::AttnV))?,
                o: req(w(Part::AttnOutput))?,
                o_bias: opt(bias(Part::AttnOutput))?,
                q_norm: opt(w(Part::AttnQNorm))?,
                k_norm: opt(w(Part::AttnKNorm))?,
                attn_post_norm: opt(w(Part::AttnPostNorm))?,
                ffn_norm: req(w(Part::FfnNorm))?,
                gate_up: if cfg.fused_gate_up {
                    GateUp::Fused(req(w(Part::FfnUp))?)
                } else {
                    GateUp::Split { gate: req(w(Part::FfnGate))?, up: req(w(Part::FfnUp))? }
                },
                down: req(w(Part::FfnDown))?,
                ffn_post_norm: opt(w(Part::FfnPostNorm))?,
            });
        }
        Ok(Weights { embed, output, output_norm, layers, rope_factors })
    }
}
