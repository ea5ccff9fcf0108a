//! A persistent thread pool for the fast CPU backend: the calling thread and `threads - 1`
//! workers share each op's chunks through an atomic counter. Between ops a worker spins
//! briefly (an op follows the last one within microseconds in a forward pass), then parks
//! on a condition variable, so an idle or shared machine is not kept busy (llama.cpp's
//! spinning threads lose most of their speed when another process takes a core).
//! No thread is spawned and nothing is allocated per op.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a worker spins for the next op before it parks.
const SPIN: Duration = Duration::from_micros(200);

type Task = &'static (dyn Fn(usize) + Sync);

struct Job {
    epoch: u64,
    task: Option<Task>,
    chunks: usize,
}

struct Shared {
    job: Mutex<Job>,
    wake: Condvar,
    /// Mirrors `job.epoch` for spinning without the lock.
    epoch: AtomicUsize,
    next: AtomicUsize,
    done: AtomicUsize,
    /// Workers inside a job (they may still read its task).
    active: AtomicUsize,
    stop: AtomicBool,
}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
    threads: usize,
    /// One job at a time: ops on the same backend from several threads take turns.
    turn: Mutex<()>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} threads)", self.threads)
    }
}

impl Pool {
    /// A pool of `threads` (the caller counts as one; on wasm32 there are no workers).
    pub fn new(threads: usize) -> Pool {
        let threads = if cfg!(target_arch = "wasm32") { 1 } else { threads.max(1) };
        let shared = Arc::new(Shared {
            job: Mutex::new(Job { epoch: 0, task: None, chunks: 0 }),
            wake: Condvar::new(),
            epoch: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let mut workers = Vec::new();
        for i in 1..threads {
            let s = shared.clone();
            let spawned = std::thread::Builder::new().name(format!("strata-cpu-{i}")).spawn(move || worker(&s));
            match spawned {
                Ok(h) => workers.push(h),
                Err(_) => break,
            }
        }
        let threads = workers.len() + 1;
        Pool { shared, workers, threads, turn: Mutex::new(()) }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(0..chunks)` over the pool and returns when every chunk is done.
    pub fn run(&self, chunks: usize, f: &(dyn Fn(usize) + Sync)) {
        if chunks == 0 {
            return;
        }
        if self.threads == 1 || chunks == 1 {
            (0..chunks).for_each(f);
            return;
        }
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: the task is only called until `done == chunks` and read by workers only
        // while `active > 0`; this function waits for both before returning, so the
        // reference never outlives `f`.
        let task: Task = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Task>(f) };
        {
            let mut job = s.job.lock().unwrap_or_else(|e| e.into_inner());
            s.next.store(0, Ordering::SeqCst);
            s.done.store(0, Ordering::SeqCst);
            job.epoch += 1;
            job.task = Some(task);
            job.chunks = chunks;
            s.epoch.store(job.epoch as usize, Ordering::SeqCst);
        }
        s.wake.notify_all();
        work(s, task, chunks);
        spin_until(|| s.done.load(Ordering::Acquire) >= chunks);
        // Workers that took the task before it is cleared are counted in `active`; those
        // after see `None`. Wait for the former, so none keeps a reference past `f`.
        s.job.lock().unwrap_or_else(|e| e.into_inner()).task = None;
        spin_until(|| s.active.load(Ordering::Acquire) == 0);
    }
}

fn spin_until(cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    let mut spins = 0u32;
    while !cond() {
        spins = spins.wrapping_add(1);
        // The clock is read every 256 spins: reading it is dearer than a spin.
        if !spins.is_multiple_of(256) || t0.elapsed() < SPIN {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn work(s: &Shared, task: Task, chunks: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::AcqRel);
        if i >= chunks {
            break;
        }
        task(i);
        s.done.fetch_add(1, Ordering::AcqRel);
    }
}

fn worker(s: &Shared) {
    let mut seen = 0usize;
    loop {
        // Spin for a new epoch, then park.
        let t0 = Instant::now();
        let mut spins = 0u32;
        while s.epoch.load(Ordering::Acquire) == seen && !s.stop.load(Ordering::Acquire) {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && t0.elapsed() >= SPIN {
                break;
            }
            std::hint::spin_loop();
        }
        let (task, chunks) = {
            let mut job = s.job.lock().unwrap_or_else(|e| e.into_inner());
            while job.epoch as usize == seen && !s.stop.load(Ordering::Acquire) {
                job = s.wake.wait(job).unwrap_or_else(|e| e.into_inner());
            }
            if s.stop.load(Ordering::Acquire) {
                return;
            }
            seen = job.epoch as usize;
            // Registered under the lock: `run` cannot clear the task while we hold it.
            s.active.fetch_add(1, Ordering::SeqCst);
            (job.task, job.chunks)
        };
        if let Some(t) = task {
            work(s, t, chunks);
        }
        s.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _job = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_runs_once_across_many_jobs() {
        let pool = Pool::new(3);
        for chunks in [1usize, 2, 7, 64, 1000] {
            let hits: Vec<AtomicUsize> = (0..chunks).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..20 {
                pool.run(chunks, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 20), "chunks {chunks}");
        }
    }
}
