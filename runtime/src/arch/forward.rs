//! The decoder forward pass, written once against `Backend` for every architecture whose
//! block is "pre-norm attention + gated FFN" (Llama, Qwen2, Qwen3, Gemma 2, Gemma 3, Phi-3). What
//! differs between them is data in `ModelConfig` (fused projections, biases, QK-norm, post-norms, activation,
//! embedding scale, soft-caps, local/global layers with their RoPE base).
//!
//! Activations are `[rows, width]` for any number of rows: a single-token decode step is
//! the same code with one row. A forward pass takes a *batch*: one or more sequences, each
//! with its own KV cache and its tokens at that cache's next positions (token `i` of a
//! sequence sits at `kv.len + i`). Their rows are stacked, so every projection, norm and
//! FFN reads its weights once for the whole batch; only the KV append and attention run per
//! sequence, so attention never crosses sequences. One batch may prefill one sequence while
//! others decode a token each.

use crate::arch::{Param, Part, TensorId};
use crate::model::expected_tensors;
use crate::backend::{AttnArgs, Backend, BackendError, Op, RopeArgs};
use crate::kv_cache::KvCache;
use crate::model::{LayerAttention, LoadedModel, ModelConfig};
use crate::rope::RopeTables;
use crate::layer::{GateUp, Qkv};
use crate::weights::{WeightError, Weights};

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

/// One sequence's part of a batch: its KV cache, the tokens to append to it, and which of
/// their logits to return.
pub struct Seq<'a, B: Backend> {
    pub kv: &'a mut KvCache<B>,
    pub tokens: &'a [u32],
    pub logits: Logits,
}

impl<B: Backend> Seq<'_, B> {
    /// Logit rows this sequence contributes to the batch's output.
    pub fn logit_rows(&self) -> usize {
        match self.logits {
            Logits::All => self.tokens.len(),
            Logits::Last => 1,
        }
    }
}

impl<B: Backend> Net<'_, B> {
    /// Runs `tokens` through the model, appending their K/V to `kv`, and returns the
    /// logits (`[1 or tokens, vocab]`, row-major, on the device).
    pub fn forward(&self, kv: &mut KvCache<B>, tokens: &[u32], logits: Logits) -> Result<B::Buf, ForwardError> {
        run(self, &mut [Seq { kv, tokens, logits }], false)
    }

    /// Runs a batch of sequences in one pass and returns their logits stacked in batch
    /// order (`[sum of logit_rows, vocab]`). Each sequence's result equals what `forward`
    /// gives it alone (bit for bit on the reference backend). On an error no cache advances.
    pub fn forward_batch(&self, batch: &mut [Seq<'_, B>]) -> Result<B::Buf, ForwardError> {
        run(self, batch, false)
    }

    /// The first layer whose output holds a NaN or an infinity when `tokens` run after the
    /// cache's contents (`None`: every layer finite), for error reports: the same pass
    /// with a finiteness check after each layer.
    pub fn first_non_finite_layer(&self, kv: &mut KvCache<B>, tokens: &[u32]) -> Result<Option<usize>, ForwardError> {
        match run(self, &mut [Seq { kv, tokens, logits: Logits::Last }], true) {
            Ok(_) => Ok(None),
            Err(ForwardError::Backend(BackendError::NonFinite { layer })) => Ok(Some(layer)),
            Err(e) => Err(e),
        }
    }
}

/// Every distinct op a forward pass of `model` runs for one token, with the tensor it reads
/// where it reads one: what a session asks its backend (`Backend::supports_op`) before it
/// uploads a byte. (More tokens change sizes, not which ops and kernels run.)
pub fn ops_of(model: &LoadedModel) -> Vec<(Op, Option<TensorId>)> {
    let cfg = &model.config;
    let mut ops: Vec<(Op, Option<TensorId>)> = Vec::new();
    let mut add = |op: Op, id: Option<TensorId>| {
        if !ops.iter().any(|(o, _)| *o == op) {
            ops.push((op, id));
        }
    };
    let dims = |shape: &[u64]| (shape[0] as usize, shape.get(1).map_or(1, |&c| c as usize));
    for spec in expected_tensors(cfg) {
        let Some(t) = model.tensor(spec.id) else { continue };
        let (dtype, id) = (t.dtype, Some(spec.id));
        let (rows, cols) = dims(&spec.shape);
        // A vector's one dimension is its length.
        let len = rows * cols;
        match (spec.id.part, spec.id.param) {
            (p, _) if p.is_rope_factors() => {}
            (Part::TokenEmbd, _) => {
                add(Op::Embed { dtype, vocab: rows, cols, tokens: 1 }, id);
                if cfg.tied_embeddings {
                    add(Op::Matmul { dtype, rows: 1, n: rows, k: cols }, id);
                }
            }
            (p, _) if p.is_norm() => add(Op::RmsNorm { dtype, rows: 1, cols: len }, id),
            (_, Param::Bias) => add(Op::AddBias { dtype, rows: 1, cols: len }, id),
            _ => add(Op::Matmul { dtype, rows: 1, n: rows, k: cols }, id),
        }
    }
    let (nh, nkv, hd, hdv) = (cfg.n_heads as usize, cfg.n_kv_heads as usize, cfg.head_dim as usize, cfg.head_dim_v as usize);
    for heads in [nh, nkv] {
        add(Op::Rope { style: cfg.rope_style, tokens: 1, heads, head_dim: hd, rope_dim: cfg.rope_dim as usize }, None);
    }
    for kind in &cfg.layer_attention {
        let window = *kind == LayerAttention::Local && cfg.sliding_window.is_some();
        let op = Op::Attention { tokens: 1, past: 0, n_heads: nh, n_kv_heads: nkv, head_dim: hd, head_dim_v: hdv, window, softcap: cfg.attn_logit_softcap.is_some() };
        add(op, None);
    }
    let ff = cfg.intermediate_size as usize;
    add(Op::CopyRows { rows: 1, width: nkv * hd }, None);
    add(Op::Gated { act: cfg.activation, n: ff }, None);
    add(Op::Add { n: cfg.hidden_size as usize }, None);
    if cfg.fused_qkv {
        add(Op::CopyCols { rows: 1, src_width: nh * hd + nkv * hd + nkv * hdv, col: 0, cols: nh * hd }, None);
    }
    if cfg.fused_gate_up {
        add(Op::CopyCols { rows: 1, src_width: 2 * ff, col: 0, cols: ff }, None);
    }
    if cfg.final_logit_softcap.is_some() {
        add(Op::Softcap { n: cfg.vocab_size as usize }, None);
    }
    ops
}

/// The first op of `model` that `b` declines, as the `Unsupported` error a session gives
/// before uploading anything (naming the tensor where the op reads one).
pub fn check_supported<B: Backend>(b: &B, model: &LoadedModel) -> Result<(), BackendError> {
    match ops_of(model).into_iter().find(|(op, _)| !b.supports_op(op)) {
        None => Ok(()),
        Some((op, id)) => {
            let what = match id.and_then(|id| model.tensor(id)) {
                Some(t) => format!("{} (tensor {:?})", op.describe(), t.name),
                None => op.describe(),
            };
            Err(BackendError::Unsupported { backend: b.name(), what })
        }
    }
}

/// Rows a batch holds on the stack (token ids and positions) before it needs a vector:
/// batched decode steps of up to this many sequences allocate nothing.
const STACK_ROWS: usize = 64;

/// A batch's stacked token ids and positions, on the stack when they fit.
struct Rows {
    ids: [u32; STACK_ROWS],
    positions: [u32; STACK_ROWS],
    heap: Option<(Vec<u32>, Vec<u32>)>,
    len: usize,
}

impl Rows {
    fn new<B: Backend>(batch: &[Seq<'_, B>]) -> Rows {
        let len = batch.iter().map(|s| s.tokens.len()).sum();
        let mut r = Rows { ids: [0; STACK_ROWS], positions: [0; STACK_ROWS], heap: None, len };
        let (ids, positions): (&mut [u32], &mut [u32]) = if len <= STACK_ROWS {
            (&mut r.ids, &mut r.positions)
        } else {
            let (i, p) = r.heap.insert((vec![0; len], vec![0; len]));
            (i, p)
        };
        let mut row = 0;
        for s in batch {
            for (i, &id) in s.tokens.iter().enumerate() {
                ids[row] = id;
                positions[row] = (s.kv.len + i) as u32;
                row += 1;
            }
        }
        r
    }
    fn ids(&self) -> &[u32] {
        match &self.heap {
            Some((i, _)) => i,
            None => &self.ids[..self.len],
        }
    }
    fn positions(&self) -> &[u32] {
        match &self.heap {
            Some((_, p)) => p,
            None => &self.positions[..self.len],
        }
    }
}

/// The checks a batch must pass before anything runs: sequences present, each with tokens
/// that fit its cache. Errors name the sequence by its index in the batch.
fn check_batch<B: Backend>(batch: &[Seq<'_, B>], cfg: &ModelConfig) -> Result<(), BackendError> {
    let shape = |message: String| BackendError::Shape { op: "forward", message };
    if batch.is_empty() {
        return Err(shape("an empty batch (no sequences)".into()));
    }
    let name = |i: usize| if batch.len() == 1 { String::new() } else { format!("sequence {i} of the batch: ") };
    for (i, s) in batch.iter().enumerate() {
        if s.tokens.is_empty() {
            return Err(shape(format!("{}no tokens", name(i))));
        }
        let (k_width, v_width) = ((cfg.n_kv_heads * cfg.head_dim) as usize, (cfg.n_kv_heads * cfg.head_dim_v) as usize);
        if s.kv.layers.len() != cfg.n_layers as usize || s.kv.k_width != k_width || s.kv.v_width != v_width {
            return Err(shape(format!(
                "{}a KV cache of {} layers of K/V rows {}/{} wide, for a model of {} layers of {k_width}/{v_width}: a cache made for another model",
                name(i),
                s.kv.layers.len(),
                s.kv.k_width,
                s.kv.v_width,
                cfg.n_layers
            )));
        }
        if s.kv.len + s.tokens.len() > s.kv.capacity {
            return Err(shape(format!("{}{} positions exceed the KV cache capacity {}", name(i), s.kv.len + s.tokens.len(), s.kv.capacity)));
        }
    }
    Ok(())
}

/// The buffer in `slot`, allocated (`len` values) on first use.
fn scratch<'a, B: Backend>(b: &B, slot: &'a mut Option<B::Buf>, len: usize) -> Result<&'a mut B::Buf, BackendError> {
    match slot {
        Some(buf) => Ok(buf),
        None => Ok(slot.insert(b.alloc(len)?)),
    }
}

fn run<B: Backend>(net: &Net<'_, B>, batch: &mut [Seq<'_, B>], probe: bool) -> Result<B::Buf, ForwardError> {
    let Net { backend: b, cfg, weights: w, rope } = *net;
    check_batch(batch, cfg)?;
    let rows = Rows::new(batch);
    let t = rows.len;
    // Rows of the widest sequence: the per-sequence attention scratch holds that many.
    let widest = batch.iter().map(|s| s.tokens.len()).max().unwrap_or(0);
    let alone = batch.len() == 1;
    let h = cfg.hidden_size as usize;
    let (nh, nkv) = (cfg.n_heads as usize, cfg.n_kv_heads as usize);
    let (hd, hdv) = (cfg.head_dim as usize, cfg.head_dim_v as usize);
    let ff = cfg.intermediate_size as usize;
    let eps = cfg.norm_eps;
    let off = cfg.norm_weight_offset;
    let positions = rows.positions();

    // Token embeddings: x [t, h] (Gemma scales them by sqrt(hidden)).
    let mut x = b.alloc(t * h)?;
    b.embed(&w.embed, rows.ids(), cfg.embedding_scale.unwrap_or(1.0), &mut x)?;

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
    // A batch of several sequences attends one sequence at a time: its queries are copied
    // out of the stacked rows and its outputs back (a batch of one attends in place).
    let (mut q_one, mut attn_one) = (None, None);

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

        // Per sequence: append its K/V to its cache, then attend over everything it has
        // cached (never another sequence's rows).
        let window = match kind {
            LayerAttention::Local => cfg.sliding_window.map(|w| w as usize),
            LayerAttention::Global => None,
        };
        let mut r0 = 0;
        for s in batch.iter_mut() {
            let (n, past) = (s.tokens.len(), s.kv.len);
            let (kc, vc) = &mut s.kv.layers[l];
            b.copy_rows(kc, past, &k, r0, n, nkv * hd)?;
            b.copy_rows(vc, past, &v, r0, n, nkv * hdv)?;
            let args = AttnArgs {
                tokens: n,
                past,
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
                head_dim_v: hdv,
                scale: cfg.attention_scale,
                window,
                softcap: cfg.attn_logit_softcap,
            };
            if alone {
                b.attention(&q, kc, vc, &args, &mut attn)?;
            } else {
                let (qs, out) = (scratch(b, &mut q_one, widest * nh * hd)?, scratch(b, &mut attn_one, widest * nh * hdv)?);
                b.copy_rows(qs, 0, &q, r0, n, nh * hd)?;
                b.attention(qs, kc, vc, &args, out)?;
                b.copy_rows(&mut attn, r0, out, 0, n, nh * hdv)?;
            }
            r0 += n;
        }
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
    for s in batch.iter_mut() {
        s.kv.len += s.tokens.len();
    }

    // Final norm and output head, for the rows asked for (each sequence's last row, or
    // all of its rows), stacked in batch order.
    let out_rows: usize = batch.iter().map(Seq::logit_rows).sum();
    let mut last = b.alloc(out_rows * h)?;
    let (mut r0, mut o) = (0, 0);
    for s in batch.iter() {
        let (n, m) = (s.tokens.len(), s.logit_rows());
        b.copy_rows(&mut last, o, &x, r0 + n - m, m, h)?;
        (r0, o) = (r0 + n, o + m);
    }
    b.rms_norm(&last, out_rows, h, &w.output_norm, eps, off, &mut xn)?;
    let vocab = cfg.vocab_size as usize;
    let mut out = b.alloc(out_rows * vocab)?;
    b.matmul(&xn, out_rows, w.output(), &mut out)?;
    if let Some(cap) = cfg.final_logit_softcap {
        b.softcap(&mut out, out_rows * vocab, cap)?;
    }
    Ok(out)
}
