//! Named points where a test has the process killed with SIGKILL, as a crash or the kernel's
//! OOM killer would, to prove what survives a crash at that exact moment (the fault suite,
//! `tests/faults/`). Inert unless `CENSUS_FAULT_POINT` is set to `name:n`: the process kills
//! itself the n-th time it reaches `name` (n counts from 1). `name:n:hang` blocks the thread
//! that reaches it instead, for good, as a call into a library that never returns would (only
//! for points on blocking threads: at a point on the async runtime it would take a worker
//! thread); at a point asked with [`fires`], the caller does what the point stands for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms a point.
pub const ENV: &str = "CENSUS_FAULT_POINT";

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

struct Armed {
    name: String,
    n: u64,
    hang: bool,
}

fn armed() -> Option<&'static Armed> {
    ARMED
        .get_or_init(|| parse(&std::env::var(ENV).ok()?))
        .as_ref()
}

fn parse(value: &str) -> Option<Armed> {
    let (value, hang) = match value.strip_suffix(":hang") {
        Some(v) => (v, true),
        None => (value, false),
    };
    let (name, n) = value.rsplit_once(':')?;
    Some(Armed {
        name: name.to_owned(),
        n: n.parse().ok()?,
        hang,
    })
}

/// Whether this visit to `name` is the armed one (counting it).
fn due(name: &str) -> Option<&'static Armed> {
    let a = armed()?;
    (a.name == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == a.n).then_some(a)
}

/// Whether the point `name` fires at this visit: the caller then does what it stands for.
pub fn fires(name: &str) -> bool {
    let fired = due(name).is_some();
    if fired {
        eprintln!("fault point {name} reached: it fires");
    }
    fired
}

/// Marks that the process reached `name`; kills it there (or blocks the thread for good, with
/// `:hang`) if the point is armed and due.
pub fn point(name: &str) {
    let Some(Armed { n, hang, .. }) = due(name) else {
        return;
    };
    if *hang {
        eprintln!("fault point {name} reached ({n}): this thread hangs");
        loop {
            std::thread::park();
        }
    }
    eprintln!("fault point {name} reached ({n}): killing this process");
    // SAFETY: raising a signal in this process has no memory effects; SIGKILL ends it here.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armed_values_parse_with_and_without_hang() {
        let a = parse("in_commit:3:hang").unwrap();
        assert_eq!((a.name.as_str(), a.n, a.hang), ("in_commit", 3, true));
        let a = parse("after_acks:2").unwrap();
        assert_eq!((a.name.as_str(), a.n, a.hang), ("after_acks", 2, false));
        assert!(parse("no_count").is_none());
        assert!(parse("x:y").is_none());
    }
}
