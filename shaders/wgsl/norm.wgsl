// Ops that read a one-row weight vector (any dtype, through quant.wgsl):
//   RMS_NORM: Y[r, :] = X[r, :] / sqrt(mean(X[r, :]^2) + eps) * (w + w_offset),
//             one workgroup per row;
//   BIAS:     X[r, c] += b[c], one thread per value.
#include "header.wgsl"

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    w_offset: f32,
    stride: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> W: array<u32>;
#if RMS_NORM
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
#else
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
#endif
@group(0) @binding(3) var<uniform> p: Params;

#include "quant.wgsl"

#if RMS_NORM
const WG: u32 = {{WG}}u;
var<workgroup> red: array<f32, {{WG}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let r = wid.x + wid.y * p.stride;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var ss = 0.0;
    for (var i = tid; i < p.cols; i += WG) {
        let v = X[base + i];
        ss += v * v;
    }
    red[tid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (tid < s) {
            red[tid] += red[tid + s];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(red[0] / f32(p.cols) + p.eps);
    for (var i = tid; i < p.cols; i += WG) {
        Y[base + i] = X[base + i] * inv * (weight_at(i, p.cols) + p.w_offset);
    }
}
#endif

#if BIAS
@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.x + gid.y * p.stride;
    if (idx >= p.rows * p.cols) {
        return;
    }
    X[idx] += weight_at(idx % p.cols, p.cols);
}
#endif
