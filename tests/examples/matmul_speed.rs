//! Matmul throughput of the fast CPU backend per weight dtype (GMAC/s), for tuning:
//!   cargo run --release -p strata-conformance --example matmul_speed -- [ROWS] [N] [K] [THREADS] [DTYPE...]

use strata::backend::fast::FastCpuBackend;
use strata::backend::Backend;
use strata::quant::DType;
use strata_conformance::ops::{random_weight, Rng};

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).filter_map(|x| x.parse().ok()).collect();
    let (rows, n, k, threads) = (a.first().copied().unwrap_or(512), a.get(1).copied().unwrap_or(2048), a.get(2).copied().unwrap_or(1024), a.get(3).copied().unwrap_or(1));
    let b = FastCpuBackend::with_threads(threads).unwrap();
    let mut rng = Rng::new(7);
    let x = b.upload(&rng.vec(rows * k, 1.0)).unwrap();
    let mut out = b.alloc(rows * n).unwrap();
    println!("{} rows={rows} n={n} k={k}", b.name());
    let only: Vec<String> = std::env::args().skip(1).filter(|x| x.parse::<usize>().is_err()).collect();
    for dt in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4K, DType::Q5K, DType::Q6K, DType::F16] {
        if !only.is_empty() && !only.iter().any(|o| o.eq_ignore_ascii_case(&dt.to_string())) {
            continue;
        }
        let w = b.upload_weight(dt, n, k, &random_weight(dt, n, k, &mut rng)).unwrap();
        b.matmul(&x, rows, &w, &mut out).unwrap();
        let reps = 5;
        let t = std::time::Instant::now();
        for _ in 0..reps {
            // A fresh input each time: include the activation quantisation.
            let x2 = b.upload(&rng.vec(rows * k, 1.0)).unwrap();
            b.matmul(&x2, rows, &w, &mut out).unwrap();
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!("{dt:>5}: {:7.1} GMAC/s ({:.2} ms)", (rows * n * k) as f64 / s / 1e9, s * 1e3);
    }
}
