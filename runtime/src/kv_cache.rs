//! The KV cache, owned by the runtime: per layer, K and V rows for every position so far
//! (`[capacity, n_kv_heads * head_dim]`). Every layer writes its K/V at every step;
//! decoding reads the cache and computes only the new tokens.

use crate::backend::{BResult, Backend};
use crate::model::ModelConfig;

pub struct KvCache<B: Backend> {
    /// Per layer: (K, V).
    pub layers: Vec<(B::Buf, B::Buf)>,
    pub capacity: usize,
    /// Positions filled (the next token's position).
    pub len: usize,
    pub k_width: usize,
    pub v_width: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(b: &B, cfg: &ModelConfig, capacity: usize) -> BResult<Self> {
        let k_width = (cfg.n_kv_heads * cfg.head_dim) as usize;
        let v_width = (cfg.n_kv_heads * cfg.head_dim_v) as usize;
        let layers = (0..cfg.n_layers)
            .map(|_| Ok((b.alloc_cache(capacity * k_width)?, b.alloc_cache(capacity * v_width)?)))
            .collect::<BResult<Vec<_>>>()?;
        Ok(KvCache { layers, capacity, len: 0, k_width, v_width })
    }

    /// Forgets every position (the buffers are kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}
