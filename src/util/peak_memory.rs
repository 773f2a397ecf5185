//! The process's peak resident memory, which every service reports when it stops.

/// Peak resident set size of this process so far, in bytes (`getrusage`), if the platform tells.
pub fn peak_rss_bytes() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: getrusage returned 0, so the struct is initialized.
        let max = unsafe { usage.assume_init() }.ru_maxrss;
        // Linux reports kilobytes, macOS bytes.
        let unit = if cfg!(target_os = "macos") { 1 } else { 1024 };
        u64::try_from(max).ok().map(|m| m * unit)
    }
    #[cfg(not(unix))]
    None
}

/// "peak RSS 84.2 MiB", or nothing where the platform does not tell.
pub fn peak_rss_line() -> String {
    peak_rss_bytes().map_or_else(String::new, |b| {
        format!("peak RSS {:.1} MiB", b as f64 / (1024.0 * 1024.0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_grows_with_a_large_touched_allocation() {
        let before = peak_rss_bytes().expect("linux reports it");
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let after = peak_rss_bytes().unwrap();
        assert!(after >= before.max(64 << 20), "{before} -> {after}");
    }
}
