//! The challenger's offline check, before it is ever scored in shadow: its mean log loss on
//! labeled stream rows held back from its training, and on the adult.test rows that are not
//! among its training rows, must not be worse than the champion's on the same rows by more
//! than the gate's margin δ.

use std::collections::HashSet;

use crate::bundle::Bundle;
use crate::data::LabeledRow;
use crate::lifecycle::gate::log_loss;

/// The figures of the check.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineCheck {
    /// (rows, challenger's mean log loss, champion's) on the held-back stream rows.
    pub held_back: (usize, f64, f64),
    /// The same on the test rows not trained on.
    pub test: (usize, f64, f64),
    pub delta: f64,
}

impl OfflineCheck {
    pub fn passed(&self) -> bool {
        [self.held_back, self.test]
            .iter()
            .all(|&(n, c, p)| n == 0 || c - p <= self.delta)
    }

    pub fn summary(&self) -> String {
        let part = |name: &str, (n, c, p): (usize, f64, f64)| {
            format!("{name}: {c:.4} vs champion {p:.4} on {n} rows")
        };
        format!(
            "log loss {}; {} (margin {})",
            part("held-back stream rows", self.held_back),
            part("adult.test rows not trained on", self.test),
            self.delta
        )
    }
}

/// Mean log losses of both models on `rows` (CPU work).
fn mean_losses(challenger: &Bundle, champion: &Bundle, rows: &[&LabeledRow]) -> (usize, f64, f64) {
    if rows.is_empty() {
        return (0, 0.0, 0.0);
    }
    let records = || rows.iter().map(|r| &r.row);
    let (Ok(c), Ok(p)) = (
        challenger.predict(records().collect::<Vec<_>>().into_iter()),
        champion.predict(records().collect::<Vec<_>>().into_iter()),
    ) else {
        return (rows.len(), f64::INFINITY, 0.0);
    };
    let n = rows.len() as f64;
    let loss = |probs: &[f64]| {
        rows.iter()
            .zip(probs)
            .map(|(r, &p)| log_loss(p, r.label))
            .sum::<f64>()
            / n
    };
    (rows.len(), loss(&c), loss(&p))
}

/// Runs the check (CPU work: call off the runtime). `trained_on` are the stream rows the
/// challenger was trained on: test rows equal to one of them are left out.
pub fn check(
    challenger: &Bundle,
    champion: &Bundle,
    held_back: &[LabeledRow],
    test: &[LabeledRow],
    trained_on: &[LabeledRow],
    delta: f64,
) -> OfflineCheck {
    let seen: HashSet<String> = trained_on.iter().map(row_key).collect();
    let unseen: Vec<&LabeledRow> = test
        .iter()
        .filter(|r| !seen.contains(&row_key(r)))
        .collect();
    OfflineCheck {
        held_back: mean_losses(challenger, champion, &held_back.iter().collect::<Vec<_>>()),
        test: mean_losses(challenger, champion, &unseen),
        delta,
    }
}

fn row_key(r: &LabeledRow) -> String {
    serde_json::to_string(&r.row).expect("a row serializes")
}
