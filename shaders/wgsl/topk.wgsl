// The k largest of n logits, largest first, ties to the lower index (the CPU's order:
// f32::total_cmp, then index), in two passes:
//   STAGE1: workgroup g takes values g*CHUNK .. (g+1)*CHUNK and writes its k best
//           (key, index) pairs to C[g*k ..];
//   STAGE2: one workgroup takes the k best of all candidates into C2[0 .. k].
// Each of the k rounds finds the best element strictly after the previous round's winner.
// Keys map f32 bits to a u32 whose unsigned order is total_cmp's order, except that NaN
// and infinities take the largest key (runtime backend::topk_key): a non-finite row shows
// one as its best candidate, which the host reports. The values are read as u32 bits, so
// no float comparison (whose NaN behaviour WGSL leaves open) is involved. A missing entry
// (fewer than k values) is (0, 0xffffffff), which the host drops.
#include "header.wgsl"

struct Params {
    n: u32,          // values (STAGE1) or candidates (STAGE2)
    k: u32,
    chunk: u32,      // values per workgroup in STAGE1
    _p0: u32,
}

// STAGE1: the logits' f32 bits; STAGE2: (key, index) pairs.
@group(0) @binding(0) var<storage, read> X: array<u32>;
@group(0) @binding(1) var<storage, read_write> C: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

const WG: u32 = {{WG}}u;
const NONE: u32 = 0xffffffffu;
var<workgroup> best_key: array<u32, {{WG}}>;
var<workgroup> best_idx: array<u32, {{WG}}>;

fn key_of(b: u32) -> u32 {
    if ((b & 0x7f800000u) == 0x7f800000u) {
        return 0xffffffffu;
    }
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Whether (ka, ia) comes before (kb, ib).
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
#if STAGE1
    let start = wid.x * p.chunk;
    let end = min(start + p.chunk, p.n);
#else
    let start = 0u;
    let end = p.n;
#endif
    var prev_key = 0xffffffffu;
    var prev_idx = 0u;
    var first = true;
    for (var r = 0u; r < p.k; r++) {
        var bk = 0u;
        var bi = NONE;
        for (var i = start + tid; i < end; i += WG) {
#if STAGE1
            let key = key_of(X[i]);
            let idx = i;
#else
            let key = X[2u * i];
            let idx = X[2u * i + 1u];
#endif
            let after_prev = first || before(prev_key, prev_idx, key, idx);
            if (idx != NONE && after_prev && (bi == NONE || before(key, idx, bk, bi))) {
                bk = key;
                bi = idx;
            }
        }
        best_key[tid] = bk;
        best_idx[tid] = bi;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if (tid < s) {
                let ok = best_key[tid + s];
                let oi = best_idx[tid + s];
                if (oi != NONE && (best_idx[tid] == NONE || before(ok, oi, best_key[tid], best_idx[tid]))) {
                    best_key[tid] = ok;
                    best_idx[tid] = oi;
                }
            }
            workgroupBarrier();
        }
        prev_key = best_key[0];
        prev_idx = best_idx[0];
        first = false;
        if (tid == 0u) {
            C[2u * (wid.x * p.k + r)] = prev_key;
            C[2u * (wid.x * p.k + r) + 1u] = prev_idx;
        }
        workgroupBarrier();
    }
}
