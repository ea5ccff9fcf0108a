//! Wall-clock timing that also compiles for wasm32 (where `Instant` is unavailable without
//! JS glue: durations read zero there until the browser target supplies a clock).

use std::time::Duration;

pub(crate) struct Clock(#[cfg(not(target_arch = "wasm32"))] std::time::Instant);

impl Clock {
    pub(crate) fn start() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        return Clock(std::time::Instant::now());
        #[cfg(target_arch = "wasm32")]
        return Clock();
    }

    pub(crate) fn elapsed(&self) -> Duration {
        #[cfg(not(target_arch = "wasm32"))]
        return self.0.elapsed();
        #[cfg(target_arch = "wasm32")]
        return Duration::ZERO;
    }
}
