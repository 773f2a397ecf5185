//! The integration suite: one test binary, shared helpers.

mod browser;
mod bundles;
mod commands;
mod compose;
mod exactly_once;
mod flags;
mod gate;
mod health;
mod helpers;
mod initialize;
mod junk;
mod labels;
mod layers;
mod metrics;
mod mlflow;
mod pipeline;
mod poison;
mod process;
mod registry;
mod repeats;
mod retention;
mod scorer;
mod steps;
mod stream;
mod webdriver;
