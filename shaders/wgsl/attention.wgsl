// Causal attention of `tokens` queries at positions past .. past + tokens - 1 over the KV
// cache, one workgroup of 64 threads per (head, token). Keys are taken 64 at a time (one
// per thread) with an online softmax (running max and sum), so any cache length works in
// fixed workgroup memory. GQA: query head h reads KV head h / (n_heads / n_kv_heads).
// Sliding window: the query at position p sees keys at positions > p - window.
// Q [tokens, n_heads, hd], K [len, n_kv, hd], V [len, n_kv, hdv], O [tokens, n_heads, hdv].
#include "header.wgsl"

struct Params {
    tokens: u32,
    past: u32,
    n_heads: u32,
    n_kv_heads: u32,
    hd: u32,
    hdv: u32,
    scale: f32,
    window: u32,     // 0 = none
    softcap: f32,    // 0 = none
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const TILE: u32 = 64u;
const MAX_HD: u32 = {{MAX_HD}}u;
// A finite "minus infinity": WGSL lets implementations assume no infinities.
const NEG: f32 = -3.0e38;

var<workgroup> qs: array<f32, {{MAX_HD}}>;
var<workgroup> ps: array<f32, 64>;

fn tanh_safe(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    return sign(x) * (1.0 - e) / (1.0 + e);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let h = wid.x;
    let t = wid.y;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let pos = p.past + t;
    var first = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        first = pos + 1u - p.window;
    }
    for (var d = tid; d < p.hd; d += TILE) {
        qs[d] = Q[(t * p.n_heads + h) * p.hd + d];
    }
    workgroupBarrier();

    var m = NEG;
    var l = 0.0;
    var acc: array<f32, {{ACC}}>;
    for (var tile = first; tile <= pos; tile += TILE) {
        let j = tile + tid;
        var s = NEG;
        if (j <= pos) {
            let kb = (j * p.n_kv_heads + kvh) * p.hd;
            var dot = 0.0;
            for (var d = 0u; d < p.hd; d++) {
                dot += qs[d] * K[kb + d];
            }
            s = dot * p.scale;
            if (p.softcap > 0.0) {
                s = p.softcap * tanh_safe(s / p.softcap);
            }
        }
        ps[tid] = s;
        workgroupBarrier();
        var tmax = NEG;
        for (var i = 0u; i < TILE; i++) {
            tmax = max(tmax, ps[i]);
        }
        let m_new = max(m, tmax);
        let corr = exp(m - m_new);
        workgroupBarrier();
        ps[tid] = select(0.0, exp(s - m_new), j <= pos);
        workgroupBarrier();
        var lsum = 0.0;
        let nv = min(TILE, pos + 1u - tile);
        for (var i = 0u; i < nv; i++) {
            lsum += ps[i];
        }
        l = l * corr + lsum;
        for (var a = 0u; a < {{ACC}}u; a++) {
            let d = tid + a * TILE;
            if (d < p.hdv) {
                var o = acc[a] * corr;
                for (var i = 0u; i < nv; i++) {
                    o += ps[i] * V[((tile + i) * p.n_kv_heads + kvh) * p.hdv + d];
                }
                acc[a] = o;
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    for (var a = 0u; a < {{ACC}}u; a++) {
        let d = tid + a * TILE;
        if (d < p.hdv) {
            O[(t * p.n_heads + h) * p.hdv + d] = acc[a] / l;
        }
    }
}
