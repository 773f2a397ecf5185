//! What the producer shows a person while it runs: a line per prediction beside its request
//! (at most so many a second), written to a sink it is given. Logs go to stderr; with stdout
//! as the sink, `producer > predictions.txt` keeps clean lines.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use crate::data::label_text;
use crate::stream::messages::{now_ms, Prediction};
use crate::util::logging;

/// Where lines for a person go: stdout for the binaries, a buffer in tests.
#[derive(Clone)]
pub struct Sink {
    out: Arc<Mutex<dyn Write + Send>>,
    /// A terminal, where a status line may be drawn in place (see [`crate::util::logging`]).
    terminal: bool,
}

impl Sink {
    pub fn new(w: impl Write + Send + 'static) -> Self {
        Sink {
            out: Arc::new(Mutex::new(w)),
            terminal: false,
        }
    }

    pub fn stdout() -> Self {
        Sink {
            terminal: std::io::stdout().is_terminal(),
            ..Sink::new(std::io::stdout())
        }
    }

    /// Writes one line (clearing a status line drawn in place first). A closed pipe or a full
    /// disk is not worth stopping the stream for.
    pub fn line(&self, text: &str) {
        let clear = if self.terminal && logging::is_status_line_shown() {
            logging::CLEAR_LINE
        } else {
            ""
        };
        let mut w = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(w, "{clear}{text}").and_then(|()| w.flush());
    }

    /// Draws `text` in place of the line the cursor is on, without ending it.
    pub fn redraw(&self, text: &str) {
        let mut w = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = write!(w, "{}{text}", logging::CLEAR_LINE).and_then(|()| w.flush());
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sink")
    }
}

/// Prediction lines, at most `per_sec` a second.
pub(super) struct View {
    sink: Option<Sink>,
    per_sec: u32,
    /// The current second and the lines shown in it.
    shown: (u64, u32),
}

impl View {
    pub(super) fn new(sink: Option<Sink>, per_sec: u32) -> Self {
        View {
            sink,
            per_sec,
            shown: (0, 0),
        }
    }

    /// Shows `p` unless this second's lines are used up. `accuracy` is the running accuracy
    /// over every labeled prediction so far.
    pub(super) fn prediction(
        &mut self,
        p: &Prediction,
        truth: Option<bool>,
        latency_ms: f64,
        accuracy: Option<f64>,
    ) {
        let Some(sink) = &self.sink else {
            return;
        };
        let second = now_ms() as u64 / 1000;
        if self.shown.0 != second {
            self.shown = (second, 0);
        }
        if self.shown.1 >= self.per_sec {
            return;
        }
        self.shown.1 += 1;
        sink.line(&format!(
            "{:<16} p(>50K)={:.3} predicted {:<5} true {:<5} v{} {:>5.0} ms | accuracy {}",
            p.request_id,
            p.probability,
            p.predicted,
            truth.map_or("?", label_text),
            p.model_version,
            latency_ms,
            // No label inside any request so far (labels apart: the dashboard joins them).
            accuracy.map_or_else(|| "–".to_owned(), |a| format!("{a:.4}"))
        ));
    }
}
