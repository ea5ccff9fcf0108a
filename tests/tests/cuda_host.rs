//! The CUDA kernels' block decoders (`shaders/cuda/quant.cuh`, the code every CUDA matmul,
//! embed and dequant kernel reads weights through) compiled for the host with a C++
//! compiler and checked against the CPU reference dequantiser on random blocks of every
//! weight dtype, including float rows that end mid-group. No GPU needed: this runs in CI.
//! Without a C++ compiler the test says SKIPPED, unless STRATA_REQUIRE_CXX=1 (CI).

use std::io::Write;
use std::process::{Command, Stdio};

use strata::quant::dequant::dequantize;
use strata::quant::DType;
use strata_conformance::ops::{random_weight, Rng};
use strata_cuda::kernels::{dtype_define, expand, WEIGHT_DTYPES};

const DRIVER: &str = r#"
#include <cstdio>
#include <cstdlib>
#include <vector>
// argv: rows k row_bytes; stdin: rows * row_bytes bytes; stdout: rows * k f32.
int main(int argc, char** argv) {
    if (argc != 4) return 2;
    const u32 rows = (u32)atoi(argv[1]), k = (u32)atoi(argv[2]), rb = (u32)atoi(argv[3]);
    // 8 spare bytes: ld32 of a block's last field reads whole words.
    std::vector<u8> w((size_t)rows * rb + 8);
    if (fread(w.data(), 1, (size_t)rows * rb, stdin) != (size_t)rows * rb) return 3;
    std::vector<float> out((size_t)rows * k);
    for (u32 r = 0; r < rows; ++r) {
        for (u32 g = 0; g * 8u < k; ++g) {
            float v[8];
            dequant8(w.data() + (size_t)r * rb, g, k, v);
            for (u32 j = 0; j < 8u && g * 8u + j < k; ++j) out[(size_t)r * k + g * 8u + j] = v[j];
        }
    }
    fwrite(out.data(), 4, out.size(), stdout);
    return 0;
}
"#;

#[test]
fn cuda_block_decoders_match_the_cpu_dequantiser() {
    let Some(cxx) = strata_conformance::cxx_or_skip() else { return };
    let dir = std::env::temp_dir().join(format!("strata-cuda-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("driver.cpp");
    std::fs::write(&src, format!("#define STRATA_HOST 1\n{}\n{DRIVER}", expand("quant.cuh").unwrap())).unwrap();
    let mut rng = Rng::new(7);
    for &dt in WEIGHT_DTYPES {
        let exe = dir.join(format!("driver-{dt}"));
        let define = format!("-D{}", dtype_define(dt).unwrap());
        let out = Command::new(&cxx).args(["-std=c++17", "-O1", "-Wall", "-Werror", &define, "-o"]).arg(&exe).arg(&src).output().unwrap();
        assert!(out.status.success(), "{cxx} failed for {dt}:\n{}", String::from_utf8_lossy(&out.stderr));
        // Whole blocks for quantised types; float rows also of a length that ends mid-group.
        let (block, _) = dt.block();
        let lens: Vec<usize> = if block == 1 { vec![64, 61, 5] } else { vec![block as usize * 3] };
        for k in lens {
            let rows = 5;
            let bytes = random_weight(dt, rows, k, &mut rng);
            let row_bytes = dt.row_bytes(k as u64).unwrap() as usize;
            let mut want = vec![0f32; rows * k];
            for r in 0..rows {
                dequantize(dt, &bytes[r * row_bytes..(r + 1) * row_bytes], &mut want[r * k..(r + 1) * k]).unwrap();
            }
            let mut child = Command::new(&exe).args([rows.to_string(), k.to_string(), row_bytes.to_string()]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
            child.stdin.take().unwrap().write_all(&bytes[..rows * row_bytes]).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{dt}: driver exit {:?}", out.status);
            let have: Vec<f32> = out.stdout.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            assert_eq!(have.len(), want.len(), "{dt}");
            // The same arithmetic (d * q + m in f32) as the CPU: equal bits, except fused
            // multiply-adds the compiler may form; allow one rounding step.
            for (i, (h, w)) in have.iter().zip(&want).enumerate() {
                let tol = w.abs() * 2.0 * f32::EPSILON;
                assert!((h - w).abs() <= tol, "{dt} k={k}: value {i} (row {}, col {}) = {h}, CPU {w}", i / k, i % k);
            }
            println!("{dt} k={k}: {} values equal the CPU dequantiser", have.len());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The decoder check can fail: a corrupted Q4_0 nibble order is caught.
#[test]
fn a_wrong_decoder_is_caught() {
    let Some(cxx) = strata_conformance::cxx_or_skip() else { return };
    let dir = std::env::temp_dir().join(format!("strata-cuda-host-neg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = expand("quant.cuh").unwrap().replace("const u32 shift = (sub >> 1) * 4u;", "const u32 shift = (sub & 1u) * 4u;");
    assert_ne!(broken, expand("quant.cuh").unwrap(), "the mutation applies");
    let src = dir.join("driver.cpp");
    std::fs::write(&src, format!("#define STRATA_HOST 1\n{broken}\n{DRIVER}")).unwrap();
    let exe = dir.join("driver");
    let st = Command::new(&cxx).args(["-std=c++17", "-O1", "-DDT_Q4_0", "-o"]).arg(&exe).arg(&src).status().unwrap();
    assert!(st.success());
    let mut rng = Rng::new(3);
    let dt = DType::Q4_0;
    let bytes = random_weight(dt, 1, 64, &mut rng);
    let mut want = vec![0f32; 64];
    dequantize(dt, &bytes, &mut want).unwrap();
    let mut child = Command::new(&exe).args(["1", "64", "36"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let have: Vec<f32> = out.stdout.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert!(have.iter().zip(&want).any(|(h, w)| h != w), "the broken decoder must disagree");
    let _ = std::fs::remove_dir_all(&dir);
}
