//! The decoder forward pass, written once against `Backend` from shared blocks: `run`
//! reads top to bottom (embed, then per layer `attention_block` and `ffn_block`, then
//! `head`), every block ending in `residual_add`. Every architecture here (Llama, Qwen2,
//! Qwen3, Gemma 2, Gemma 3, Phi-3) is "pre-norm attention + gated FFN"; what differs is
//! the layer's weights (`layer::LayerWeights`: fused or split projections, biases,
//! QK-norm, post-norms) and data in `ModelConfig` (activation, embedding scale, soft-caps,
//! local/global layers with their RoPE base). The activations live in one `Acts` per pass.
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
use crate::layer::{GateUp, LayerWeights, Qkv};
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
            // The MoE FFN's op comes with its block (issue 29); the loader refuses MoE files.
            (p, _) if p.is_expert() || p == Part::FfnGateInp => {}
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

/// A pass's sizes: `t` stacked rows, the model's widths, and the rows of its widest
/// sequence (the per-sequence attention scratch holds that many).
#[derive(Clone, Copy)]
struct Dims {
    t: usize,
    widest: usize,
    h: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    hdv: usize,
    ff: usize,
}

impl Dims {
    fn new(cfg: &ModelConfig, t: usize, widest: usize) -> Dims {
        let u = |v: u32| v as usize;
        Dims { t, widest, h: u(cfg.hidden_size), nh: u(cfg.n_heads), nkv: u(cfg.n_kv_heads), hd: u(cfg.head_dim), hdv: u(cfg.head_dim_v), ff: u(cfg.intermediate_size) }
    }
    /// Width of a fused Q|K|V row (Phi-3).
    fn qkv_width(&self) -> usize {
        self.nh * self.hd + self.nkv * self.hd + self.nkv * self.hdv
    }
}

/// The activations of one pass, reused by every layer (row-major, `t` rows). Those only
/// some models or batches need are allocated when a layer first needs them.
struct Acts<B: Backend> {
    x: B::Buf,      // [t, h] the residual stream
    xn: B::Buf,     // [t, h] a block's normed input
    q: B::Buf,      // [t, nh * hd]
    k: B::Buf,      // [t, nkv * hd]
    v: B::Buf,      // [t, nkv * hdv]
    attn: B::Buf,   // [t, nh * hdv]
    proj: B::Buf,   // [t, h] a block's output, before the residual add
    gate: B::Buf,   // [t, ff]
    up: B::Buf,     // [t, ff]
    act: B::Buf,    // [t, ff]
    qn: Option<B::Buf>,   // [t, nh * hd]  QK-norm
    kn: Option<B::Buf>,   // [t, nkv * hd]
    post: Option<B::Buf>, // [t, h] post-norms (Gemma)
    wide_qkv: Option<B::Buf>, // [t, qkv_width] a fused Q|K|V projection (Phi-3)
    wide_ffn: Option<B::Buf>, // [t, 2 * ff] a fused gate|up projection (Phi-3)
    q_one: Option<B::Buf>,    // [widest, nh * hd] one sequence's queries (a batch of several)
    attn_one: Option<B::Buf>, // [widest, nh * hdv]
}

impl<B: Backend> Acts<B> {
    fn new(b: &B, d: &Dims) -> Result<Self, BackendError> {
        let t = d.t;
        Ok(Acts {
            x: b.alloc(t * d.h)?,
            xn: b.alloc(t * d.h)?,
            q: b.alloc(t * d.nh * d.hd)?,
            k: b.alloc(t * d.nkv * d.hd)?,
            v: b.alloc(t * d.nkv * d.hdv)?,
            attn: b.alloc(t * d.nh * d.hdv)?,
            proj: b.alloc(t * d.h)?,
            gate: b.alloc(t * d.ff)?,
            up: b.alloc(t * d.ff)?,
            act: b.alloc(t * d.ff)?,
            qn: None,
            kn: None,
            post: None,
            wide_qkv: None,
            wide_ffn: None,
            q_one: None,
            attn_one: None,
        })
    }
}

/// `proj` through a block's post-norm when it has one (Gemma), then added to the residual
/// stream `x`.
fn residual_add<B: Backend>(net: &Net<'_, B>, d: &Dims, x: &mut B::Buf, proj: &mut B::Buf, post_norm: Option<&B::Weight>, post: &mut Option<B::Buf>) -> Result<(), BackendError> {
    let (b, cfg) = (net.backend, net.cfg);
    if let Some(pn) = post_norm {
        let post = scratch(b, post, d.t * d.h)?;
        b.rms_norm(proj, d.t, d.h, pn, cfg.norm_eps, cfg.norm_weight_offset, post)?;
        std::mem::swap(proj, post);
    }
    b.add(x, proj, d.t * d.h)
}

/// The attention block of layer `l`: `x += post_norm(o(attend(rope(qk_norm(qkv(norm(x)))))))`,
/// each sequence's K/V appended to its own cache and attended over alone.
fn attention_block<B: Backend>(net: &Net<'_, B>, a: &mut Acts<B>, d: &Dims, lw: &LayerWeights<B::Weight>, l: usize, batch: &mut [Seq<'_, B>], positions: &[u32]) -> Result<(), BackendError> {
    let (b, cfg) = (net.backend, net.cfg);
    let Dims { t, nh, nkv, hd, hdv, .. } = *d;
    let (eps, off) = (cfg.norm_eps, cfg.norm_weight_offset);
    b.rms_norm(&a.x, t, d.h, &lw.attn_norm, eps, off, &mut a.xn)?;
    match &lw.qkv {
        Qkv::Split { q: wq, k: wk, v: wv } => {
            b.matmul(&a.xn, t, wq, &mut a.q)?;
            b.matmul(&a.xn, t, wk, &mut a.k)?;
            b.matmul(&a.xn, t, wv, &mut a.v)?;
        }
        Qkv::Fused(wqkv) => {
            let width = d.qkv_width();
            let wide = scratch(b, &mut a.wide_qkv, t * width)?;
            b.matmul(&a.xn, t, wqkv, wide)?;
            b.copy_cols(&mut a.q, wide, t, width, 0, nh * hd)?;
            b.copy_cols(&mut a.k, wide, t, width, nh * hd, nkv * hd)?;
            b.copy_cols(&mut a.v, wide, t, width, nh * hd + nkv * hd, nkv * hdv)?;
        }
    }
    for (bias, out) in [(&lw.q_bias, &mut a.q), (&lw.k_bias, &mut a.k), (&lw.v_bias, &mut a.v)] {
        if let Some(bias) = bias {
            b.add_bias(out, t, bias)?;
        }
    }
    // QK-norm: RMS norm over each head's head_dim values.
    if let (Some(qw), Some(kw)) = (&lw.q_norm, &lw.k_norm) {
        let (qn, kn) = (scratch(b, &mut a.qn, t * nh * hd)?, scratch(b, &mut a.kn, t * nkv * hd)?);
        b.rms_norm(&a.q, t * nh, hd, qw, eps, off, qn)?;
        b.rms_norm(&a.k, t * nkv, hd, kw, eps, off, kn)?;
        std::mem::swap(&mut a.q, qn);
        std::mem::swap(&mut a.k, kn);
    }
    // RoPE at the tokens' absolute positions, with this layer's frequencies.
    let kind = cfg.layer_attention[l];
    let rope_args = RopeArgs { rope_dim: cfg.rope_dim as usize, style: cfg.rope_style, inv_freq: net.rope.for_layer(kind), mscale: net.rope.mscale, positions };
    b.rope(&mut a.q, nh, hd, &rope_args)?;
    b.rope(&mut a.k, nkv, hd, &rope_args)?;
    attend_each_sequence(net, a, d, l, batch)?;
    b.matmul(&a.attn, t, &lw.o, &mut a.proj)?;
    if let Some(bias) = &lw.o_bias {
        b.add_bias(&mut a.proj, t, bias)?;
    }
    residual_add(net, d, &mut a.x, &mut a.proj, lw.attn_post_norm.as_ref(), &mut a.post)
}

/// Per sequence: append its K/V rows to its cache, then attend over everything it has
/// cached (never another sequence's rows). A batch of one attends in place; a batch of
/// several copies each sequence's queries out of the stacked rows and its outputs back.
fn attend_each_sequence<B: Backend>(net: &Net<'_, B>, a: &mut Acts<B>, d: &Dims, l: usize, batch: &mut [Seq<'_, B>]) -> Result<(), BackendError> {
    let (b, cfg) = (net.backend, net.cfg);
    let Dims { nh, nkv, hd, hdv, widest, .. } = *d;
    let window = match cfg.layer_attention[l] {
        LayerAttention::Local => cfg.sliding_window.map(|w| w as usize),
        LayerAttention::Global => None,
    };
    let alone = batch.len() == 1;
    let mut r0 = 0;
    for s in batch.iter_mut() {
        let (n, past) = (s.tokens.len(), s.kv.len);
        let (kc, vc) = &mut s.kv.layers[l];
        b.copy_rows(kc, past, &a.k, r0, n, nkv * hd)?;
        b.copy_rows(vc, past, &a.v, r0, n, nkv * hdv)?;
        let args = AttnArgs { tokens: n, past, n_heads: nh, n_kv_heads: nkv, head_dim: hd, head_dim_v: hdv, scale: cfg.attention_scale, window, softcap: cfg.attn_logit_softcap };
        if alone {
            b.attention(&a.q, kc, vc, &args, &mut a.attn)?;
        } else {
            let (qs, out) = (scratch(b, &mut a.q_one, widest * nh * hd)?, scratch(b, &mut a.attn_one, widest * nh * hdv)?);
            b.copy_rows(qs, 0, &a.q, r0, n, nh * hd)?;
            b.attention(qs, kc, vc, &args, out)?;
            b.copy_rows(&mut a.attn, r0, out, 0, n, nh * hdv)?;
        }
        r0 += n;
    }
    Ok(())
}

/// The feed-forward block: `x += post_norm(down(act(gate(norm(x))) * up(norm(x))))`.
/// (A mixture-of-experts FFN is the other block a layer will choose here: issue 29.)
fn ffn_block<B: Backend>(net: &Net<'_, B>, a: &mut Acts<B>, d: &Dims, lw: &LayerWeights<B::Weight>) -> Result<(), BackendError> {
    let (b, cfg) = (net.backend, net.cfg);
    let Dims { t, h, ff, .. } = *d;
    b.rms_norm(&a.x, t, h, &lw.ffn_norm, cfg.norm_eps, cfg.norm_weight_offset, &mut a.xn)?;
    match &lw.gate_up {
        GateUp::Split { gate: wg, up: wu } => {
            b.matmul(&a.xn, t, wg, &mut a.gate)?;
            b.matmul(&a.xn, t, wu, &mut a.up)?;
        }
        GateUp::Fused(wgu) => {
            let wide = scratch(b, &mut a.wide_ffn, t * 2 * ff)?;
            b.matmul(&a.xn, t, wgu, wide)?;
            b.copy_cols(&mut a.gate, wide, t, 2 * ff, 0, ff)?;
            b.copy_cols(&mut a.up, wide, t, 2 * ff, ff, ff)?;
        }
    }
    b.gated(&a.gate, &a.up, t * ff, cfg.activation, &mut a.act)?;
    b.matmul(&a.act, t, &lw.down, &mut a.proj)?;
    residual_add(net, d, &mut a.x, &mut a.proj, lw.ffn_post_norm.as_ref(), &mut a.post)
}

/// The forward pass, top to bottom: embed the batch's stacked tokens, run each layer's
/// attention and FFN blocks, then the final norm and the output head on the rows asked for.
fn run<B: Backend>(net: &Net<'_, B>, batch: &mut [Seq<'_, B>], probe: bool) -> Result<B::Buf, ForwardError> {
    let Net { backend: b, cfg, weights: w, .. } = *net;
    check_batch(batch, cfg)?;
    let rows = Rows::new(batch);
    let d = Dims::new(cfg, rows.len, batch.iter().map(|s| s.tokens.len()).max().unwrap_or(0));
    let mut a = Acts::new(b, &d)?;
    // Token embeddings: x [t, h] (Gemma scales them by sqrt(hidden)).
    b.embed(&w.embed, rows.ids(), cfg.embedding_scale.unwrap_or(1.0), &mut a.x)?;
    for l in 0..w.layers.len() {
        // Resident, or streamed into a device slot now (the next one is being read).
        let lw = w.layer(b, l)?;
        attention_block(net, &mut a, &d, &lw, l, batch, rows.positions())?;
        ffn_block(net, &mut a, &d, &lw)?;
        if probe && b.all_finite(&a.x, d.t * d.h) == Some(false) {
            return Err(BackendError::NonFinite { layer: l }.into());
        }
    }
    for s in batch.iter_mut() {
        s.kv.len += s.tokens.len();
    }
    Ok(head(net, &mut a, &d, batch)?)
}

/// Final norm and output head for the rows asked for (each sequence's last row, or all of
/// its rows), stacked in batch order: logits `[rows, vocab]`.
fn head<B: Backend>(net: &Net<'_, B>, a: &mut Acts<B>, d: &Dims, batch: &[Seq<'_, B>]) -> Result<B::Buf, BackendError> {
    let (b, cfg, w) = (net.backend, net.cfg, net.weights);
    let h = d.h;
    let out_rows: usize = batch.iter().map(Seq::logit_rows).sum();
    let mut last = b.alloc(out_rows * h)?;
    let (mut r0, mut o) = (0, 0);
    for s in batch {
        let (n, m) = (s.tokens.len(), s.logit_rows());
        b.copy_rows(&mut last, o, &a.x, r0 + n - m, m, h)?;
        (r0, o) = (r0 + n, o + m);
    }
    b.rms_norm(&last, out_rows, h, &w.output_norm, cfg.norm_eps, cfg.norm_weight_offset, &mut a.xn)?;
    let vocab = cfg.vocab_size as usize;
    let mut out = b.alloc(out_rows * vocab)?;
    b.matmul(&a.xn, out_rows, w.output(), &mut out)?;
    if let Some(cap) = cfg.final_logit_softcap {
        b.softcap(&mut out, out_rows * vocab, cap)?;
    }
    Ok(out)
}
