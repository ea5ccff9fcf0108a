//! The CUDA kernels: `.cu` / `.cuh` files in `shaders/cuda/`, embedded in the binary and
//! compiled at run time by NVRTC for the device's compute capability.
//!
//! Variants are preprocessor defines (`-DDT_Q4_K`, `-DTT=8`), so the C preprocessor is the
//! variant mechanism; `#include "x.cuh"` is resolved here from the embedded files, so NVRTC
//! needs no include path and no toolkit headers. PTX is cached on disk under
//! `~/.cache/strata/cuda/` keyed by a hash of the expanded source, the defines, the
//! architecture and the NVRTC version.

use std::collections::BTreeSet;
use std::path::PathBuf;

use strata::quant::DType;

/// Every kernel source file, by name.
pub const SOURCES: &[(&str, &str)] = &[
    ("common.cuh", include_str!("../../../shaders/cuda/common.cuh")),
    ("quant.cuh", include_str!("../../../shaders/cuda/quant.cuh")),
    ("matmul.cu", include_str!("../../../shaders/cuda/matmul.cu")),
    ("dequant.cu", include_str!("../../../shaders/cuda/dequant.cu")),
    ("embed.cu", include_str!("../../../shaders/cuda/embed.cu")),
    ("norm.cu", include_str!("../../../shaders/cuda/norm.cu")),
    ("rope.cu", include_str!("../../../shaders/cuda/rope.cu")),
    ("elementwise.cu", include_str!("../../../shaders/cuda/elementwise.cu")),
    ("attention.cu", include_str!("../../../shaders/cuda/attention.cu")),
    ("topk.cu", include_str!("../../../shaders/cuda/topk.cu")),
];

/// Weight dtypes the kernels read straight from their blocks (the same as WGSL's).
pub const WEIGHT_DTYPES: &[DType] = &strata::backend::KERNEL_WEIGHT_DTYPES;

/// Tokens per warp in `matmul.cu`: 1 is the decode matvec; larger tiles reuse each
/// dequantised weight group across tokens.
pub const MATMUL_TILES: &[u32] = &[1, 4, 8];

/// Largest head_dim / head_dim_v `attention.cu` holds (its shared-memory rows).
pub const MAX_HEAD_DIM: usize = 512;

pub use strata::backend::kernel_dtype_define as dtype_define;

/// The matmul tile for `tokens` activation rows.
pub fn matmul_tile(tokens: usize) -> u32 {
    match tokens {
        1 => 1,
        2..=4 => 4,
        _ => 8,
    }
}

/// One compiled unit: a file with its defines, and the kernels it exports.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variant {
    pub file: &'static str,
    /// `NAME` or `NAME=VALUE`, passed to NVRTC as `-D`.
    pub defines: Vec<String>,
}

impl Variant {
    pub fn new(file: &'static str, defines: &[String]) -> Self {
        Variant { file, defines: defines.to_vec() }
    }

    pub fn label(&self) -> String {
        if self.defines.is_empty() {
            self.file.to_string()
        } else {
            format!("{} [{}]", self.file, self.defines.join(" "))
        }
    }

    /// The kernels (extern "C" entry points) this variant exports.
    pub fn kernels(&self) -> &'static [&'static str] {
        match self.file {
            "matmul.cu" => &["matmul"],
            "dequant.cu" if self.defines.iter().any(|d| d == "NO_WEIGHT") => &["to_f16_rows", "scale_rows"],
            "dequant.cu" => &["dequant_f16"],
            "embed.cu" => &["embed"],
            "norm.cu" => &["rms_norm"],
            "rope.cu" => &["rope"],
            "elementwise.cu" => &["add", "add_bias", "gated", "softcap", "copy_cols"],
            "attention.cu" => &["attention", "attention_combine"],
            "topk.cu" => &["topk"],
            _ => &[],
        }
    }
}

/// Every variant the backend can ask for (CI compiles each for sm_80 and sm_90).
pub fn all_variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for &dt in WEIGHT_DTYPES {
        let d = dtype_define(dt).expect("weight dtypes have a define").to_string();
        for &tt in MATMUL_TILES {
            v.push(Variant::new("matmul.cu", &[d.clone(), format!("TT={tt}")]));
        }
        v.push(Variant::new("dequant.cu", std::slice::from_ref(&d)));
        v.push(Variant::new("embed.cu", &[d]));
    }
    v.push(Variant::new("dequant.cu", &["NO_WEIGHT".into()]));
    for file in ["norm.cu", "rope.cu", "elementwise.cu", "attention.cu"] {
        v.push(Variant::new(file, &[]));
    }
    for pairs in [0, 1] {
        v.push(Variant::new("topk.cu", &[format!("PAIRS={pairs}")]));
    }
    v
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KernelError {
    #[error("no kernel source named {0:?} (shaders/cuda)")]
    Missing(String),
    #[error("{file}:{line}: bad #include: {text}")]
    BadInclude { file: String, line: usize, text: String },
    #[error("NVRTC could not compile {variant} for {arch}:\n{log}")]
    Compile { variant: String, arch: String, log: String },
    #[error("NVRTC (libnvrtc) is not available: install the CUDA toolkit, or `pip install nvidia-cuda-nvrtc-cu12` and add its nvidia/cuda_nvrtc/lib to LD_LIBRARY_PATH")]
    NoNvrtc,
}

pub fn source(name: &str) -> Result<&'static str, KernelError> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).ok_or_else(|| KernelError::Missing(name.to_string()))
}

/// The file with every `#include "x"` replaced by x's text (each file once, like
/// `#pragma once`), with `#line` markers so NVRTC's errors name the original file and line.
pub fn expand(file: &str) -> Result<String, KernelError> {
    let mut out = String::new();
    let mut seen = BTreeSet::new();
    expand_into(file, &mut out, &mut seen)?;
    Ok(out)
}

fn expand_into(file: &str, out: &mut String, seen: &mut BTreeSet<String>) -> Result<(), KernelError> {
    if !seen.insert(file.to_string()) {
        return Ok(());
    }
    let text = source(file)?;
    out.push_str(&format!("#line 1 \"{file}\"\n"));
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#pragma once") {
            out.push('\n');
        } else if t.strip_prefix("#include").is_some_and(|r| r.trim_start().starts_with('<')) {
            // A system header (only the host build of quant.cuh has one): left to the compiler.
            out.push_str(line);
            out.push('\n');
        } else if let Some(rest) = t.strip_prefix("#include") {
            let name = rest.trim().strip_prefix('"').and_then(|r| r.strip_suffix('"'));
            let Some(name) = name else {
                return Err(KernelError::BadInclude { file: file.into(), line: i + 1, text: line.into() });
            };
            expand_into(name, out, seen)?;
            out.push_str(&format!("#line {} \"{file}\"\n", i + 2));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(())
}

/// Whether libnvrtc can be loaded (cudarc panics on first use otherwise).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// NVRTC's (major, minor) version.
pub fn nvrtc_version() -> Result<(i32, i32), KernelError> {
    if !nvrtc_present() {
        return Err(KernelError::NoNvrtc);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); the out-pointers are valid.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }.result().map_err(|_| KernelError::NoNvrtc)?;
    Ok((major, minor))
}

/// NVRTC options for a variant on `arch` (`"sm_90"` compiles to `compute_90` PTX, which
/// the driver JIT-compiles for the exact device).
pub fn options(v: &Variant, arch: &str) -> Vec<String> {
    let mut o = vec![format!("--gpu-architecture={}", arch.replace("sm_", "compute_")), "--std=c++17".into()];
    o.extend(v.defines.iter().map(|d| format!("-D{d}")));
    o
}

/// 64-bit FNV-1a (stable across Rust versions, unlike `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Where compiled PTX is kept: `$STRATA_CUDA_CACHE`, else `$XDG_CACHE_HOME/strata/cuda`,
/// else `~/.cache/strata/cuda`. `STRATA_CUDA_CACHE=off` disables the disk cache.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var("STRATA_CUDA_CACHE") {
        Ok(v) if v == "off" => return None,
        Ok(v) if !v.is_empty() => return Some(PathBuf::from(v)),
        _ => {}
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("strata").join("cuda"))
}

/// PTX for a variant on `arch`, from the disk cache or NVRTC. `extra_key` (the driver
/// version) is part of the cache key.
pub fn compile(v: &Variant, arch: &str, extra_key: &str) -> Result<String, KernelError> {
    let (major, minor) = nvrtc_version()?;
    let src = expand(v.file)?;
    let opts = options(v, arch);
    let key = fnv1a(&[src.as_bytes(), opts.join(" ").as_bytes(), format!("nvrtc {major}.{minor} {extra_key}").as_bytes()]);
    let path = cache_dir().map(|d| d.join(format!("{}-{key:016x}.ptx", v.file.trim_end_matches(".cu"))));
    if let Some(p) = &path {
        if let Ok(ptx) = std::fs::read_to_string(p) {
            if ptx.contains(".entry") {
                return Ok(ptx);
            }
        }
    }
    let ptx = compile_uncached(v, &src, &opts, arch)?;
    if let Some(p) = path {
        // A failed cache write only costs a recompile next time.
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &ptx).is_ok() {
            let _ = std::fs::rename(&tmp, &p);
        }
    }
    Ok(ptx)
}

fn compile_uncached(v: &Variant, src: &str, opts: &[String], arch: &str) -> Result<String, KernelError> {
    use cudarc::nvrtc::result as nv;
    let fail = |log: String| KernelError::Compile { variant: v.label(), arch: arch.to_string(), log };
    let c_src = std::ffi::CString::new(src).map_err(|_| fail("source holds a NUL byte".into()))?;
    let c_name = std::ffi::CString::new(v.file).map_err(|_| fail("name holds a NUL byte".into()))?;
    let prog = nv::create_program(&c_src, Some(&c_name)).map_err(|e| fail(format!("nvrtcCreateProgram: {e:?}")))?;
    // SAFETY: `prog` is a live program; it is destroyed below on every path.
    let result = unsafe { nv::compile_program(prog, opts) };
    let log = unsafe { nv::get_program_log(prog) }.ok().map(|l| l.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect::<Vec<u8>>()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let ptx = match result {
        Ok(()) => unsafe { nv::get_ptx(prog) }.map_err(|e| fail(format!("nvrtcGetPTX: {e:?}"))),
        Err(e) => Err(fail(format!("{e:?}\n{log}"))),
    };
    let _ = unsafe { nv::destroy_program(prog) };
    let ptx = ptx?;
    let bytes: Vec<u8> = ptx.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect();
    String::from_utf8(bytes).map_err(|_| fail("PTX is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_expand_once_with_line_markers() {
        let src = expand("matmul.cu").unwrap();
        assert_eq!(src.matches("__device__ __forceinline__ float warp_sum").count(), 1, "common.cuh once, though quant.cuh includes it too");
        assert!(src.contains("#line 1 \"quant.cuh\""));
        assert!(!src.contains("#include \""), "every local include is resolved");
        assert!(src.contains("#include <cstring>"), "the host-only system header is left to the compiler");
        assert!(!src.contains("#pragma once"));
    }

    #[test]
    fn every_variant_names_a_source_and_its_kernels() {
        let all = all_variants();
        assert_eq!(all.len(), WEIGHT_DTYPES.len() * (MATMUL_TILES.len() + 2) + 1 + 4 + 2);
        for v in &all {
            assert!(expand(v.file).is_ok(), "{}", v.label());
            for k in v.kernels() {
                assert!(source(v.file).unwrap().contains(&format!(" {k}(")), "{} exports {k}", v.label());
            }
            assert!(!v.kernels().is_empty());
        }
        for (name, _) in SOURCES {
            assert!(name.ends_with(".cuh") || all.iter().any(|v| v.file == *name), "{name} is compiled by some variant");
        }
    }

    #[test]
    fn missing_include_is_an_error() {
        assert_eq!(source("nope.cu"), Err(KernelError::Missing("nope.cu".into())));
    }

    #[test]
    fn options_carry_arch_and_defines() {
        let v = Variant::new("matmul.cu", &["DT_Q4_0".into(), "TT=1".into()]);
        assert_eq!(options(&v, "sm_90"), ["--gpu-architecture=compute_90", "--std=c++17", "-DDT_Q4_0", "-DTT=1"]);
    }

    #[test]
    fn every_weight_dtype_has_a_define() {
        for &dt in WEIGHT_DTYPES {
            assert!(dtype_define(dt).is_some(), "{dt}");
        }
        assert_eq!(dtype_define(DType::IQ2XXS), None);
    }
}
