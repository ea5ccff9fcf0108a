//! Memory read bandwidth with N threads (the decode roofline of scripts/bench_vs_llamacpp.sh):
//! each thread sums its share of a 1 GiB buffer, prefetching 4 KiB ahead as the decode
//! kernels do (on the VMs here the hardware prefetchers alone reach about 70% of it); the
//! best of 5 passes, in GB/s.
//!   cargo run --release -p strata-conformance --example membw -- [THREADS]

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let words = (1usize << 30) / 8;
    let buf: Vec<u64> = (0..words as u64).collect();
    let mut best = 0f64;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let sum: u64 = std::thread::scope(|s| {
            let per = words.div_ceil(threads);
            let hs: Vec<_> = buf.chunks(per).map(|c| s.spawn(move || sum(c))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).fold(0, u64::wrapping_add)
        });
        let gbs = (words * 8) as f64 / t.elapsed().as_secs_f64() / 1e9;
        std::hint::black_box(sum);
        best = best.max(gbs);
    }
    println!("{best:.2}");
}

/// Sum of `c`, 512 bytes at a time into 8 independent lanes (vectorised), with a software
/// prefetch 4 KiB ahead on x86_64.
fn sum(c: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let blocks = c.chunks_exact(64);
    let rest = blocks.remainder();
    for (i, b) in blocks.enumerate() {
        #[cfg(target_arch = "x86_64")]
        for l in 0..8 {
            // SAFETY: a prefetch is a hint; it never faults, even past the end.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(c.as_ptr().wrapping_add(64 * i + 512 + 8 * l) as *const i8)
            };
        }
        for line in b.chunks_exact(8) {
            for (a, &x) in acc.iter_mut().zip(line) {
                *a = a.wrapping_add(x);
            }
        }
    }
    rest.iter().chain(acc.iter()).fold(0, |a, &b| a.wrapping_add(b))
}
