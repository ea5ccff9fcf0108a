//! One expert of a mixture-of-experts layer as a 2-D tensor, whichever way the file keeps
//! a layer's experts: GGUF stacks them (`blk.L.ffn_gate_exps.weight`, shape
//! `[n_experts, rows, cols]`, expert `e` at `e * nbytes / n_experts` since every expert is
//! whole rows of whole blocks); Hugging Face, and GGUFs from before llama.cpp stacked
//! them, keep each expert as its own tensor. Upload, streaming and the packed-weight cache
//! take the slice as they take any weight: a [`TensorEntry`] of its own bytes.

use crate::arch::TensorId;
use crate::error::Shape;
use crate::model::{LoadedModel, TensorEntry};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpertError {
    #[error("tensor {tensor} is not in the model")]
    Missing { tensor: String },
    #[error("{tensor} names a layer's experts, not one expert")]
    NotAnExpert { tensor: String },
    #[error("tensor {tensor:?} has shape {shape}: stacked experts are [n_experts, rows, cols]")]
    NotStacked { tensor: String, shape: Shape },
    #[error("tensor {tensor:?}: expert {expert} of {n_experts}")]
    OutOfRange { tensor: String, expert: u32, n_experts: u64 },
    #[error("tensor {tensor:?}: {nbytes} bytes do not hold {n_experts} experts of {rows} x {cols} {dtype}")]
    Size { tensor: String, nbytes: u64, n_experts: u64, rows: u64, cols: u64, dtype: String },
    #[error("tensor {tensor:?} has shape {shape}: one expert is a matrix")]
    NotMatrix { tensor: String, shape: Shape },
}

impl TensorEntry {
    /// Expert `e` of a stacked `[n_experts, rows, cols]` tensor: its `[rows, cols]` bytes,
    /// named `name[e]`.
    pub fn expert_slice(&self, e: u32) -> Result<TensorEntry, ExpertError> {
        let &[n, rows, cols] = self.shape.0.as_slice() else {
            return Err(ExpertError::NotStacked { tensor: self.name.clone(), shape: self.shape.clone() });
        };
        if u64::from(e) >= n {
            return Err(ExpertError::OutOfRange { tensor: self.name.clone(), expert: e, n_experts: n });
        }
        let size = || ExpertError::Size { tensor: self.name.clone(), nbytes: self.nbytes, n_experts: n, rows, cols, dtype: self.dtype.to_string() };
        let per = self.dtype.row_bytes(cols).and_then(|r| r.checked_mul(rows)).ok_or_else(size)?;
        if per.checked_mul(n) != Some(self.nbytes) {
            return Err(size());
        }
        Ok(TensorEntry {
            name: format!("{}[{e}]", self.name),
            dtype: self.dtype,
            shape: Shape(vec![rows, cols]),
            file: self.file,
            offset: self.offset + u64::from(e) * per,
            nbytes: per,
        })
    }
}

impl LoadedModel {
    /// Expert `id.expert` of a layer: its own tensor where the file has one, else its
    /// slice of the layer's stacked tensor (`id.stacked()`).
    pub fn expert(&self, id: TensorId) -> Result<TensorEntry, ExpertError> {
        expert_of(&|id| self.tensor(id), id)
    }
}

/// [`LoadedModel::expert`] over any tensor lookup.
fn expert_of<'a>(tensor: &dyn Fn(TensorId) -> Option<&'a TensorEntry>, id: TensorId) -> Result<TensorEntry, ExpertError> {
    let e = id.expert.ok_or_else(|| ExpertError::NotAnExpert { tensor: id.gguf_name() })?;
    if let Some(t) = tensor(id) {
        return match t.shape.0.len() {
            2 => Ok(t.clone()),
            _ => Err(ExpertError::NotMatrix { tensor: t.name.clone(), shape: t.shape.clone() }),
        };
    }
    tensor(id.stacked()).ok_or_else(|| ExpertError::Missing { tensor: id.gguf_name() })?.expert_slice(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Param, Part};
    use crate::quant::DType;
    use std::collections::HashMap;

    fn entry(name: &str, shape: &[u64], offset: u64) -> TensorEntry {
        let nbytes = shape.iter().product::<u64>() * 2;
        TensorEntry { name: name.into(), dtype: DType::F16, shape: Shape(shape.to_vec()), file: 0, offset, nbytes }
    }

    /// Both layouts resolve: the expert's own tensor first, else the stack's slice.
    #[test]
    fn an_expert_is_its_own_tensor_or_its_slice_of_the_stack() {
        let (up, gate, w) = (Part::FfnUpExps, Part::FfnGateExps, Param::Weight);
        let mut by_id = HashMap::new();
        by_id.insert(TensorId::layer(1, up, w), entry("blk.1.ffn_up_exps.weight", &[4, 3, 8], 1000));
        by_id.insert(TensorId::expert(1, 2, gate, w), entry("model.layers.1.mlp.experts.2.gate_proj.weight", &[3, 8], 64));
        by_id.insert(TensorId::expert(1, 3, gate, w), entry("bad", &[1, 3, 8], 0));
        let find = |id| by_id.get(&id);
        let s = expert_of(&find, TensorId::expert(1, 2, up, w)).unwrap();
        assert_eq!((s.offset, s.nbytes, s.shape.0.as_slice(), s.name.as_str()), (1000 + 2 * 48, 48, &[3, 8][..], "blk.1.ffn_up_exps.weight[2]"));
        let own = expert_of(&find, TensorId::expert(1, 2, gate, w)).unwrap();
        assert_eq!((own.offset, own.name.as_str()), (64, "model.layers.1.mlp.experts.2.gate_proj.weight"));
        assert_eq!(expert_of(&find, TensorId::expert(1, 0, gate, w)), Err(ExpertError::Missing { tensor: "blk.1.ffn_gate.0.weight".into() }));
        assert!(matches!(expert_of(&find, TensorId::expert(1, 3, gate, w)), Err(ExpertError::NotMatrix { .. })));
        assert!(matches!(expert_of(&find, TensorId::layer(1, up, w)), Err(ExpertError::NotAnExpert { .. })));
        assert!(matches!(expert_of(&find, TensorId::expert(1, 4, up, w)), Err(ExpertError::OutOfRange { expert: 4, n_experts: 4, .. })));
    }
}
