// Y[t, :] = table[ids[t], :] * scale for the ids that fall in this part of the table
// (rows row0 .. row0 + part_rows). One thread per (token, chunk of 32 values).
#include "header.wgsl"

struct Params {
    k: u32,          // values per row
    tokens: u32,
    row_bytes: u32,
    row0: u32,
    part_rows: u32,
    stride: u32,     // threads per dispatch row (idx = gid.x + gid.y * stride)
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> IDS: array<u32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

#include "quant.wgsl"

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let chunks = (p.k + 31u) / 32u;
    let idx = gid.x + gid.y * p.stride;
    if (idx >= p.tokens * chunks) {
        return;
    }
    let t = idx / chunks;
    let ch = idx % chunks;
    let id = IDS[t];
    if (id < p.row0 || id >= p.row0 + p.part_rows) {
        return;
    }
    var c: array<{{VAL}}, 32>;
    dequant_chunk((id - p.row0) * p.row_bytes, ch, p.k, &c);
    let kn = min(32u, p.k - ch * 32u);
    for (var i = 0u; i < kn; i++) {
        Y[t * p.k + ch * 32u + i] = f32(c[i]) * p.scale;
    }
}
