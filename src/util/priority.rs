//! Training in the background: the threads that train a model can run at a lower scheduling
//! priority (a higher nice value), so that predictors on the same host keep their cores while a
//! retrain runs. On Linux a nice value set with a thread's id applies to that thread alone.

/// Gives the calling thread the nice value `nice` (0 leaves it as it is). Logged, never fatal,
/// when the system refuses.
pub fn nice_this_thread(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority on the calling thread's id have no memory effects.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
        // SAFETY: as above.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
            tracing::warn!(
                "training threads keep their priority: setpriority({nice}) failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The calling thread's nice value (Linux; 0 elsewhere).
pub fn this_thread_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as in `nice_this_thread`.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
        // SAFETY: getpriority has no memory effects; -1 may be a value or an error, and a
        // thread's nice value here is never -1 unless set so.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) }
    }
    #[cfg(not(target_os = "linux"))]
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_given_a_nice_value_has_it_and_others_keep_theirs() {
        let before = this_thread_nice();
        let want = (before + 3).min(19);
        let inside = std::thread::spawn(move || {
            nice_this_thread(want);
            this_thread_nice()
        })
        .join()
        .unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(inside, want);
        }
        assert_eq!(this_thread_nice(), before, "only the thread that asked");
    }
}
