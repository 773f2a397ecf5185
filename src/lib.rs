//! census-stream: real-time income prediction on the UCI Adult census data with LightGBM on
//! Apache Kafka. The library holds every component; the binaries in `src/bin` only parse flags
//! and call a `run` here.
//!
//! Layers, lowest first (a module uses only those above it in this list):
//! `defaults`, `settings`, `atomic`, `memory`, `logging` · `data` · `features` · `model` ·
//! `hyper`, `metrics`, `triggers` · `train` · `bundle` · `bundling` · `tracking` · `initialize` · `kafka` · `stream` · `registry` · `gate` ·
//! `predictor`, `retrainer`, `producer`, `dashboard` · `demo`, `loadtest` · `cli`.

pub mod atomic;
pub mod bundle;
pub mod bundling;
pub mod cli;
pub mod dashboard;
pub mod data;
pub mod defaults;
pub mod demo;
pub mod fault;
pub mod features;
pub mod gate;
pub mod hyper;
pub mod initialize;
pub mod kafka;
pub mod loadtest;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod predictor;
pub mod producer;
pub mod registry;
pub mod retrainer;
pub mod settings;
pub mod stream;
pub mod telemetry;
pub mod tracking;
pub mod train;
pub mod triggers;

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
