//! The integration suite: one test binary, shared helpers.

mod helpers;
mod initialize;
mod stream;
