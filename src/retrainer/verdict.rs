//! The gate's decision table, as a pure function: from what the sequential test says and
//! whether the challenger is the former champion on probation, to the decision, the alias
//! records that carry it out, and what the retrainer serves and gates next.

use std::collections::BTreeMap;

use crate::lifecycle::gate::Decision;
use crate::lifecycle::{Evidence, GateOutcome};
use crate::registry::{Alias, AliasRecord};

/// What a decision of the gate changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: GateOutcome,
    /// The alias records to publish, in order, each with the evidence.
    pub records: Vec<AliasRecord>,
    /// The former champion goes on probation against the new one, counting labeled rows from
    /// these offsets (after a promotion only).
    pub probation_from: Option<BTreeMap<String, i64>>,
}

/// The gate's `decision` on `challenger` against `champion` (`probation`: the challenger is the
/// former champion), with `offsets_now` the rows file's offsets (a probation counts from
/// there). `None` while the test goes on. With the champion `pinned` by an operator, a decision
/// that would change the champion is held: the challenger is cleared and nothing else changes.
///
/// | probation | test says | outcome | champion after | challenger after |
/// |---|---|---|---|---|
/// | no | promote | promoted | challenger | former champion, on probation |
/// | no | reject | rejected | champion | none |
/// | yes | promote | rolled back | former champion | none |
/// | yes | reject | kept | champion | none |
/// | no | unfair (the challenger widens a gap) | rejected | champion | none |
/// | yes | unfair (the champion widens a gap) | rolled back | former champion | none |
pub fn verdict(
    decision: &Decision,
    probation: bool,
    challenger: u32,
    champion: u32,
    evidence: &Evidence,
    offsets_now: &BTreeMap<String, i64>,
    pinned: bool,
) -> Option<Verdict> {
    let (c, p) = (challenger, champion);
    let outcome = match (probation, decision) {
        (_, Decision::Promote) | (true, Decision::Unfair) if pinned => GateOutcome::Held {
            challenger: c,
            champion: p,
            rollback: probation,
        },
        (_, Decision::Continue) => return None,
        (false, Decision::Promote) => GateOutcome::Promoted {
            challenger: c,
            champion: p,
        },
        (false, Decision::Reject { undecided }) => GateOutcome::Rejected {
            challenger: c,
            champion: p,
            undecided: *undecided,
            unfair: false,
        },
        (false, Decision::Unfair) => GateOutcome::Rejected {
            challenger: c,
            champion: p,
            undecided: false,
            unfair: true,
        },
        (true, Decision::Promote) => GateOutcome::RolledBack {
            to: c,
            from: p,
            unfair: false,
        },
        (true, Decision::Unfair) => GateOutcome::RolledBack {
            to: c,
            from: p,
            unfair: true,
        },
        (true, Decision::Reject { .. }) => GateOutcome::Kept {
            champion: p,
            former: c,
        },
    };
    let words = match (decision, outcome) {
        // Undecided on no labeled row at all: the rows that came were all ones a model was
        // trained on (a stream repeating its input). That is no evidence, not a worse model.
        (Decision::Reject { undecided: true }, GateOutcome::Rejected { .. }) if evidence.n == 0 => {
            format!(
                "v{c} rejected by the gate: no evidence within the labels allowed (every labeled \
                 row after its cut-off was one v{c} or v{p} was trained on)"
            )
        }
        (Decision::Reject { undecided: true }, GateOutcome::Kept { .. }) if evidence.n == 0 => {
            format!(
                "v{p} stays the champion: no evidence on probation within the labels allowed \
                 (every labeled row was one v{c} or v{p} was trained on)"
            )
        }
        _ => outcome.to_string(),
    };
    let record = |alias, version, previous, reason: &str| AliasRecord {
        evidence: Some(evidence.clone()),
        ..AliasRecord::new(alias, version, previous, reason)
    };
    let no_challenger = record(Alias::Challenger, None, Some(c), &words);
    let (records, probation_from) = match outcome {
        GateOutcome::Promoted { .. } => {
            let mut on_probation = record(
                Alias::Challenger,
                Some(p),
                Some(c),
                &format!("probation after promoting v{c}"),
            );
            on_probation.probation = true;
            on_probation.from_offsets = offsets_now.clone();
            (
                vec![
                    record(Alias::Champion, Some(c), Some(p), &words),
                    on_probation,
                ],
                Some(offsets_now.clone()),
            )
        }
        GateOutcome::RolledBack { .. } => (
            vec![
                record(Alias::Champion, Some(c), Some(p), &words),
                no_challenger,
            ],
            None,
        ),
        GateOutcome::Rejected { .. } | GateOutcome::Kept { .. } | GateOutcome::Held { .. } => {
            (vec![no_challenger], None)
        }
    };
    Some(Verdict {
        outcome,
        records,
        probation_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence() -> Evidence {
        Evidence {
            n: 600,
            mean_d: -0.03,
            interval: [-0.05, -0.015],
            statistic: 4.0,
            alpha: 0.05,
            delta: 0.01,
            fairness: None,
        }
    }

    fn offsets() -> BTreeMap<String, i64> {
        BTreeMap::from([("census.requests/0".to_owned(), 1234)])
    }

    /// (alias, version, previous, probation) of each record.
    fn shape(v: &Verdict) -> Vec<(Alias, Option<u32>, Option<u32>, bool)> {
        v.records
            .iter()
            .map(|r| (r.alias, r.version, r.previous, r.probation))
            .collect()
    }

    fn decide(decision: Decision, probation: bool) -> Option<Verdict> {
        verdict(&decision, probation, 3, 2, &evidence(), &offsets(), false)
    }

    #[test]
    fn while_the_test_goes_on_nothing_is_decided() {
        assert_eq!(decide(Decision::Continue, false), None);
        assert_eq!(decide(Decision::Continue, true), None);
    }

    #[test]
    fn a_promotion_names_the_challenger_champion_and_puts_the_former_one_on_probation() {
        let v = decide(Decision::Promote, false).unwrap();
        assert_eq!(
            v.outcome,
            GateOutcome::Promoted {
                challenger: 3,
                champion: 2
            }
        );
        assert_eq!(
            shape(&v),
            [
                (Alias::Champion, Some(3), Some(2), false),
                (Alias::Challenger, Some(2), Some(3), true)
            ]
        );
        assert_eq!(v.records[1].from_offsets, offsets());
        assert_eq!(v.probation_from, Some(offsets()));
        assert!(v.records.iter().all(|r| r.evidence == Some(evidence())));
        assert_eq!(v.records[0].reason, v.outcome.to_string());
    }

    #[test]
    fn a_rejection_clears_the_challenger_and_says_whether_it_ran_out_of_labels() {
        for undecided in [false, true] {
            let v = decide(Decision::Reject { undecided }, false).unwrap();
            assert_eq!(
                v.outcome,
                GateOutcome::Rejected {
                    challenger: 3,
                    champion: 2,
                    undecided,
                    unfair: false
                }
            );
            assert_eq!(shape(&v), [(Alias::Challenger, None, Some(3), false)]);
            assert_eq!(v.probation_from, None);
        }
    }

    #[test]
    fn an_unfair_challenger_is_rejected_and_an_unfair_champion_on_probation_rolled_back() {
        let v = decide(Decision::Unfair, false).unwrap();
        assert_eq!(
            v.outcome,
            GateOutcome::Rejected {
                challenger: 3,
                champion: 2,
                undecided: false,
                unfair: true
            }
        );
        assert_eq!(shape(&v), [(Alias::Challenger, None, Some(3), false)]);
        assert!(v.records[0].reason.contains("gap between groups"));
        let v = decide(Decision::Unfair, true).unwrap();
        assert_eq!(
            v.outcome,
            GateOutcome::RolledBack {
                to: 3,
                from: 2,
                unfair: true
            }
        );
        assert_eq!(
            shape(&v),
            [
                (Alias::Champion, Some(3), Some(2), false),
                (Alias::Challenger, None, Some(3), false)
            ]
        );
        // Pinned, the rollback is held.
        let held = verdict(&Decision::Unfair, true, 3, 2, &evidence(), &offsets(), true);
        assert!(matches!(
            held.unwrap().outcome,
            GateOutcome::Held { rollback: true, .. }
        ));
    }

    #[test]
    fn a_gate_that_ends_on_no_labels_says_there_was_no_evidence() {
        let none = Evidence { n: 0, ..evidence() };
        let decided = |probation| {
            verdict(
                &Decision::Reject { undecided: true },
                probation,
                3,
                2,
                &none,
                &offsets(),
                false,
            )
            .unwrap()
        };
        let rejected = decided(false);
        assert!(
            rejected.records[0].reason.contains("no evidence")
                && !rejected.records[0].reason.contains("not better"),
            "{:?}",
            rejected.records[0].reason
        );
        assert!(decided(true).records[0].reason.contains("no evidence"));
        // With labels, the usual words.
        let v = decide(Decision::Reject { undecided: true }, false).unwrap();
        assert_eq!(v.records[0].reason, v.outcome.to_string());
    }

    #[test]
    fn on_probation_a_better_former_champion_is_rolled_back_to() {
        let v = decide(Decision::Promote, true).unwrap();
        assert_eq!(
            v.outcome,
            GateOutcome::RolledBack {
                to: 3,
                from: 2,
                unfair: false
            }
        );
        assert_eq!(
            shape(&v),
            [
                (Alias::Champion, Some(3), Some(2), false),
                (Alias::Challenger, None, Some(3), false)
            ]
        );
        assert_eq!(v.probation_from, None, "no probation after a rollback");
    }

    #[test]
    fn on_probation_a_former_champion_that_is_not_better_leaves_the_champion_in_place() {
        let v = decide(Decision::Reject { undecided: false }, true).unwrap();
        assert_eq!(
            v.outcome,
            GateOutcome::Kept {
                champion: 2,
                former: 3
            }
        );
        assert_eq!(shape(&v), [(Alias::Challenger, None, Some(3), false)]);
        assert!(!v.outcome.changes_champion());
    }

    #[test]
    fn with_the_champion_pinned_a_promotion_or_rollback_is_held_and_only_clears_the_challenger() {
        for probation in [false, true] {
            let v = verdict(
                &Decision::Promote,
                probation,
                3,
                2,
                &evidence(),
                &offsets(),
                true,
            )
            .unwrap();
            assert_eq!(
                v.outcome,
                GateOutcome::Held {
                    challenger: 3,
                    champion: 2,
                    rollback: probation
                }
            );
            assert_eq!(shape(&v), [(Alias::Challenger, None, Some(3), false)]);
            assert_eq!(v.probation_from, None);
            assert!(!v.outcome.changes_champion());
        }
        // A rejection is a rejection, pinned or not.
        let v = verdict(
            &Decision::Reject { undecided: false },
            false,
            3,
            2,
            &evidence(),
            &offsets(),
            true,
        )
        .unwrap();
        assert_eq!(v.outcome.as_label(), "rejected");
    }
}
