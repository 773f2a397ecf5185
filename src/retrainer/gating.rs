//! The gate as the retrainer runs it: the challenger (or, on probation after a promotion, the
//! former champion) and the champion score every labeled row stored after the challenger's
//! cut-off, and the paired log losses feed the sequential test. Its state is derivable: replaying
//! the rows file through it after a restart gives the same figures.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::rowlog::StoredRow;
use crate::bundle::Bundle;
use crate::lifecycle::gate::{Decision, Gate, GateSettings};

pub struct GateRun {
    pub challenger: Arc<Bundle>,
    pub champion: Arc<Bundle>,
    /// The challenger is the former champion, shadowed after a promotion.
    pub probation: bool,
    /// Rows at or after these offsets count.
    pub from_offsets: BTreeMap<String, i64>,
    pub gate: Gate,
    /// Labels at the last progress report.
    pub reported: u64,
}

impl GateRun {
    pub fn new(
        challenger: Arc<Bundle>,
        champion: Arc<Bundle>,
        probation: bool,
        from_offsets: BTreeMap<String, i64>,
        settings: GateSettings,
    ) -> Self {
        GateRun {
            challenger,
            champion,
            probation,
            from_offsets,
            gate: Gate::new(settings),
            reported: 0,
        }
    }

    pub fn challenger_version(&self) -> u32 {
        self.challenger.manifest.version
    }

    pub fn champion_version(&self) -> u32 {
        self.champion.manifest.version
    }

    /// Scores the rows that count (at or after the cut-off) with both models and adds their
    /// paired log losses, in order (CPU work).
    pub fn feed(&mut self, rows: &[StoredRow]) {
        let counted: Vec<&StoredRow> = rows
            .iter()
            .filter(|r| r.at_or_after(&self.from_offsets))
            .collect();
        if counted.is_empty() {
            return;
        }
        let records = || {
            counted
                .iter()
                .map(|r| &r.row)
                .collect::<Vec<_>>()
                .into_iter()
        };
        match (
            self.challenger.predict(records()),
            self.champion.predict(records()),
        ) {
            (Ok(c), Ok(p)) => {
                // Up to the label that decides: the evidence is what the decision was made on.
                for ((r, c), p) in counted.iter().zip(c).zip(p) {
                    if self.gate.decision() != Decision::Continue {
                        break;
                    }
                    self.gate.observe(c, p, r.label);
                }
            }
            (Err(e), _) | (_, Err(e)) => tracing::error!(
                "retrainer: scoring {} rows for the gate failed: {}",
                counted.len(),
                crate::error_chain(&e)
            ),
        }
    }

    pub fn decision(&self) -> Decision {
        self.gate.decision()
    }
}
