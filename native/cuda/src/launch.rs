//! Every kernel launch of the CUDA backend as plain data: which kernel variant, its grid and
//! block, and its arguments in order (buffers by slot, scalars by value). The backend runs
//! these with cudarc; the emulator test (tests/tests/cuda_emulated.rs) runs the very same
//! plans on the CPU, so launch geometry and argument order are proven without a GPU.
//!
//! Each plan lists its buffer slots in a doc line; the caller passes buffers in that order.
//! Shapes were checked by the op before planning; plans check what only the launch needs
//! (32-bit indices, grid limits).

use strata::backend::{shape, u32_of, AttnArgs, BResult, BackendError};
use strata::backend::Activation;
use strata::quant::DType;

use crate::kernels::{dtype_define, matmul_tile, Variant};

/// Largest grid y / z dimension.
pub const MAX_GRID_YZ: usize = 65535;
/// Values per block in the first top-k stage.
pub const TOPK_CHUNK: usize = 4096;
/// Threads per block of the element-wise kernels.
pub const ELEMENTWISE_THREADS: u32 = 256;
/// Weight rows per matmul block (one warp each).
pub const MATMUL_ROWS_PER_BLOCK: usize = 4;

#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// The i-th buffer slot of the plan.
    Buf(usize),
    U32(u32),
    F32(f32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    pub variant: Variant,
    pub kernel: &'static str,
    pub grid: (u32, u32, u32),
    pub threads: u32,
    pub args: Vec<Arg>,
}

fn blocks(op: &'static str, n: usize, threads: u32) -> BResult<u32> {
    u32::try_from(n.div_ceil(threads as usize).max(1)).map_err(|_| shape(op, format!("{n} threads exceed the grid")))
}

fn grid_yz(op: &'static str, what: &str, n: usize) -> BResult<u32> {
    if n > MAX_GRID_YZ {
        return Err(shape(op, format!("{n} {what} exceed the grid ({MAX_GRID_YZ})")));
    }
    Ok(n as u32)
}

fn weight_variant(file: &'static str, dtype: DType, extra: &[String]) -> BResult<Variant> {
    let d = dtype_define(dtype).ok_or_else(|| BackendError::Unsupported { backend: "cuda".into(), what: format!("weights of dtype {dtype}") })?;
    let mut defines = vec![d.to_string()];
    defines.extend_from_slice(extra);
    Ok(Variant::new(file, &defines))
}

fn elementwise(kernel: &'static str, n: usize, args: Vec<Arg>) -> BResult<Launch> {
    Ok(Launch { variant: Variant::new("elementwise.cu", &[]), kernel, grid: (blocks(kernel, n, ELEMENTWISE_THREADS)?, 1, 1), threads: ELEMENTWISE_THREADS, args })
}

/// Slots: weight bytes, x `[tokens, k]`, out `[tokens, n]`.
pub fn matmul(dtype: DType, k: usize, n: usize, tokens: usize, row_bytes: usize) -> BResult<Launch> {
    let tile = matmul_tile(tokens);
    Ok(Launch {
        variant: weight_variant("matmul.cu", dtype, &[format!("TT={tile}")])?,
        kernel: "matmul",
        grid: (blocks("matmul", n, MATMUL_ROWS_PER_BLOCK as u32)?, grid_yz("matmul", "token tiles", tokens.div_ceil(tile as usize))?, 1),
        threads: 32 * MATMUL_ROWS_PER_BLOCK as u32,
        args: vec![Arg::Buf(0), Arg::Buf(1), Arg::Buf(2), Arg::U32(u32_of("matmul", "k", k)?), Arg::U32(u32_of("matmul", "n", n)?), Arg::U32(u32_of("matmul", "tokens", tokens)?), Arg::U32(u32_of("matmul", "row bytes", row_bytes)?)],
    })
}

/// Slots: weight bytes, f16 out `[n, k]`.
pub fn dequant_f16(dtype: DType, k: usize, n: usize, row_bytes: usize) -> BResult<Launch> {
    u32_of("dequant_f16", "values", n * k)?;
    Ok(Launch {
        variant: weight_variant("dequant.cu", dtype, &[])?,
        kernel: "dequant_f16",
        grid: (blocks("dequant_f16", k.div_ceil(8) * n, 256)?, 1, 1),
        threads: 256,
        args: vec![Arg::Buf(0), Arg::Buf(1), Arg::U32(k as u32), Arg::U32(n as u32), Arg::U32(u32_of("dequant_f16", "row bytes", row_bytes)?)],
    })
}

/// Slots: f32 in `[rows, k]`, f16 out `[rows, k]`, inverse row scales `[rows]` (f32).
pub fn to_f16_rows(rows: usize, k: usize) -> BResult<Launch> {
    u32_of("to_f16_rows", "values", rows * k)?;
    Ok(Launch {
        variant: Variant::new("dequant.cu", &["NO_WEIGHT".into()]),
        kernel: "to_f16_rows",
        grid: (u32_of("to_f16_rows", "rows", rows.max(1))?, 1, 1),
        threads: 256,
        args: vec![Arg::Buf(0), Arg::Buf(1), Arg::Buf(2), Arg::U32(k as u32)],
    })
}

/// Slots: y `[rows, n]` (scaled in place), inverse row scales `[rows]`.
pub fn scale_rows(rows: usize, n: usize) -> BResult<Launch> {
    Ok(Launch {
        variant: Variant::new("dequant.cu", &["NO_WEIGHT".into()]),
        kernel: "scale_rows",
        grid: (blocks("scale_rows", rows * n, 256)?, 1, 1),
        threads: 256,
        args: vec![Arg::Buf(0), Arg::Buf(1), Arg::U32(u32_of("scale_rows", "n", n)?), Arg::U32(u32_of("scale_rows", "rows", rows)?)],
    })
}

/// Slots: table bytes, ids (u32), out `[tokens, k]`.
pub fn embed(dtype: DType, k: usize, row_bytes: usize, tokens: usize, scale: f32) -> BResult<Launch> {
    Ok(Launch {
        variant: weight_variant("embed.cu", dtype, &[])?,
        kernel: "embed",
        grid: (blocks("embed", k.div_ceil(8), 128)?, grid_yz("embed", "tokens", tokens)?, 1),
        threads: 128,
        args: vec![Arg::Buf(0), Arg::Buf(1), Arg::Buf(2), Arg::U32(u32_of("embed", "k", k)?), Arg::U32(u32_of("embed", "row bytes", row_bytes)?), Arg::F32(scale)],
    })
}

/// Slots: x, weight (f32), out; `rows` of `cols`.
pub fn rms_norm(rows: usize, cols: usize, eps: f32, w_offset: f32) -> BResult<Launch> {
    Ok(Launch {
        variant: Variant::new("norm.cu", &[]),
        kernel: "rms_norm",
        grid: (u32_of("rms_norm", "rows", rows)?, 1, 1),
        threads: 256,
        args: vec![Arg::Buf(0), Arg::Buf(1), Arg::Buf(2), Arg::U32(u32_of("rms_norm", "cols", cols)?), Arg::F32(eps), Arg::F32(w_offset)],
    })
}

/// Slots: x (in place), bias (f32).
pub fn add_bias(rows: usize, cols: usize) -> BResult<Launch> {
    u32_of("add_bias", "values", rows * cols)?;
    elementwise("add_bias", rows * cols, vec![Arg::Buf(0), Arg::Buf(1), Arg::U32(rows as u32), Arg::U32(cols as u32)])
}

/// Slots: x (in place), the (cos, sin) table `[tokens, half]`.
pub fn rope(tokens: usize, heads: usize, head_dim: usize, half: usize, neox: bool) -> BResult<Launch> {
    u32_of("rope", "values", tokens * heads * head_dim)?;
    elementwise("rope", tokens * heads * half, vec![Arg::Buf(0), Arg::Buf(1), Arg::U32(tokens as u32), Arg::U32(heads as u32), Arg::U32(head_dim as u32), Arg::U32(half as u32), Arg::U32(u32::from(neox))])
        .map(|l| Launch { variant: Variant::new("rope.cu", &[]), ..l })
}

/// Slots: dst, src.
pub fn copy_cols(rows: usize, src_width: usize, col: usize, cols: usize) -> BResult<Launch> {
    u32_of("copy_cols", "values", rows * src_width)?;
    elementwise("copy_cols", rows * cols, vec![Arg::Buf(0), Arg::Buf(1), Arg::U32(rows as u32), Arg::U32(src_width as u32), Arg::U32(col as u32), Arg::U32(cols as u32)])
}

/// Slots: gate, up, out.
pub fn gated(n: usize, act: Activation) -> BResult<Launch> {
    elementwise("gated", n, vec![Arg::Buf(0), Arg::Buf(1), Arg::Buf(2), Arg::U32(u32_of("gated", "values", n)?), Arg::U32(u32::from(act == Activation::GeluTanh))])
}

/// Slots: x (in place), y.
pub fn add(n: usize) -> BResult<Launch> {
    elementwise("add", n, vec![Arg::Buf(0), Arg::Buf(1), Arg::U32(u32_of("add", "values", n)?)])
}

/// Slots: x (in place).
pub fn softcap(n: usize, cap: f32) -> BResult<Launch> {
    elementwise("softcap", n, vec![Arg::Buf(0), Arg::U32(u32_of("softcap", "values", n)?), Arg::F32(cap)])
}

/// Keys per attention split for `kv_len` keys and `blocks` (head, token) blocks on a GPU
/// of `sms` multiprocessors: one split unless the blocks alone would leave most of the GPU
/// idle on a long context; then splits of at least 256 keys.
pub fn attention_split_len(blocks: usize, kv_len: usize, sms: usize) -> usize {
    let want = 2 * sms.max(1);
    if blocks >= want || kv_len < 512 {
        return kv_len.max(1);
    }
    let splits = want.div_ceil(blocks.max(1)).min(kv_len / 256).max(1);
    kv_len.div_ceil(splits)
}

/// The attention launch and, with more than one split, the combine launch, plus the
/// partials' length (values). Attention slots: q, k cache, v cache, out, partials.
/// Combine slots: partials, out.
pub fn attention(a: &AttnArgs, split_len: usize) -> BResult<(Launch, Option<Launch>, usize)> {
    let kv_len = a.past + a.tokens;
    u32_of("attention", "cache values", kv_len * a.n_kv_heads * a.head_dim.max(a.head_dim_v))?;
    let split_len = split_len.clamp(1, kv_len.max(1));
    let splits = kv_len.div_ceil(split_len).max(1);
    let (nh, tokens, sp) = (u32_of("attention", "heads", a.n_heads)?, grid_yz("attention", "tokens", a.tokens)?, grid_yz("attention", "splits", splits)?);
    let variant = Variant::new("attention.cu", &[]);
    let main = Launch {
        variant: variant.clone(),
        kernel: "attention",
        grid: (nh, tokens, sp),
        threads: 128,
        args: vec![
            Arg::Buf(0),
            Arg::Buf(1),
            Arg::Buf(2),
            Arg::Buf(3),
            Arg::Buf(4),
            Arg::U32(u32_of("attention", "past", a.past)?),
            Arg::U32(nh),
            Arg::U32(a.n_kv_heads as u32),
            Arg::U32(a.head_dim as u32),
            Arg::U32(a.head_dim_v as u32),
            Arg::F32(a.scale),
            Arg::U32(a.window.map_or(0, |w| w.min(u32::MAX as usize) as u32)),
            Arg::F32(a.softcap.unwrap_or(0.0)),
            Arg::U32(split_len as u32),
            Arg::U32(sp),
        ],
    };
    if splits == 1 {
        return Ok((main, None, 1));
    }
    let combine = Launch { variant, kernel: "attention_combine", grid: (nh, tokens, 1), threads: 128, args: vec![Arg::Buf(0), Arg::Buf(1), Arg::U32(nh), Arg::U32(a.head_dim_v as u32), Arg::U32(sp)] };
    Ok((main, Some(combine), a.tokens * a.n_heads * splits * (a.head_dim_v + 2)))
}

/// Top-k in one or two stages, with the candidates' length (u32 words). Stage 1 slots: x,
/// candidates; stage 2 slots: candidates, best (2k words).
pub fn top_k(n: usize, k: usize) -> BResult<(Launch, Option<Launch>, usize)> {
    let n32 = u32_of("top_k", "values", n)?;
    let chunks = n.div_ceil(TOPK_CHUNK).max(1);
    let (k32, chunk32) = (k as u32, TOPK_CHUNK as u32);
    let stage1 = Launch {
        variant: Variant::new("topk.cu", &["PAIRS=0".into()]),
        kernel: "topk",
        grid: (u32_of("top_k", "chunks", chunks)?, 1, 1),
        threads: 256,
        args: vec![Arg::Buf(0), Arg::Buf(1), Arg::U32(n32), Arg::U32(k32), Arg::U32(chunk32)],
    };
    let total = u32_of("top_k", "candidates", chunks * k)?;
    let stage2 = (chunks > 1).then(|| Launch {
        variant: Variant::new("topk.cu", &["PAIRS=1".into()]),
        kernel: "topk",
        grid: (1, 1, 1),
        threads: 256,
        args: vec![Arg::Buf(0), Arg::Buf(1), Arg::U32(total), Arg::U32(k32), Arg::U32(total)],
    });
    Ok((stage1, stage2, 2 * chunks * k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_the_work() {
        let l = matmul(DType::Q4_0, 4096, 11008, 1, 2304).unwrap();
        assert_eq!((l.grid, l.threads), ((2752, 1, 1), 128));
        let l = matmul(DType::Q4_0, 64, 9, 11, 36).unwrap();
        assert_eq!(l.grid, (3, 2, 1), "9 rows in blocks of 4; 11 tokens in tiles of 8");
        assert_eq!(l.variant.defines, ["DT_Q4_0", "TT=8"]);
        assert!(matmul(DType::Q4_0, 64, 9, 8 * 65536, 36).is_err(), "token tiles past the grid");
        assert!(matches!(matmul(DType::IQ2XXS, 256, 4, 1, 66), Err(BackendError::Unsupported { .. })));
    }

    #[test]
    fn attention_splits_only_when_the_gpu_would_idle() {
        assert_eq!(attention_split_len(32, 4000, 132), 445, "32 blocks on 132 SMs: 9 splits of 445 keys");
        assert_eq!(attention_split_len(32, 300, 132), 300, "a short context: one split");
        assert_eq!(attention_split_len(4096, 4000, 132), 4000, "prefill fills the GPU: one split");
        let a = AttnArgs { tokens: 1, past: 37, n_heads: 4, n_kv_heads: 2, head_dim: 64, head_dim_v: 64, scale: 0.125, window: None, softcap: None };
        let (main, combine, part) = attention(&a, 8).unwrap();
        assert_eq!(main.grid, (4, 1, 5));
        assert_eq!(combine.unwrap().grid, (4, 1, 1));
        assert_eq!(part, 4 * 5 * 66);
        let (_, combine, _) = attention(&a, 1000).unwrap();
        assert!(combine.is_none());
    }

    #[test]
    fn top_k_uses_a_second_stage_past_one_chunk() {
        let (s1, s2, cand) = top_k(9000, 40).unwrap();
        assert_eq!((s1.grid.0, cand), (3, 240));
        assert_eq!(s2.unwrap().args[2], Arg::U32(120));
        assert!(top_k(4096, 1).unwrap().1.is_none());
    }
}
