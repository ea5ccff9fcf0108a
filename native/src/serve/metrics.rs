//! `/metrics` in Prometheus' text format: requests by endpoint and status, prompt,
//! cached and generated tokens, queue depth, busy slots, and histograms of the time to the
//! first token and between tokens. Counters are atomics: the HTTP side and the engine's
//! thread update them without waiting on each other.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A histogram of durations with fixed bucket bounds (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last one is +Inf.
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_micros: AtomicU64::new(0) }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.iter().position(|&b| s <= b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            let le = self.bounds.get(i).map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {total}");
        }
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {total}");
    }
}

pub struct Metrics {
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens a slot already held (not recomputed).
    pub cached_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub time_to_first_token: Histogram,
    pub time_per_token: Histogram,
    /// (endpoint, status) -> requests.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

const TTFT: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const PER_TOKEN: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            prompt_tokens: AtomicU64::new(0),
            cached_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            time_to_first_token: Histogram::new(TTFT),
            time_per_token: Histogram::new(PER_TOKEN),
            requests: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    pub fn request(&self, endpoint: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((endpoint, status)).or_default() += 1;
        }
    }

    /// The exposition text; `queued` and `busy` are the gauges' values now.
    pub fn text(&self, queued: usize, busy: usize, slots: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP strata_requests_total HTTP requests by endpoint and status.\n# TYPE strata_requests_total counter");
        if let Ok(m) = self.requests.lock() {
            for ((endpoint, status), n) in m.iter() {
                let _ = writeln!(out, "strata_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
            }
        }
        for (name, help, v) in [
            ("strata_prompt_tokens_total", "Prompt tokens of admitted requests.", &self.prompt_tokens),
            ("strata_prompt_tokens_cached_total", "Prompt tokens reused from a slot's cache.", &self.cached_tokens),
            ("strata_generated_tokens_total", "Tokens generated.", &self.generated_tokens),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        }
        for (name, help, v) in [
            ("strata_queue_depth", "Requests waiting for a slot.", queued),
            ("strata_slots_busy", "Slots serving a request.", busy),
            ("strata_slots", "Slots (--parallel).", slots),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        self.time_to_first_token.write(&mut out, "strata_time_to_first_token_seconds", "From a request's arrival to its first token.");
        self.time_per_token.write(&mut out, "strata_time_per_output_token_seconds", "Between consecutive tokens of a request.");
        out
    }
}
