// Y[r, n0 + n] = sum_k X[r, k] * W[n, k] for the weight rows of one part (a weight larger
// than the storage-binding limit is split by rows into parts, one dispatch each).
// One workgroup per (WG / TPR weight rows, tile of TR activation rows): TPR threads share a
// weight row; each dequantises its chunks of 32 weights once and dots them with every row
// of the tile, then the TPR threads reduce. The host sizes TPR to the row's chunks, so a
// short row (K = 576: 18 chunks) does not leave most of a 64-thread workgroup idle.
// Decode (rows = 1) is the same kernel with a tile of one row.
// Defines: DT_*, VAL, WG (threads), TR (rows per tile), TPR (threads per weight row, a
// power of two >= TR), SUBGROUPS (only with TPR = WG: subgroup sums span the workgroup).
#include "header.wgsl"

struct Params {
    k: u32,          // values per weight row (= X row width)
    n_total: u32,    // Y row width
    rows: u32,       // activation rows
    row_bytes: u32,  // bytes per weight row
    n0: u32,         // first output column of this part
    part_rows: u32,  // weight rows in this part
    groups_x: u32,   // workgroups along x (n = wid.x + wid.y * groups_x)
    x_offset: u32,   // first value of X
}

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

#include "quant.wgsl"

const WG: u32 = {{WG}}u;
const TR: u32 = {{TR}}u;
const TPR: u32 = {{TPR}}u;
const RPW: u32 = WG / TPR;
var<workgroup> red: array<f32, {{WG_TR}}>;
#if SUBGROUPS
var<workgroup> leader: array<u32, {{WG}}>;
#endif

@compute @workgroup_size({{WG}})
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
#if SUBGROUPS
    @builtin(subgroup_invocation_id) sg_lane: u32,
#endif
) {
    let lane = tid % TPR;
    let n = (wid.x + wid.y * p.groups_x) * RPW + tid / TPR;
    // Not an early return: the reduction's barriers need every thread.
    let valid = n < p.part_rows;
    let r0 = wid.z * TR;
    let nr = min(TR, p.rows - r0);
    let chunks = (p.k + 31u) / 32u;
    let row_byte = n * p.row_bytes;
    var acc: array<f32, {{TR}}>;
    var c: array<{{VAL}}, 32>;
    if (valid) {
        for (var ch = lane; ch < chunks; ch += TPR) {
            dequant_chunk(row_byte, ch, p.k, &c);
            let k0 = ch * 32u;
            let kn = min(32u, p.k - k0);
            for (var r = 0u; r < nr; r++) {
                let xb = p.x_offset + (r0 + r) * p.k + k0;
                var s = 0.0;
                for (var i = 0u; i < kn; i++) {
                    s += f32(c[i]) * X[xb + i];
                }
                acc[r] += s;
            }
        }
    }
#if SUBGROUPS
    // Subgroup sums, then one partial per subgroup summed in local-index order (a fixed
    // order, so results do not vary from run to run).
    for (var r = 0u; r < nr; r++) {
        red[r * WG + tid] = subgroupAdd(acc[r]);
    }
    leader[tid] = select(0u, 1u, sg_lane == 0u);
    workgroupBarrier();
    if (valid && tid < nr) {
        var s = 0.0;
        for (var i = 0u; i < WG; i++) {
            if (leader[i] == 1u) {
                s += red[tid * WG + i];
            }
        }
        Y[(r0 + tid) * p.n_total + p.n0 + n] = s;
    }
#else
    // Per weight row, a tree over its TPR threads; only the tile's nr rows (one at decode).
    for (var r = 0u; r < nr; r++) {
        red[r * WG + tid] = acc[r];
    }
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            for (var r = 0u; r < nr; r++) {
                red[r * WG + tid] += red[r * WG + tid + s];
            }
        }
        workgroupBarrier();
    }
    if (valid && lane < nr) {
        Y[(r0 + lane) * p.n_total + p.n0 + n] = red[lane * WG + tid - lane];
    }
#endif
}
