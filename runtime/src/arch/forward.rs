//! The decoder forward pass, written once against `Backend` for every architecture whose
//! block is "pre-norm attention + gated FFN" (Llama, Qwen2, Qwen3, Gemma 2, Gemma 3, Phi-3). What
//! differs between them is data in `ModelConfig` (fused projections, biases, QK-norm, post-norms, activation,
//! embedding scale, soft-caps, local/global layers with their RoPE base).
//!
//! Activations are `[tokens, width]` for any number of tokens: a single-token decode step is
//! the same code with `tokens = 1`. Token `i` of a call sits at position `kv.len + i`.

use crate::backend::{AttnArgs, Backend, BackendError, RopeArgs};
use crate::kv_cache::KvCache;
use crate::model::{LayerAttention, ModelConfig};
use crate::rope::RopeTables;
use crate::weights::{GateUp, Qkv, WeightError, Weights};

/// Why a forward pass failed: an op, or a streamed layer's weights.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Weights(#[from] WeightError),
}

/// Which positions to compute logits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token (generation).
    Last,
    /// Every token of the call (teacher forcing, scoring).
    All,
}

/// What a forward pass reads: the backend, the model's configuration, its weights and its
/// RoPE tables (everything but the KV cache, which it appends to).
pub struct Net<'a, B: Backend> {
    pub backend: &'a B,
    pub cfg: &'a ModelConfig,
    pub weights: &'a Weights<B>,
    pub rope: &'a RopeTables,
}

impl<B: Backend> Net<'_, B> {
    /// Runs `tokens` through the model, appending their K/V to `kv`, and returns the
    /// logits (`[1 or tokens, vocab]`, row-major, on the device).
    pub fn forward(&self, kv: &mut KvCache<B>, tokens: &[u32], logits: Logits) -> Result<B::Buf, ForwardError> {
        run(self, kv, tokens, logits, false)
    }

    /// The first layer whose output holds a NaN or an infinity when `tokens` run after the
    /// cache's contents (`None`: every layer finite), for error reports: the same pass
    /// with a finiteness check after each layer.
    pub fn first_non_finite_layer(&self, kv: &mut KvCache<B>, tokens: &[u32]) -> Result<Option<usize>, ForwardError> {
        match run(self, kv, tokens, Logits::Last, true) {
            Ok(_) => Ok(None),
            Err(ForwardError::Backend(BackendError::NonFinite { layer })) => Ok(Some(layer)),
            Err(e) => Err(e),
        }
    }
}

/// The buffer in `slot`, allocated (`len` values) on first use.
fn scratch<'a, B: Backend>(b: &B, slot: &'a mut Option<B::Buf>, len: usize) -> Result<&'a mut B::Buf, BackendError> {
    match slot {
        Some(buf) => Ok(buf),
        None => Ok(slot.insert(b.alloc(len)?)),
    }
}

fn run<B: Backend>(net: &Net<'_, B>, kv: &mut KvCache<B>, tokens: &[u32], logits: Logits, probe: bool) -> Result<B::Buf, ForwardError> {
    let Net { backend: b, cfg, weights: w, rope } = *net;
    let t = tokens.len();
    let past = kv.len;
    if t == 0 {
        return Err(BackendError::Shape { op: "forward", message: "no tokens".into() }.into());
    }
    if past + t > kv.capacity {
        return Err(BackendError::Shape { op: "forward", message: format!("{} positions exceed the KV cache capacity {}", past + t, kv.capacity) }.into());
    }
    let h = cfg.hidden_size as usize;
    let (nh, nkv) = (cfg.n_heads as usize, cfg.n_kv_heads as usize);
    let (hd, hdv) = (cfg.head_dim as usize, cfg.head_dim_v as usize);
    let ff = cfg.intermediate_size as usize;
    let eps = cfg.norm_eps;
    let off = cfg.norm_weight_offset;
    // (A decode step's one position needs no allocation.)
    let (one, many): ([u32; 1], Vec<u32>);
    let positions: &[u32] = if t == 1 {
        one = [past as u32];
        &one
    } else {
        many = (past..past + t).map(|p| p as u32).collect();
        &many
    };

    // Token embeddings: x [t, h] (Gemma scales them by sqrt(hidden)).
    let mut x = b.alloc(t * h)?;
    b.embed(&w.embed, tokens, cfg.embedding_scale.unwrap_or(1.0), &mut x)?;

    let mut xn = b.alloc(t * h)?;
    let mut q = b.alloc(t * nh * hd)?;
    let mut k = b.alloc(t * nkv * hd)?;
    let mut v = b.alloc(t * nkv * hdv)?;
    let mut attn = b.alloc(t * nh * hdv)?;
    let mut proj = b.alloc(t * h)?;
    // Only for QK-norm and post-norms (Gemma): allocated when a layer first needs them.
    let (mut qn, mut kn, mut post) = (None, None, None);
    let mut gate = b.alloc(t * ff)?;
    let mut up = b.alloc(t * ff)?;
    let mut act = b.alloc(t * ff)?;
    // Fused projections (Phi-3) land here first, then split by columns.
    let qkv_width = nh * hd + nkv * hd + nkv * hdv;
    let (fused_qkv, fused_ffn) = (cfg.fused_qkv, cfg.fused_gate_up);
    let mut wide_qkv = if fused_qkv { Some(b.alloc(t * qkv_width)?) } else { None };
    let mut wide_ffn = if fused_ffn { Some(b.alloc(t * 2 * ff)?) } else { None };

    for l in 0..w.layers.len() {
        let kind = cfg.layer_attention[l];
        // Resident, or streamed into a device slot now (the next one is being read).
        let lw = w.layer(b, l)?;

        // Attention block: xn = norm(x); q, k, v projections (+ biases).
        b.rms_norm(&x, t, h, &lw.attn_norm, eps, off, &mut xn)?;
        match (&lw.qkv, wide_qkv.as_mut()) {
            (Qkv::Split { q: wq, k: wk, v: wv }, _) => {
                b.matmul(&xn, t, wq, &mut q)?;
                b.matmul(&xn, t, wk, &mut k)?;
                b.matmul(&xn, t, wv, &mut v)?;
            }
            (Qkv::Fused(wqkv), Some(wide)) => {
                b.matmul(&xn, t, wqkv, wide)?;
                b.copy_cols(&mut q, wide, t, qkv_width, 0, nh * hd)?;
                b.copy_cols(&mut k, wide, t, qkv_width, nh * hd, nkv * hd)?;
                b.copy_cols(&mut v, wide, t, qkv_width, nh * hd + nkv * hd, nkv * hdv)?;
            }
            (Qkv::Fused(_), None) => unreachable!("allocated above when any layer is fused"),
        }
        if let Some(bias) = &lw.q_bias {
            b.add_bias(&mut q, t, bias)?;
        }
        if let Some(bias) = &lw.k_bias {
            b.add_bias(&mut k, t, bias)?;
        }
        if let Some(bias) = &lw.v_bias {
            b.add_bias(&mut v, t, bias)?;
        }
        // QK-norm: RMS norm over each head's head_dim values.
        if let (Some(qw), Some(kw)) = (&lw.q_norm, &lw.k_norm) {
            let (qn, kn) = (scratch(b, &mut qn, t * nh * hd)?, scratch(b, &mut kn, t * nkv * hd)?);
            b.rms_norm(&q, t * nh, hd, qw, eps, off, qn)?;
            b.rms_norm(&k, t * nkv, hd, kw, eps, off, kn)?;
            std::mem::swap(&mut q, qn);
            std::mem::swap(&mut k, kn);
        }
        // RoPE at the tokens' absolute positions, with this layer's frequencies.
        let rope_args = RopeArgs {
            rope_dim: cfg.rope_dim as usize,
            style: cfg.rope_style,
            inv_freq: rope.for_layer(kind),
            mscale: rope.mscale,
            positions,
        };
        b.rope(&mut q, nh, hd, &rope_args)?;
        b.rope(&mut k, nkv, hd, &rope_args)?;

        // Append this step's K/V to the cache, then attend over everything cached.
        let (kc, vc) = &mut kv.layers[l];
        b.copy_rows(kc, past, &k, 0, t, nkv * hd)?;
        b.copy_rows(vc, past, &v, 0, t, nkv * hdv)?;
        let args = AttnArgs {
            tokens: t,
            past,
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            head_dim_v: hdv,
            scale: cfg.attention_scale,
            window: match kind {
                LayerAttention::Local => cfg.sliding_window.map(|w| w as usize),
                LayerAttention::Global => None,
            },
            softcap: cfg.attn_logit_softcap,
        };
        b.attention(&q, kc, vc, &args, &mut attn)?;
        b.matmul(&attn, t, &lw.o, &mut proj)?;
        if let Some(bias) = &lw.o_bias {
            b.add_bias(&mut proj, t, bias)?;
        }
        if let Some(pn) = &lw.attn_post_norm {
            let post = scratch(b, &mut post, t * h)?;
            b.rms_norm(&proj, t, h, pn, eps, off, post)?;
            std::mem::swap(&mut proj, post);
        }
        b.add(&mut x, &proj, t * h)?;

        // FFN block: x += down(act(gate(norm(x))) * up(norm(x))).
        b.rms_norm(&x, t, h, &lw.ffn_norm, eps, off, &mut xn)?;
        match (&lw.gate_up, wide_ffn.as_mut()) {
            (GateUp::Split { gate: wg, up: wu }, _) => {
                b.matmul(&xn, t, wg, &mut gate)?;
                b.matmul(&xn, t, wu, &mut up)?;
            }
            (GateUp::Fused(wgu), Some(wide)) => {
                b.matmul(&xn, t, wgu, wide)?;
                b.copy_cols(&mut gate, wide, t, 2 * ff, 0, ff)?;
                b.copy_cols(&mut up, wide, t, 2 * ff, ff, ff)?;
            }
            (GateUp::Fused(_), None) => unreachable!("allocated above when any layer is fused"),
        }
        b.gated(&gate, &up, t * ff, cfg.activation, &mut act)?;
        b.matmul(&act, t, &lw.down, &mut proj)?;
        if let Some(pn) = &lw.ffn_post_norm {
            let post = scratch(b, &mut post, t * h)?;
            b.rms_norm(&proj, t, h, pn, eps, off, post)?;
            std::mem::swap(&mut proj, post);
        }
        b.add(&mut x, &proj, t * h)?;
        if probe && b.all_finite(&x, t * h) == Some(false) {
            return Err(BackendError::NonFinite { layer: l }.into());
        }
    }
    kv.len = past + t;

    // Final norm and output head, for the rows asked for.
    let rows = match logits {
        Logits::All => t,
        Logits::Last => 1,
    };
    let mut last = b.alloc(rows * h)?;
    b.copy_rows(&mut last, 0, &x, t - rows, rows, h)?;
    b.rms_norm(&last, rows, h, &w.output_norm, eps, off, &mut xn)?;
    let vocab = cfg.vocab_size as usize;
    let mut out = b.alloc(rows * vocab)?;
    b.matmul(&xn, rows, w.output(), &mut out)?;
    if let Some(cap) = cfg.final_logit_softcap {
        b.softcap(&mut out, rows * vocab, cap)?;
    }
    Ok(out)
}
