//! The WGSL kernel files (embedded from `shaders/wgsl/`), their variants, and the pipeline
//! cache: one compute pipeline per (file, defines), built on first use.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::preprocess::{preprocess, Defines};
use crate::quant::DType;

/// Every kernel file by name (the names `#include` uses).
pub fn kernel_file(name: &str) -> Option<&'static str> {
    Some(match name {
        "header.wgsl" => include_str!("../../../../shaders/wgsl/header.wgsl"),
        "quant.wgsl" => include_str!("../../../../shaders/wgsl/quant.wgsl"),
        "matmul.wgsl" => include_str!("../../../../shaders/wgsl/matmul.wgsl"),
        "embed.wgsl" => include_str!("../../../../shaders/wgsl/embed.wgsl"),
        "norm.wgsl" => include_str!("../../../../shaders/wgsl/norm.wgsl"),
        "rope.wgsl" => include_str!("../../../../shaders/wgsl/rope.wgsl"),
        "attention.wgsl" => include_str!("../../../../shaders/wgsl/attention.wgsl"),
        "elementwise.wgsl" => include_str!("../../../../shaders/wgsl/elementwise.wgsl"),
        "topk.wgsl" => include_str!("../../../../shaders/wgsl/topk.wgsl"),
        _ => return None,
    })
}

/// Kernel entry files (the ones compiled into pipelines).
pub const KERNELS: [&str; 7] = ["matmul.wgsl", "embed.wgsl", "norm.wgsl", "rope.wgsl", "attention.wgsl", "elementwise.wgsl", "topk.wgsl"];

/// Weight dtypes the kernels read directly from their blocks.
pub use super::super::KERNEL_WEIGHT_DTYPES as WEIGHT_DTYPES;

/// The `DT_*` define for a weight dtype (None: not readable by the kernels).
pub use super::super::kernel_dtype_define as dtype_define;

/// Target-wide variant switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Dequantised weights held in f16 (`enable f16;`), accumulation stays f32.
    pub f16: bool,
    /// Subgroup reductions.
    pub subgroups: bool,
    /// Emit `enable subgroups;` (browser WebGPU requires it, naga rejects it).
    pub subgroups_directive: bool,
}

impl Target {
    /// The defines every kernel gets.
    pub fn base_defines(&self) -> Defines {
        let mut d = Defines::new();
        d.insert("F16", u8::from(self.f16).to_string());
        d.insert("VAL", if self.f16 { "f16" } else { "f32" }.into());
        d.insert("SUBGROUPS", u8::from(self.subgroups).to_string());
        d.insert("ENABLE_SUBGROUPS_DIRECTIVE", u8::from(self.subgroups && self.subgroups_directive).to_string());
        d
    }

    /// Defines for a kernel reading weights of `dtype`.
    pub fn weight_defines(&self, dtype: DType) -> Defines {
        let mut d = self.base_defines();
        if let Some(name) = dtype_define(dtype) {
            d.insert(name, "1".into());
        }
        d.insert("K_QUANT", u8::from(matches!(dtype, DType::Q4K | DType::Q5K)).to_string());
        d
    }
}

/// Expands a kernel file with its defines into WGSL source.
pub fn source(file: &str, defines: &Defines) -> Result<String, String> {
    preprocess(file, &kernel_file, defines).map_err(|e| e.to_string())
}

/// Pipelines by (file, defines).
#[derive(Default)]
pub struct PipelineCache {
    map: RefCell<HashMap<String, Rc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub fn get(&self, device: &wgpu::Device, file: &str, defines: &Defines) -> Result<Rc<wgpu::ComputePipeline>, String> {
        let key = format!("{file}|{defines:?}");
        if let Some(p) = self.map.borrow().get(&key) {
            return Ok(p.clone());
        }
        let src = source(file, defines)?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(file), source: wgpu::ShaderSource::Wgsl(src.into()) });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(file),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let p = Rc::new(pipeline);
        self.map.borrow_mut().insert(key, p.clone());
        Ok(p)
    }

    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every variant a target can build (validated by naga in the unit tests, so a kernel
/// that does not compile fails `cargo test`, not a user's first run).
pub fn all_variants(target: Target) -> Vec<(&'static str, Defines)> {
    let mut v = Vec::new();
    for dt in WEIGHT_DTYPES {
        for k in [16, 576] {
            let mut d = matmul_defines(&target, dt, k);
            add_sizes("matmul.wgsl", &mut d);
            v.push(("matmul.wgsl", d));
        }
        for (file, extra) in [("matmul.wgsl", None), ("embed.wgsl", None), ("norm.wgsl", Some("RMS_NORM")), ("norm.wgsl", Some("BIAS"))] {
            let mut d = target.weight_defines(dt);
            if let Some(e) = extra {
                d.insert(e, "1".into());
            }
            add_sizes(file, &mut d);
            v.push((file, d));
        }
    }
    for neox in ["0", "1"] {
        let mut d = target.base_defines();
        d.insert("NEOX", neox.into());
        add_sizes("rope.wgsl", &mut d);
        v.push(("rope.wgsl", d));
    }
    let mut d = target.base_defines();
    add_sizes("attention.wgsl", &mut d);
    v.push(("attention.wgsl", d));
    for op in ["ADD", "SOFTCAP", "GATED_SILU", "GATED_GELU", "COPY_COLS"] {
        let mut d = target.base_defines();
        elementwise_op(&mut d, op);
        add_sizes("elementwise.wgsl", &mut d);
        v.push(("elementwise.wgsl", d));
    }
    for stage in ["STAGE1", "STAGE2"] {
        let mut d = target.base_defines();
        d.insert(stage, "1".into());
        add_sizes("topk.wgsl", &mut d);
        v.push(("topk.wgsl", d));
    }
    v
}

/// Workgroup sizes and fixed array sizes of each kernel.
pub fn add_sizes(file: &str, d: &mut Defines) {
    match file {
        "matmul.wgsl" => {
            d.insert("WG", MATMUL_WG.to_string());
            d.insert("TR", MATMUL_TR.to_string());
            d.insert("WG_TR", (MATMUL_WG * MATMUL_TR).to_string());
            d.entry("TPR").or_insert_with(|| MATMUL_WG.to_string());
        }
        "attention.wgsl" => {
            d.insert("MAX_HD", ATTN_MAX_HD.to_string());
            d.insert("ACC", ATTN_MAX_HD.div_ceil(64).to_string());
        }
        "topk.wgsl" => {
            d.insert("WG", TOPK_WG.to_string());
        }
        _ => {
            d.insert("WG", ELEMENTWISE_WG.to_string());
        }
    }
}

/// Sets the defines of an elementwise op (`ADD`, `SOFTCAP`, `GATED_SILU`, `GATED_GELU`, `COPY_COLS`).
pub fn elementwise_op(d: &mut Defines, op: &str) {
    for k in ["ADD", "SOFTCAP", "GATED", "SILU", "COPY_COLS"] {
        d.insert(k, "0".into());
    }
    match op {
        "GATED_SILU" => {
            d.insert("GATED", "1".into());
            d.insert("SILU", "1".into());
        }
        "GATED_GELU" => {
            d.insert("GATED", "1".into());
        }
        other => {
            d.insert(match other {
                "ADD" => "ADD",
                "SOFTCAP" => "SOFTCAP",
                _ => "COPY_COLS",
            }, "1".into());
        }
    }
}

pub const MATMUL_WG: u32 = 64;
/// Activation rows per matmul workgroup: each dequantised weight chunk is reused this often.
pub const MATMUL_TR: u32 = 8;

/// Threads sharing one weight row of `k` values in matmul.wgsl: enough for its 32-value
/// chunks (a power of two, at least MATMUL_TR, at most MATMUL_WG). Rows that would leave
/// threads idle get several per workgroup (measured on SwiftShader and lavapipe: K = 576
/// at one row per 64 threads spent most of its time on idle lanes).
pub fn matmul_threads_per_row(k: usize) -> u32 {
    // The largest power of two not above the chunk count: every thread has a chunk.
    let chunks = k.div_ceil(32).max(1) as u32;
    (1u32 << (31 - chunks.leading_zeros())).clamp(MATMUL_TR, MATMUL_WG)
}

/// matmul.wgsl's defines for a weight of `k` values per row.
pub fn matmul_defines(target: &Target, dtype: DType, k: usize) -> Defines {
    let mut d = target.weight_defines(dtype);
    let tpr = matmul_threads_per_row(k);
    d.insert("TPR", tpr.to_string());
    // Subgroup sums span the whole workgroup: only for one row per workgroup.
    if tpr < MATMUL_WG {
        d.insert("SUBGROUPS", "0".into());
    }
    d
}
pub const ELEMENTWISE_WG: u32 = 64;
pub const TOPK_WG: u32 = 256;
/// Values per STAGE1 workgroup of top-k.
pub const TOPK_CHUNK: u32 = 4096;
/// Largest head_dim the attention kernel holds in workgroup memory.
pub const ATTN_MAX_HD: u32 = 512;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant of every kernel parses and validates with naga (the compiler wgpu
    /// uses natively), for each target combination.
    #[test]
    fn every_variant_validates() {
        let mut count = 0;
        for f16 in [false, true] {
            for subgroups in [false, true] {
                let target = Target { f16, subgroups, subgroups_directive: false };
                for (file, d) in all_variants(target) {
                    let src = source(file, &d).unwrap_or_else(|e| panic!("{file} {d:?}: {e}"));
                    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{file} {d:?}:\n{}", e.emit_to_string(&src)));
                    let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
                    v.validate(&module).unwrap_or_else(|e| panic!("{file} {d:?}:\n{}", e.emit_to_string(&src)));
                    count += 1;
                }
            }
        }
        // Per dtype: matmul at two row widths (several rows per workgroup, one) and the
        // default, embed, two norms.
        assert_eq!(count, 4 * (WEIGHT_DTYPES.len() * 6 + 2 + 1 + 5 + 2));
    }

    #[test]
    fn browser_variant_enables_subgroups() {
        let t = Target { f16: false, subgroups: true, subgroups_directive: true };
        let mut d = t.weight_defines(DType::Q4_0);
        add_sizes("matmul.wgsl", &mut d);
        let src = source("matmul.wgsl", &d).unwrap();
        let first_code = src.lines().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//")).unwrap();
        assert_eq!(first_code, "enable subgroups;");
        let t = Target { subgroups_directive: false, ..t };
        let mut d = t.weight_defines(DType::Q4_0);
        add_sizes("matmul.wgsl", &mut d);
        assert!(!source("matmul.wgsl", &d).unwrap().lines().any(|l| l.trim() == "enable subgroups;"));
    }
}
