// Rotates the first rope_dim values of each head of X [tokens, heads, head_dim].
// CS holds (cos, sin) per (token, pair), already scaled by mscale: the host computes them
// from the absolute positions in f32 exactly as the CPU reference does, so no GPU
// evaluates sin/cos of a large angle with its own (often coarse) range reduction.
// NEOX pairs (i, i + rope_dim/2); otherwise (2i, 2i+1).
#include "header.wgsl"

struct Params {
    tokens: u32,
    heads: u32,
    head_dim: u32,
    half: u32,      // rope_dim / 2
    stride: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read_write> X: array<f32>;
@group(0) @binding(1) var<storage, read> CS: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.x + gid.y * p.stride;
    if (idx >= p.tokens * p.heads * p.half) {
        return;
    }
    let i = idx % p.half;
    let th = idx / p.half;        // token * heads + head
    let t = th / p.heads;
    let base = th * p.head_dim;
#if NEOX
    let i0 = base + i;
    let i1 = base + i + p.half;
#else
    let i0 = base + 2u * i;
    let i1 = i0 + 1u;
#endif
    let c = CS[2u * (t * p.half + i)];
    let s = CS[2u * (t * p.half + i) + 1u];
    let x0 = X[i0];
    let x1 = X[i1];
    X[i0] = x0 * c - x1 * s;
    X[i1] = x0 * s + x1 * c;
}
