//! Top-k selection in the order every backend's `Backend::top_k` reports: the keys the
//! device kernels sort by, and the host selection the CPU backends and the sampler use.

/// The order of `Backend::top_k`, as the kernels compute it: an f32's bits mapped to a u32
/// whose unsigned order is `f32::total_cmp`'s, except that every NaN and infinity maps to
/// the largest key (read back as a NaN). A row with any non-finite value therefore has one
/// as its best candidate, and a sampler that looks at the best one sees it
/// (`Session::pick` turns it into an error) whichever backend computed the row.
pub fn topk_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x7f80_0000 == 0x7f80_0000 {
        u32::MAX
    } else if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// A value as `Backend::top_k` reports it on every backend, bit for bit: itself, or the
/// NaN the non-finite key reads back as.
pub fn topk_value(v: f32) -> f32 {
    topk_key_to_f32(topk_key(v))
}

/// Device top-k results: the inverse of [`topk_key`] (the non-finite key reads as NaN).
pub fn topk_key_to_f32(key: u32) -> f32 {
    let bits = if key & 0x8000_0000 != 0 { key & 0x7fff_ffff } else { !key };
    f32::from_bits(bits)
}

/// (key, index) word pairs read back from a device top-k, as (index, value); a missing
/// entry (index `u32::MAX`, fewer values than k) is dropped.
pub fn topk_pairs(words: &[u32]) -> Vec<(u32, f32)> {
    words.chunks_exact(2).filter(|p| p[1] != u32::MAX).map(|p| (p[1], topk_key_to_f32(p[0]))).collect()
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    // The device kernels' order (`backend::topk_key`): NaN and infinities first.
    let key = |i: usize| topk_key(v[i]);
    let order = |a: &usize, b: &usize| key(*b).cmp(&key(*a)).then(a.cmp(b));
    let k = k.min(v.len());
    if k == 0 {
        return Vec::new();
    }
    if k <= SMALL_K {
        // One pass keeping the k best in order (decode calls this per token over the whole
        // vocabulary): an index replaces the last only with a strictly better key, and goes
        // after the equal keys already held, so ties keep the lower index first.
        let mut best: Vec<(u32, usize)> = Vec::with_capacity(k + 1);
        for (i, &x) in v.iter().enumerate() {
            let kx = topk_key(x);
            if best.len() == k && kx <= best[k - 1].0 {
                continue;
            }
            let at = best.partition_point(|&(kb, _)| kb >= kx);
            best.insert(at, (kx, i));
            best.truncate(k);
        }
        return best.into_iter().map(|(_, i)| i).collect();
    }
    let mut idx: Vec<usize> = (0..v.len()).collect();
    // Linear-time selection of the k best, then sort only those.
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx.sort_by(order);
    idx
}

/// Up to this many candidates, `top_k` keeps them in one pass instead of selecting.
const SMALL_K: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_keys_round_trip_order_like_total_cmp_and_put_non_finite_first() {
        // The kernels' key_of (shaders/wgsl/topk.wgsl, shaders/cuda/topk.cu) is `topk_key`.
        let key = topk_key;
        let finite = [-3.4e38, -1e30, -1.0, -0.0, 0.0, 1e-40, 1.0, 3.4e38f32];
        for w in finite.windows(2) {
            assert_eq!(w[0].total_cmp(&w[1]), key(w[0]).cmp(&key(w[1])), "{} vs {}", w[0], w[1]);
        }
        for v in finite {
            assert_eq!(topk_key_to_f32(key(v)).to_bits(), v.to_bits());
        }
        for bad in [f32::NEG_INFINITY, f32::INFINITY, f32::NAN, -f32::NAN, f32::from_bits(0x7f80_0001)] {
            assert_eq!(key(bad), u32::MAX, "{bad}");
            assert!(key(bad) > key(3.4e38));
            assert!(topk_key_to_f32(key(bad)).is_nan());
        }
        assert_eq!(topk_pairs(&[key(2.0), 7, 0, u32::MAX]), vec![(7, 2.0)]);
    }

    #[test]
    fn top_k_small_equals_selection() {
        let mut v: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 613) as f32 * 0.25 - 50.0).collect();
        v[17] = f32::NAN;
        v[4000] = f32::INFINITY;
        v[123] = -0.0;
        for k in [1, 2, 5, 33, SMALL_K] {
            let fast = top_k(&v, k);
            let mut idx: Vec<usize> = (0..v.len()).collect();
            let key = |i: usize| topk_key(v[i]);
            idx.sort_by(|a, b| key(*b).cmp(&key(*a)).then(a.cmp(b)));
            idx.truncate(k);
            assert_eq!(fast, idx, "k = {k}");
        }
        assert_eq!(top_k(&v[..3], 10).len(), 3);
    }
}
