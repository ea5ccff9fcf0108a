//! Memory read bandwidth with N threads (the decode roofline of scripts/bench_vs_llamacpp.sh):
//! each thread sums its share of a 1 GiB buffer; the best of 5 passes, in GB/s.
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
            let hs: Vec<_> = buf.chunks(per).map(|c| s.spawn(move || c.iter().fold(0u64, |a, &b| a.wrapping_add(b)))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).fold(0, u64::wrapping_add)
        });
        let gbs = (words * 8) as f64 / t.elapsed().as_secs_f64() / 1e9;
        std::hint::black_box(sum);
        best = best.max(gbs);
    }
    println!("{best:.2}");
}
