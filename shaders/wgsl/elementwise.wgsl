// One thread per value: ADD (X += Y), SOFTCAP (X = cap * tanh(X / cap)),
// GATED (O = act(G) * U with SILU or GELU_TANH), COPY_COLS (D[r, :] = S[r, col..col+cols]).
#include "header.wgsl"

struct Params {
    n: u32,          // values (COPY_COLS: rows * cols)
    stride: u32,
    cap: f32,
    src_width: u32,
    col: u32,
    cols: u32,
    _p0: u32,
    _p1: u32,
}

#if ADD
@group(0) @binding(0) var<storage, read_write> X: array<f32>;
@group(0) @binding(1) var<storage, read> Y: array<f32>;
#endif
#if SOFTCAP
@group(0) @binding(0) var<storage, read_write> X: array<f32>;
#endif
#if GATED
@group(0) @binding(0) var<storage, read> G: array<f32>;
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;
#endif
#if COPY_COLS
@group(0) @binding(1) var<storage, read> S: array<f32>;
@group(0) @binding(4) var<storage, read_write> D: array<f32>;
#endif
@group(0) @binding(2) var<uniform> p: Params;

// tanh written out: some drivers' tanh returns NaN for large |x|.
fn tanh_safe(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    return sign(x) * (1.0 - e) / (1.0 + e);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.stride;
    if (i >= p.n) {
        return;
    }
#if ADD
    X[i] += Y[i];
#endif
#if SOFTCAP
    X[i] = p.cap * tanh_safe(X[i] / p.cap);
#endif
#if GATED
    let g = G[i];
#if SILU
    let a = g / (1.0 + exp(-g));
#else
    let a = 0.5 * g * (1.0 + tanh_safe(0.7978846 * (g + 0.044715 * g * g * g)));
#endif
    O[i] = a * U[i];
#endif
#if COPY_COLS
    let r = i / p.cols;
    let c = i % p.cols;
    D[i] = S[r * p.src_width + p.col + c];
#endif
}
