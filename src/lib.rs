//! census-stream: real-time income prediction on the UCI Adult census data with LightGBM on
//! Apache Kafka. The library holds every component; the binaries in `src/bin` only parse flags
//! and call a `run` here.
//!
//! Layers, lowest first: a module uses only modules of the layers before its own, never one of
//! its own layer or a later one (`tests/suite/layers.rs` reads this list and checks it):
//!
//! 1. `defaults`
//! 2. `settings`
//! 3. `util`
//! 4. `data`, `join`
//! 5. `features`
//! 6. `model`
//! 7. `lifecycle`
//! 8. `train`
//! 9. `bundle`, `scenario`
//! 10. `tracking`
//! 11. `initialize`
//! 12. `kafka`
//! 13. `stream`
//! 14. `telemetry`
//! 15. `registry`
//! 16. `predictor`, `retrainer`, `producer`, `dashboard`
//! 17. `demo`, `loadtest`
//! 18. `cli`

pub mod bundle;
pub mod cli;
pub mod dashboard;
pub mod data;
pub mod defaults;
pub mod demo;
pub mod features;
pub mod initialize;
pub mod join;
pub mod kafka;
pub mod lifecycle;
pub mod loadtest;
pub mod model;
pub mod predictor;
pub mod producer;
pub mod registry;
pub mod retrainer;
pub mod scenario;
pub mod settings;
pub mod stream;
pub mod telemetry;
pub mod tracking;
pub mod train;
pub mod util;

/// An error and its causes on one line, `outer: inner: innermost`, for log lines (which, unlike
/// a binary's exit, do not print the chain).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
