//! After warm-up, a decode step on the fast CPU backend makes no heap allocation: the
//! forward pass's buffers come back from the backend's pool, the thread pool hands out
//! chunks without allocating, and kernels use per-thread scratch. A counting global
//! allocator proves it (on every thread, the pool's workers included).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use strata::arch::forward::Logits;
use strata_conformance::engine::{decode_three, fast_cpu, CpuModel, THREE_PROMPTS};
use strata_conformance::models;

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// The counter is global: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn a_warm_decode_step_allocates_nothing() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let m = CpuModel::load_on(fast_cpu(), &path);
    let mut kv = m.cache(64);
    let step = |kv: &mut strata::kv_cache::KvCache<_>, tok: u32| {
        drop(m.net().forward(kv, &[tok], Logits::Last).unwrap());
    };
    drop(m.net().forward(&mut kv, &[1, 504, 3458, 282], Logits::Last).unwrap());
    for tok in [4649, 314, 2867] {
        step(&mut kv, tok);
    }
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for tok in [30, 378, 2396, 1536, 42] {
        step(&mut kv, tok);
    }
    COUNTING.store(false, Ordering::SeqCst);
    let n = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(kv.len, 12, "every step appended to the cache");
    assert_eq!(n, 0, "{n} heap allocations in 5 warm decode steps");
}

/// Continuous batching's steady state: three sequences decoding together, warm, allocate
/// nothing either (their ids and positions fit the forward's stack rows; the per-sequence
/// attention scratch comes from the pool).
#[test]
fn a_warm_batched_decode_step_allocates_nothing() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let m = CpuModel::load_on(fast_cpu(), &path);
    let mut kvs: Vec<_> = (0..3).map(|_| m.cache(64)).collect();
    for (kv, p) in kvs.iter_mut().zip(THREE_PROMPTS) {
        drop(m.net().forward(kv, p, Logits::Last).unwrap());
    }
    let step = |kvs: &mut [strata::kv_cache::KvCache<_>], tok: u32| drop(decode_three(&m.net(), kvs, tok));
    for tok in [30, 378, 2396] {
        step(&mut kvs, tok);
    }
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for tok in [1536, 42, 99, 7, 600] {
        step(&mut kvs, tok);
    }
    COUNTING.store(false, Ordering::SeqCst);
    let n = ALLOCS.load(Ordering::SeqCst);
    assert_eq!([kvs[0].len, kvs[1].len, kvs[2].len], [12, 10, 11], "every step appended to every cache");
    assert_eq!(n, 0, "{n} heap allocations in 5 warm batched decode steps of 3 sequences");
}

/// The counter works: the same steps on the reference backend do allocate.
#[test]
fn the_counter_sees_the_reference_backend_allocate() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let m = CpuModel::load(&path);
    let mut kv = m.cache(16);
    drop(m.net().forward(&mut kv, &[1, 504], Logits::Last).unwrap());
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    drop(m.net().forward(&mut kv, &[3458], Logits::Last).unwrap());
    COUNTING.store(false, Ordering::SeqCst);
    assert!(ALLOCS.load(Ordering::SeqCst) > 10);
}
