//! The integration suite: one test binary, shared helpers.

mod compose;
mod helpers;
mod initialize;
mod stream;
