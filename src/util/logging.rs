//! Logging set-up shared by the binaries: `RUST_LOG` filters, `info` by default.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

/// ANSI: back to the line's start and erase it.
pub const CLEAR_LINE: &str = "\r\x1b[2K";

/// Whether a status line is drawn in place at the bottom of the terminal (the producer's).
static STATUS_SHOWN: AtomicBool = AtomicBool::new(false);

/// Says whether a status line is drawn in place: lines written to the terminal meanwhile clear
/// it first, and it is drawn again under them.
pub fn status_line_shown(shown: bool) {
    STATUS_SHOWN.store(shown, Ordering::Relaxed);
}

pub fn is_status_line_shown() -> bool {
    STATUS_SHOWN.load(Ordering::Relaxed)
}

/// Cranelift logs each function it compiles at `info`, IR included: quiet unless `RUST_LOG`
/// names it.
const QUIET_COMPILER: &str = "cranelift=warn";

/// Whether log lines may carry colour: stderr is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>). Logs redirected to a file or a pipe stay plain text.
fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs a stderr logger. Safe to call more than once (later calls do nothing).
pub fn init() {
    use std::io::IsTerminal;
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let names_compiler = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("cranelift"));
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if !names_compiler {
        filter = filter.add_directive(QUIET_COMPILER.parse().expect("a valid directive"));
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| {
            let mut stderr = std::io::stderr();
            if is_status_line_shown() {
                let _ = stderr.write_all(CLEAR_LINE.as_bytes());
            }
            stderr
        })
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
