//! Named points where a test has the process killed with SIGKILL, as a crash or the kernel's
//! OOM killer would, to prove what survives a crash at that exact moment (the fault suite,
//! `tests/faults/`). Inert unless `CENSUS_FAULT_POINT` is set to `name:n`: the process kills
//! itself the n-th time it reaches `name` (n counts from 1).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms a point.
pub const ENV: &str = "CENSUS_FAULT_POINT";

static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn armed() -> Option<&'static (String, u64)> {
    ARMED
        .get_or_init(|| {
            let value = std::env::var(ENV).ok()?;
            let (name, n) = value.rsplit_once(':')?;
            Some((name.to_owned(), n.parse().ok()?))
        })
        .as_ref()
}

/// Marks that the process reached `name`; kills it there if the point is armed and due.
pub fn point(name: &str) {
    let Some((armed, n)) = armed() else {
        return;
    };
    if armed != name || HITS.fetch_add(1, Ordering::SeqCst) + 1 != *n {
        return;
    }
    eprintln!("fault point {name} reached ({n}): killing this process");
    // SAFETY: raising a signal in this process has no memory effects; SIGKILL ends it here.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
}
