//! The gate as the retrainer runs it: the challenger (or, on probation after a promotion, the
//! former champion) and the champion score every labeled row stored after the challenger's
//! cut-off, and the paired log losses feed the sequential test. A row either model was trained
//! on — the same features and label, whatever its offset or request id, as a stream that repeats
//! its input brings again — is never evidence: it is left out and counted. Its state is
//! derivable: replaying the rows file through it after a restart gives the same figures.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::offline::content_key;
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
    /// Labels counted and rows left out at the last progress report.
    pub reported: u64,
    /// Content keys of the rows either model was trained on.
    trained_on: HashSet<u64>,
    /// Rows after the cut-off left out because a model was trained on their like.
    pub left_out: u64,
}

/// The content keys of the rows a model with these stream cut-offs was trained on: the base
/// rows' keys and those of the stored rows before its cut-off.
pub fn trained_keys(
    base: &HashSet<u64>,
    rows: &[StoredRow],
    cutoffs: &[&BTreeMap<String, i64>],
) -> HashSet<u64> {
    let mut keys = base.clone();
    for r in rows {
        if cutoffs.iter().any(|c| !r.at_or_after(c)) {
            keys.insert(content_key(&r.row, r.label));
        }
    }
    keys
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
            trained_on: HashSet::new(),
            left_out: 0,
        }
    }

    /// Leaves out from now on the rows either model was trained on: the `base` rows' keys, and
    /// the stored `rows` before either model's stream cut-off (from their manifests).
    pub fn leave_out_trained(&mut self, base: &HashSet<u64>, rows: &[StoredRow]) {
        let cutoffs = [
            &self.challenger.manifest.training_data.stream_offsets,
            &self.champion.manifest.training_data.stream_offsets,
        ];
        self.trained_on = trained_keys(base, rows, &cutoffs);
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
        let mut counted: Vec<&StoredRow> = rows
            .iter()
            .filter(|r| r.at_or_after(&self.from_offsets))
            .collect();
        let before = counted.len();
        counted.retain(|r| !self.trained_on.contains(&content_key(&r.row, r.label)));
        self.left_out += (before - counted.len()) as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rows_before_either_cut_off_and_the_base_rows_are_trained_on() {
        let rows: Vec<StoredRow> = (0..6)
            .map(|o| {
                let mut r = StoredRow::example(o);
                r.row.age = 20.0 + o as f64;
                r
            })
            .collect();
        let base = HashSet::from([content_key(&rows[5].row, rows[5].label)]);
        let key = |i: usize| content_key(&rows[i].row, rows[i].label);
        let early = BTreeMap::from([("t/0".to_owned(), 2)]);
        let later = BTreeMap::from([("t/0".to_owned(), 4)]);
        let keys = trained_keys(&base, &rows, &[&early, &later]);
        assert_eq!(
            keys,
            HashSet::from([key(0), key(1), key(2), key(3), key(5)])
        );
        // A version trained on the base rows only (no stream cut-off) adds nothing.
        assert_eq!(trained_keys(&base, &rows, &[&BTreeMap::new()]), base);
        // The same features with the other label are another row.
        let mut flipped = rows[0].clone();
        flipped.label = !flipped.label;
        assert!(!keys.contains(&content_key(&flipped.row, flipped.label)));
    }
}
