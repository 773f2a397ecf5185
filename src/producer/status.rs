//! The producer's status line: sent and at what rate, answered and waiting, dead letters,
//! accuracy per model version, the challenger in shadow. On a terminal it is redrawn in place
//! a few times a second at the bottom (log and prediction lines clear it first, and it comes
//! back under them); elsewhere it is a plain line every few seconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::collect::Tally;
use super::send::SendTimes;
use super::summary::VersionTally;
use super::view::Sink;
use crate::defaults;
use crate::util::logging;

/// How the status line is shown.
#[derive(Debug, Clone)]
pub struct Status {
    pub sink: Sink,
    /// Redrawn in place (a terminal) rather than written as lines.
    pub in_place: bool,
    pub every: Duration,
}

impl Status {
    /// On stderr: redrawn in place on a terminal ([`defaults::STATUS_REDRAW`]), else a plain
    /// line every [`defaults::STATUS_LINE_EVERY`].
    pub fn stderr() -> Self {
        let in_place = std::io::stderr().is_terminal();
        Status {
            sink: Sink::new(std::io::stderr()),
            in_place,
            every: if in_place {
                defaults::STATUS_REDRAW
            } else {
                defaults::STATUS_LINE_EVERY
            },
        }
    }
}

/// What one status line says.
pub(super) struct Figures<'a> {
    pub sent: usize,
    pub total: usize,
    /// Requests a second over the last interval.
    pub rate: f64,
    pub predicted: usize,
    pub dead: usize,
    pub per_version: &'a BTreeMap<u32, VersionTally>,
    pub shadow: Option<u32>,
}

impl Figures<'_> {
    pub(super) fn line(&self) -> String {
        let answered = self.predicted + self.dead;
        let mut s = format!(
            "sent {}/{} at {:.0}/s | answered {} ({} waiting) | dead letters {}",
            self.sent,
            self.total,
            self.rate,
            answered,
            self.sent.saturating_sub(answered),
            self.dead
        );
        let accuracies: Vec<String> = self
            .per_version
            .iter()
            .filter_map(|(v, t)| Some(format!("v{v} {:.4} ({})", t.accuracy()?, t.labeled)))
            .collect();
        if !accuracies.is_empty() {
            let _ = write!(s, " | accuracy {}", accuracies.join(", "));
        }
        if let Some(v) = self.shadow {
            let _ = write!(s, " | v{v} in shadow");
        }
        s
    }
}

/// Shows the status line every `status.every` until `stop`, then clears it (in place) or writes
/// a last one (lines).
pub(super) fn show(
    status: Status,
    sent: Arc<SendTimes>,
    tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if status.in_place {
            logging::status_line_shown(true);
        }
        let mut last = (Instant::now(), 0);
        loop {
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                () = tokio::time::sleep(status.every) => false,
            };
            let (count, total) = sent.progress();
            let elapsed = last.0.elapsed().as_secs_f64().max(1e-3);
            let rate = (count - last.1) as f64 / elapsed;
            last = (Instant::now(), count);
            let line = {
                let t = tally.lock().expect("tally");
                Figures {
                    sent: count,
                    total,
                    rate,
                    predicted: t.first.len(),
                    dead: t.dead.len(),
                    per_version: &t.per_version,
                    shadow: t.shadow,
                }
                .line()
            };
            match (status.in_place, stopping) {
                (true, false) => status.sink.redraw(&line),
                (true, true) => {
                    status.sink.redraw("");
                    logging::status_line_shown(false);
                    return;
                }
                (false, _) => status.sink.line(&line),
            }
            if stopping {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_each_figure() {
        let mut per_version = BTreeMap::new();
        per_version.insert(
            1,
            VersionTally {
                predictions: 500,
                labeled: 400,
                correct: 340,
            },
        );
        per_version.insert(
            2,
            VersionTally {
                predictions: 10,
                labeled: 0,
                correct: 0,
            },
        );
        let f = Figures {
            sent: 520,
            total: 6000,
            rate: 199.6,
            predicted: 510,
            dead: 4,
            per_version: &per_version,
            shadow: Some(3),
        };
        assert_eq!(
            f.line(),
            "sent 520/6000 at 200/s | answered 514 (6 waiting) | dead letters 4 | accuracy v1 \
             0.8500 (400) | v3 in shadow"
        );
    }
}
