//! A decoder layer's tensors, defined once: the struct of its weights and the order its
//! tensors are listed, uploaded, streamed and cached in are both the field order of the
//! one `layer_weights!` declaration below, and [`layer_ids`] is the one place that says
//! which tensor fills each field. Below the weight store (`weights`) and the streamer
//! (`streaming`), which both build on it.

use crate::arch::{Param, Part, TensorId};
use crate::model::{LoadedModel, ModelConfig, TensorEntry};

/// Why a layer's tensors cannot be laid out (after validation, a loader bug).
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("tensor {tensor} is missing after validation (a loader bug)")]
    Missing { tensor: String },
    #[error("tensor {tensor:?} has {dims} dimensions: a layer weight is a vector or a matrix")]
    Dims { tensor: String, dims: usize },
}

impl LayoutError {
    /// Tensor `id` is not in the model (validation should have refused it).
    pub fn missing(id: TensorId) -> Self {
        LayoutError::Missing { tensor: id.gguf_name() }
    }
}

/// The Q/K/V projections: separate, or one fused tensor (Phi-3).
#[derive(Clone)]
pub enum Qkv<W> {
    Split {
        q: W, // [n_heads * hd, hidden]
        k: W, // [n_kv_heads * hd, hidden]
        v: W, // [n_kv_heads * hd_v, hidden]
    },
    Fused(W), // [(n_heads + n_kv_heads) * hd + n_kv_heads * hd_v, hidden]
}

/// The FFN input projections: separate, or one fused gate|up tensor (Phi-3).
#[derive(Clone)]
pub enum GateUp<W> {
    Split {
        gate: W, // [ff, hidden]
        up: W,   // [ff, hidden]
    },
    Fused(W), // [2 * ff, hidden]: gate rows first, then up
}

impl<W> Qkv<W> {
    fn try_map<V, E>(self, f: &mut dyn FnMut(W) -> Result<V, E>) -> Result<Qkv<V>, E> {
        Ok(match self {
            Qkv::Split { q, k, v } => Qkv::Split { q: f(q)?, k: f(k)?, v: f(v)? },
            Qkv::Fused(w) => Qkv::Fused(f(w)?),
        })
    }
    fn visit_mut<'a>(&'a mut self, out: &mut Vec<&'a mut W>) {
        match self {
            Qkv::Split { q, k, v } => out.extend([q, k, v]),
            Qkv::Fused(w) => out.push(w),
        }
    }
}

impl<W> GateUp<W> {
    fn try_map<V, E>(self, f: &mut dyn FnMut(W) -> Result<V, E>) -> Result<GateUp<V>, E> {
        Ok(match self {
            GateUp::Split { gate, up } => GateUp::Split { gate: f(gate)?, up: f(up)? },
            GateUp::Fused(w) => GateUp::Fused(f(w)?),
        })
    }
    fn visit_mut<'a>(&'a mut self, out: &mut Vec<&'a mut W>) {
        match self {
            GateUp::Split { gate, up } => out.extend([gate, up]),
            GateUp::Fused(w) => out.push(w),
        }
    }
}

/// A field of one weight (`One`), of a weight the layer may lack (`Option`), or of a
/// projection group (`Qkv`, `GateUp`): how `layer_weights!` maps and visits it.
type One<W> = W;

macro_rules! slot {
    (try_map One, $x:expr, $f:expr) => { $f($x)? };
    (try_map Option, $x:expr, $f:expr) => { $x.map(&mut *$f).transpose()? };
    (try_map $group:ident, $x:expr, $f:expr) => { $x.try_map($f)? };
    (visit One, $x:expr, $out:expr) => { $out.push($x) };
    (visit Option, $x:expr, $out:expr) => { $out.extend($x.as_mut()) };
    (visit $group:ident, $x:expr, $out:expr) => { $x.visit_mut($out) };
}

/// Declares `LayerWeights` and its traversals from one list of fields: `try_map` and
/// `weights_mut` visit the weights in the order the fields are written.
macro_rules! layer_weights {
    ($( $(#[$doc:meta])* $field:ident : $kind:ident ),* $(,)?) => {
        /// The weights of one decoder layer (shapes row-major; `hd` = head_dim).
        #[derive(Clone)]
        pub struct LayerWeights<W> {
            $( $(#[$doc])* pub $field: $kind<W>, )*
        }

        impl<W> LayerWeights<W> {
            /// The same layer with every weight mapped, in field order; the first error stops it.
            pub fn try_map<V, E>(self, f: &mut dyn FnMut(W) -> Result<V, E>) -> Result<LayerWeights<V>, E> {
                Ok(LayerWeights { $( $field: slot!(try_map $kind, self.$field, f), )* })
            }

            /// Every weight, in field order (the order [`LayerWeights::try_map`] visits them).
            pub fn weights_mut(&mut self) -> Vec<&mut W> {
                let mut out: Vec<&mut W> = Vec::new();
                $( slot!(visit $kind, &mut self.$field, &mut out); )*
                out
            }
        }
    };
}

layer_weights! {
    /// [hidden]
    attn_norm: One,
    qkv: Qkv,
    /// [n_heads * hd]
    q_bias: Option,
    /// [n_kv_heads * hd]
    k_bias: Option,
    /// [n_kv_heads * hd_v]
    v_bias: Option,
    /// [hidden, n_heads * hd_v]
    o: One,
    /// [hidden]
    o_bias: Option,
    /// [hd] (QK-norm)
    q_norm: Option,
    /// [hd]
    k_norm: Option,
    /// [hidden] (Gemma)
    attn_post_norm: Option,
    /// [hidden]
    ffn_norm: One,
    gate_up: GateUp,
    /// [hidden, ff]
    down: One,
    /// [hidden] (Gemma)
    ffn_post_norm: Option,
}

impl<W> LayerWeights<W> {
    /// The same layer with every weight mapped (in field order).
    pub fn map<V>(self, f: &mut dyn FnMut(W) -> V) -> LayerWeights<V> {
        match self.try_map(&mut |w| Ok::<V, std::convert::Infallible>(f(w))) {
            Ok(l) => l,
            Err(never) => match never {},
        }
    }
}

/// Which tensor fills each field of layer `l` under `cfg`: `has(id)` says whether the file
/// holds an optional one. `Err(id)`: a required tensor the file lacks.
pub fn layer_ids(cfg: &ModelConfig, l: u32, has: &dyn Fn(TensorId) -> bool) -> Result<LayerWeights<TensorId>, TensorId> {
    let w = |part| TensorId::layer(l, part, Param::Weight);
    let bias = |part| TensorId::layer(l, part, Param::Bias);
    let req = |id: TensorId| if has(id) { Ok(id) } else { Err(id) };
    let opt = |id: TensorId| has(id).then_some(id);
    Ok(LayerWeights {
        attn_norm: req(w(Part::AttnNorm))?,
        qkv: if cfg.fused_qkv {
            Qkv::Fused(req(w(Part::AttnQkv))?)
        } else {
            Qkv::Split { q: req(w(Part::AttnQ))?, k: req(w(Part::AttnK))?, v: req(w(Part::AttnV))? }
        },
        q_bias: opt(bias(Part::AttnQ)),
        k_bias: opt(bias(Part::AttnK)),
        v_bias: opt(bias(Part::AttnV)),
        o: req(w(Part::AttnOutput))?,
        o_bias: opt(bias(Part::AttnOutput)),
        q_norm: opt(w(Part::AttnQNorm)),
        k_norm: opt(w(Part::AttnKNorm)),
        attn_post_norm: opt(w(Part::AttnPostNorm)),
        ffn_norm: req(w(Part::FfnNorm))?,
        gate_up: if cfg.fused_gate_up {
            GateUp::Fused(req(w(Part::FfnUp))?)
        } else {
            GateUp::Split { gate: req(w(Part::FfnGate))?, up: req(w(Part::FfnUp))? }
        },
        down: req(w(Part::FfnDown))?,
        ffn_post_norm: opt(w(Part::FfnPostNorm)),
    })
}

/// Layer `l`'s tensors of a validated model, each field holding its tensor's entry.
pub fn layer_entries(m: &LoadedModel, l: u32) -> Result<LayerWeights<&TensorEntry>, LayoutError> {
    let ids = layer_ids(&m.config, l, &|id| m.tensor(id).is_some()).map_err(LayoutError::missing)?;
    ids.try_map(&mut |id| m.tensor(id).ok_or_else(|| LayoutError::missing(id)))
}

/// Layer `l`'s tensors in field order, and the layer's structure with each weight replaced
/// by its index in that list.
pub fn layer_plan(m: &LoadedModel, l: u32) -> Result<(LayerWeights<usize>, Vec<TensorEntry>), LayoutError> {
    let mut entries = Vec::new();
    let skeleton = layer_entries(m, l)?.map(&mut |t| {
        entries.push(t.clone());
        entries.len() - 1
    });
    Ok((skeleton, entries))
}

/// The tensors of layer `l`, in field order.
pub fn layer_tensors(m: &LoadedModel, l: u32) -> Result<Vec<TensorEntry>, LayoutError> {
    Ok(layer_plan(m, l)?.1)
}

/// `[rows, cols]` of a weight tensor (`[n]` is `[1, n]`).
pub fn rows_cols(t: &TensorEntry) -> Result<(usize, usize), LayoutError> {
    match t.shape.0.as_slice() {
        [n] => Ok((1, *n as usize)),
        [r, c] => Ok((*r as usize, *c as usize)),
        other => Err(LayoutError::Dims { tensor: t.name.clone(), dims: other.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `try_map` and `weights_mut` visit the same weights in the same order, for split and
    /// fused projections and with optional weights present or absent.
    #[test]
    fn the_traversals_agree_on_the_order() {
        let split = LayerWeights {
            attn_norm: 0,
            qkv: Qkv::Split { q: 1, k: 2, v: 3 },
            q_bias: Some(4),
            k_bias: None,
            v_bias: Some(5),
            o: 6,
            o_bias: None,
            q_norm: Some(7),
            k_norm: Some(8),
            attn_post_norm: None,
            ffn_norm: 9,
            gate_up: GateUp::Split { gate: 10, up: 11 },
            down: 12,
            ffn_post_norm: Some(13),
        };
        let fused = LayerWeights { qkv: Qkv::Fused(1), gate_up: GateUp::Fused(10), ..split.clone() };
        let failing = LayerWeights { attn_norm: 1, qkv: Qkv::Fused(0), ..split.clone() };
        for (mut layer, n) in [(split, 14), (fused, 11)] {
            let visited: Vec<i32> = layer.weights_mut().into_iter().map(|w| *w).collect();
            let mut mapped = Vec::new();
            let _ = layer.map(&mut |w| mapped.push(w));
            assert_eq!(visited, mapped);
            assert_eq!(visited.len(), n);
            assert!(visited.windows(2).all(|p| p[0] < p[1]), "field order: {visited:?}");
        }
        let mut seen = 0;
        let err = failing.try_map(&mut |w: i32| {
            seen += 1;
            if w == 0 { Err("zero") } else { Ok(w) }
        });
        assert_eq!(err.err(), Some("zero"));
        assert_eq!(seen, 2, "the first error stops the traversal");
    }
}
