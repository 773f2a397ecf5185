//! A per-host slot, held with a lock file for as long as the process lives: the first free
//! number among the processes of one kind on one host. A process that dies (even by SIGKILL)
//! frees its slot, so the one restarted after it takes the same number — and with it the same
//! name, which is what lets a restarted group member take its partitions back at once.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Most slots tried on one host.
const MAX_SLOTS: u32 = 1024;

/// A slot held until dropped.
#[derive(Debug)]
pub struct HostSlot {
    pub number: u32,
    _lock: File,
}

/// The folder of the lock files, shared by every process of this host.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir().join("census-stream").join("slots")
}

/// Claims the lowest free slot of `kind` in `dir`.
pub fn claim(dir: &Path, kind: &str) -> std::io::Result<HostSlot> {
    std::fs::create_dir_all(dir)?;
    let kind: String = kind
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                true => c,
                false => '_',
            },
        )
        .collect();
    for number in 0..MAX_SLOTS {
        let path = dir.join(format!("{kind}.{number}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        // SAFETY: `file` is open for the whole call; flock only reads its descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(HostSlot {
                number,
                _lock: file,
            });
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(e);
        }
    }
    Err(std::io::Error::other(format!(
        "all {MAX_SLOTS} slots of {kind} in {} are taken",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_holders_never_share_a_slot_and_a_freed_one_is_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let a = claim(dir.path(), "census-predictor").unwrap();
        let b = claim(dir.path(), "census-predictor").unwrap();
        let other = claim(dir.path(), "census-retrainer").unwrap();
        assert_eq!((a.number, b.number, other.number), (0, 1, 0));
        drop(a);
        assert_eq!(claim(dir.path(), "census-predictor").unwrap().number, 0);
        assert_eq!(claim(dir.path(), "odd/name").unwrap().number, 0);
    }
}
