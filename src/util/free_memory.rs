//! Giving the heap memory a service has freed back to the system.
//!
//! glibc's malloc keeps freed memory in its arenas (one for each thread that allocated, up to
//! eight per core) and hands back to the system only the top of each heap. A service that loads
//! a model version, drops it and loads the next one keeps the holes the old ones left: its
//! resident memory grows with every version though what it holds does not. Measured on a
//! predictor following a retrain every few seconds: the heap in use peaked at 21 MiB while the
//! resident memory rose from 45 to 86 MiB in 8 minutes. `malloc_trim(0)` hands back the free
//! pages of every arena; each long-running service calls it every [`TRIM_EVERY`], and keeps to
//! one arena per core ([`limit_arenas`]; the same run: 45 MiB instead of 80 with two arenas), so
//! that fewer, fuller heaps hold the holes.

use std::time::{Duration, Instant};

/// How often a service hands its freed heap memory back.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Keeps glibc's malloc to one arena per core (at least two) instead of eight: called as early
/// as a service's main can (before its runtime starts, where it builds its own), so that as few
/// arenas as possible exist beyond the cap.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        // SAFETY: mallopt only sets one of the allocator's parameters.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, cores as libc::c_int) };
    }
}

/// Hands the freed heap memory back to the system where the allocator is glibc's (elsewhere,
/// nothing to do). Returns whether memory was handed back.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists, under its locks.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Trims every `every`, on a blocking thread (a trim walks every arena), for as long as the
/// runtime runs: spawned by each service at start.
pub async fn trim_every(every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let took = tokio::task::spawn_blocking(|| {
            let started = Instant::now();
            let released = trim();
            (released, started.elapsed())
        })
        .await;
        if let Ok((released, took)) = took {
            tracing::debug!(
                "freed heap memory handed back ({released}) in {:.2} ms",
                took.as_secs_f64() * 1e3
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory freed in the middle of the heap, beyond glibc's own trimming of the top, is
    /// handed back by a trim: the resident memory falls by most of it.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_trim_hands_back_memory_freed_below_the_top_of_the_heap() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        // 64 MiB in blocks of 64 KiB (below the mmap threshold: they come from the heap),
        // each touched; every block freed but the last, which pins the top of the heap. Other
        // tests of the process allocate meanwhile: the first of three tries to see the drop
        // passes.
        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut blocks: Vec<Vec<u8>> =
                (0..1024).map(|i| vec![i as u8 | 1; 64 * 1024]).collect();
            let last = blocks.pop().unwrap();
            drop(blocks);
            let before = rss_kib();
            assert!(trim(), "nothing handed back");
            let after = rss_kib();
            assert_eq!(last[0], 1023u16 as u8 | 1);
            if before.saturating_sub(after) > 32 * 1024 {
                return;
            }
            seen.push((before, after));
        }
        panic!("RSS before and after each trim, KiB: {seen:?}");
    }
}
