//! census-stream: real-time income prediction on the UCI Adult census data with LightGBM on
//! Apache Kafka. The library holds every component; the binaries in `src/bin` only parse flags
//! and call a `run` here.

pub mod atomic;
pub mod bundle;
pub mod cli;
pub mod data;
pub mod demo;
pub mod features;
pub mod initialize;
pub mod loadtest;
pub mod logging;
pub mod memory;
pub mod model;
pub mod predictor;
pub mod producer;
pub mod retrainer;
pub mod stream;
pub mod train;
