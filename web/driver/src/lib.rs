//! Drives the browser target's tests: [`server`] serves `web/` and the model cache over
//! HTTP with range requests (what the package's resumable downloads use), [`webdriver`]
//! runs headless Chromium through chromedriver. `strata-web-serve` (src/main.rs) serves the
//! demo page for people.

pub mod server;
pub mod webdriver;
