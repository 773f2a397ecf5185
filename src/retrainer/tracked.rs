//! The retrainer's events logged to MLflow ([`Tracker`]): each retrain a run (and a version of
//! the registered model once published), and the `champion` and `challenger` aliases moved as
//! the registry's alias records move them.

use super::Event;
use crate::bundle::BundleStore;
use crate::tracking::{Tracker, VersionRecord, CHALLENGER, CHAMPION};

/// Queues what `event` says for MLflow; the bundle's files are read from `store`.
pub fn track(tracker: &Tracker, store: &BundleStore, event: &Event) {
    match event {
        Event::Retrained(e) => {
            let mut record =
                VersionRecord::of_bundle(&e.manifest, store, &e.log_losses, e.started_at_ms);
            record.finished_ms = e.finished_at_ms;
            record.tag("made_by", "retrainer");
            record.tag("outcome", e.outcome.clone());
            let outcome = e.outcome_kind();
            if outcome == "refused" {
                // Neither published nor stored: a run of its search, no files, no version.
                record.artifacts.clear();
                record.register = false;
            }
            tracker.log_version(record);
            match outcome {
                "champion" => tracker.set_alias(CHAMPION, e.version),
                "challenger" => tracker.set_alias(CHALLENGER, e.version),
                "rejected_offline" => tracker.remove_alias(CHALLENGER),
                _ => {}
            }
        }
        Event::Gate(g) => match g.decision_kind() {
            // The former champion stays as the challenger, on probation.
            Some("promoted") => {
                tracker.set_alias(CHAMPION, g.challenger);
                tracker.set_alias(CHALLENGER, g.champion);
            }
            Some("rolled_back") => {
                tracker.set_alias(CHAMPION, g.challenger);
                tracker.remove_alias(CHALLENGER);
            }
            Some(_) => tracker.remove_alias(CHALLENGER),
            None => {}
        },
        Event::Drift(_) | Event::FeatureDrift { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retrained(version: u32, outcome: &str) -> Event {
        Event::retrained_example(version, outcome)
    }

    fn decided(challenger: u32, champion: u32, probation: bool, words: &str) -> Event {
        Event::gate_example(challenger, champion, probation, 600, Some(words))
    }

    fn queued(events: &[Event]) -> Vec<String> {
        let tracker = Tracker::idle();
        let store = BundleStore::new("m", "p");
        for e in events {
            track(&tracker, &store, e);
        }
        tracker.queued()
    }

    #[test]
    fn aliases_follow_the_registry() {
        assert_eq!(
            queued(&[
                retrained(2, "challenger"),
                decided(2, 1, false, "v2 promoted over v1 by the gate"),
                decided(
                    1,
                    2,
                    true,
                    "rolled back to v1: it proved better than v2 on probation"
                ),
            ]),
            [
                "the run of bundle v2",
                "alias challenger → bundle v2",
                "alias champion → bundle v2",
                "alias challenger → bundle v1",
                "alias champion → bundle v1",
                "removing alias challenger",
            ]
        );
        assert_eq!(
            queued(&[
                retrained(3, "v3 rejected offline: worse on the held-out rows"),
                retrained(4, "champion"),
                decided(5, 4, false, "v5 rejected by the gate: it cannot be better"),
                decided(4, 5, true, "v5 passed probation against v4"),
            ]),
            [
                "the run of bundle v3",
                "removing alias challenger",
                "the run of bundle v4",
                "alias champion → bundle v4",
                "removing alias challenger",
                "removing alias challenger",
            ]
        );
    }

    #[test]
    fn a_refused_bundle_is_a_run_without_files_or_model_version() {
        let tracker = Tracker::idle();
        let store = BundleStore::new("m", "p");
        track(
            &tracker,
            &store,
            &retrained(6, "v6 refused: its bundle record is too large"),
        );
        let records = tracker.queued_records();
        assert_eq!(records.len(), 1);
        assert!(records[0].artifacts.is_empty() && !records[0].register);
        assert_eq!(records[0].evaluations, [0.31, 0.29, 0.30]);
    }
}
