//! The retrainer's events logged to MLflow ([`Tracker`]): each retrain a run (and a version of
//! the registered model once published), and the `champion` and `challenger` aliases moved as
//! the registry's alias records move them.

use super::Event;
use crate::bundle::BundleStore;
use crate::lifecycle::{GateOutcome, RetrainOutcome};
use crate::tracking::{Tracker, VersionRecord, CHALLENGER, CHAMPION};

/// Queues what `event` says for MLflow; the bundle's files are read from `store`.
pub fn track(tracker: &Tracker, store: &BundleStore, event: &Event) {
    match event {
        Event::Retrained(e) => {
            let mut record =
                VersionRecord::of_bundle(&e.manifest, store, &e.log_losses, e.started_at_ms);
            record.finished_ms = e.finished_at_ms;
            record.tag("made_by", "retrainer");
            record.tag("outcome", e.outcome.as_label());
            record.tag("outcome_detail", e.outcome.to_string());
            if let RetrainOutcome::Refused { .. } = e.outcome {
                // Neither published nor stored: a run of its search, no files, no version.
                record.artifacts.clear();
                record.register = false;
            }
            tracker.log_version(record);
            match e.outcome {
                RetrainOutcome::Champion => tracker.set_alias(CHAMPION, e.version),
                RetrainOutcome::Challenger => tracker.set_alias(CHALLENGER, e.version),
                RetrainOutcome::RejectedOffline { .. } => tracker.remove_alias(CHALLENGER),
                RetrainOutcome::Refused { .. } | RetrainOutcome::Held { .. } => {}
            }
        }
        Event::Gate(g) => match g.decision {
            // The former champion stays as the challenger, on probation.
            Some(GateOutcome::Promoted {
                challenger,
                champion,
            }) => {
                tracker.set_alias(CHAMPION, challenger);
                tracker.set_alias(CHALLENGER, champion);
            }
            Some(GateOutcome::RolledBack { to, .. }) => {
                tracker.set_alias(CHAMPION, to);
                tracker.remove_alias(CHALLENGER);
            }
            Some(
                GateOutcome::Rejected { .. } | GateOutcome::Kept { .. } | GateOutcome::Held { .. },
            ) => tracker.remove_alias(CHALLENGER),
            None => {}
        },
        Event::Command(c) => {
            if let Some(v) = c.champion {
                tracker.set_alias(CHAMPION, v);
                tracker.remove_alias(CHALLENGER);
            }
        }
        Event::Drift(_) | Event::FeatureDrift { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retrained(version: u32, outcome: RetrainOutcome) -> Event {
        Event::retrained_example(version, outcome)
    }

    fn decided(decision: GateOutcome) -> Event {
        let (challenger, champion, probation) = match decision {
            GateOutcome::Promoted {
                challenger,
                champion,
            }
            | GateOutcome::Rejected {
                challenger,
                champion,
                ..
            } => (challenger, champion, false),
            GateOutcome::RolledBack { to, from, .. } => (to, from, true),
            GateOutcome::Kept { champion, former } => (former, champion, true),
            GateOutcome::Held {
                challenger,
                champion,
                rollback,
            } => (challenger, champion, rollback),
        };
        Event::gate_example(challenger, champion, probation, 600, Some(decision))
    }

    fn rejected_offline() -> RetrainOutcome {
        RetrainOutcome::RejectedOffline {
            check: "worse on the held-out rows".into(),
        }
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
                retrained(2, RetrainOutcome::Challenger),
                decided(GateOutcome::Promoted {
                    challenger: 2,
                    champion: 1
                }),
                decided(GateOutcome::RolledBack {
                    to: 1,
                    from: 2,
                    unfair: false
                }),
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
                retrained(3, rejected_offline()),
                retrained(4, RetrainOutcome::Champion),
                decided(GateOutcome::Rejected {
                    challenger: 5,
                    champion: 4,
                    undecided: false,
                    unfair: false
                }),
                decided(GateOutcome::Kept {
                    champion: 5,
                    former: 4
                }),
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
            &retrained(
                6,
                RetrainOutcome::Refused {
                    bytes: 70_000_000,
                    topic: "census.models".into(),
                },
            ),
        );
        let records = tracker.queued_records();
        assert_eq!(records.len(), 1);
        assert!(records[0].artifacts.is_empty() && !records[0].register);
        assert_eq!(records[0].evaluations, [0.31, 0.29, 0.30]);
    }
}
