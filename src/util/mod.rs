//! Small crate-wide utilities: crash-safe file writes and hashes, the process's peak memory and
//! handing freed memory back, its
//! threads' and session's scheduling priority,
//! the fault-injection points of the fault suite, the host's name and per-host slots, a service's readiness probes, and log set-up.

pub mod atomic_file;
pub mod fault;
pub mod free_memory;
pub mod health;
pub mod host;
pub mod jsonl;
pub mod logging;
pub mod peak_memory;
pub mod priority;
pub mod session_group;
pub mod slot;
