//! The lifecycle's decisions as values: what became of a retrain's new version, and what the
//! gate decided. Each has its words (`Display`, for logs and the registry's reasons) and one
//! label (`as_label`, for Prometheus and MLflow), so rewording a message never changes a metric.

use std::fmt;

/// What became of a retrain's new version.
#[derive(Debug, Clone, PartialEq)]
pub enum RetrainOutcome {
    /// Published as the champion at once (promotion `always`).
    Champion,
    /// Passed the offline check: published as the challenger, for the gate to decide on.
    Challenger,
    /// Failed the offline check (`check` says on what figures): recorded, never shadowed.
    RejectedOffline { check: String },
    /// Its bundle record (`bytes`) is larger than the registry's topic accepts: neither
    /// published nor kept.
    Refused { bytes: usize, topic: String },
    /// Would have been the champion at once (promotion `always`), but an operator pinned
    /// `pinned`: published and kept, playing no part.
    Held { pinned: u32 },
}

impl RetrainOutcome {
    /// `champion`, `challenger`, `rejected_offline` or `refused`.
    pub fn as_label(&self) -> &'static str {
        match self {
            RetrainOutcome::Champion => "champion",
            RetrainOutcome::Challenger => "challenger",
            RetrainOutcome::RejectedOffline { .. } => "rejected_offline",
            RetrainOutcome::Refused { .. } => "refused",
            RetrainOutcome::Held { .. } => "held",
        }
    }

    /// The version goes on to serve or to be shadowed.
    pub fn published(&self) -> bool {
        matches!(self, RetrainOutcome::Champion | RetrainOutcome::Challenger)
    }
}

impl fmt::Display for RetrainOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetrainOutcome::Champion => f.write_str("champion"),
            RetrainOutcome::Challenger => f.write_str("challenger"),
            RetrainOutcome::RejectedOffline { check } => write!(f, "rejected offline: {check}"),
            RetrainOutcome::Refused { bytes, topic } => write!(
                f,
                "refused: its bundle record ({bytes} bytes) is larger than {topic} accepts \
                 (max.message.bytes)"
            ),
            RetrainOutcome::Held { pinned } => {
                write!(f, "held: an operator pinned v{pinned} as the champion")
            }
        }
    }
}

/// What the gate decided about a challenger, or about the former champion on probation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOutcome {
    /// The challenger proved better by the margin and became the champion.
    Promoted { challenger: u32, champion: u32 },
    /// The challenger cannot be better by the margin, or (`undecided`) was not shown better
    /// within the labels allowed, or (`unfair`) it widens a gap between groups by more than the
    /// fairness margin, however good its log loss.
    Rejected {
        challenger: u32,
        champion: u32,
        undecided: bool,
        unfair: bool,
    },
    /// The former champion, on probation, proved better than the one that replaced it, or
    /// (`unfair`) the one that replaced it widens a gap between groups by more than the fairness
    /// margin; the former champion serves again.
    RolledBack { to: u32, from: u32, unfair: bool },
    /// The champion passed its probation against the former champion.
    Kept { champion: u32, former: u32 },
    /// The test would have made `challenger` the champion (a promotion, or with `rollback` a
    /// rollback to the former champion), but an operator pinned `champion`: nothing changed.
    Held {
        challenger: u32,
        champion: u32,
        rollback: bool,
    },
}

impl GateOutcome {
    /// `promoted`, `rejected`, `rejected_unfair`, `rolled_back`, `rolled_back_unfair`, `kept`
    /// or `held`.
    pub fn as_label(&self) -> &'static str {
        match self {
            GateOutcome::Promoted { .. } => "promoted",
            GateOutcome::Rejected { unfair: true, .. } => "rejected_unfair",
            GateOutcome::Rejected { .. } => "rejected",
            GateOutcome::RolledBack { unfair: true, .. } => "rolled_back_unfair",
            GateOutcome::RolledBack { .. } => "rolled_back",
            GateOutcome::Kept { .. } => "kept",
            GateOutcome::Held { .. } => "held",
        }
    }

    /// The version that serves after this decision.
    pub fn champion_after(&self) -> u32 {
        match *self {
            GateOutcome::Promoted { challenger, .. } => challenger,
            GateOutcome::Rejected { champion, .. } => champion,
            GateOutcome::RolledBack { to, .. } => to,
            GateOutcome::Kept { champion, .. } => champion,
            GateOutcome::Held { champion, .. } => champion,
        }
    }

    /// The champion changes.
    pub fn changes_champion(&self) -> bool {
        matches!(
            self,
            GateOutcome::Promoted { .. } | GateOutcome::RolledBack { .. }
        )
    }
}

impl fmt::Display for GateOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GateOutcome::Promoted {
                challenger,
                champion,
            } => write!(f, "v{challenger} promoted over v{champion} by the gate"),
            GateOutcome::Rejected {
                challenger,
                champion,
                unfair: true,
                ..
            } => write!(
                f,
                "v{challenger} rejected by the gate: it widens a gap between groups beyond                  v{champion}'s by more than the fairness margin"
            ),
            GateOutcome::Rejected {
                challenger,
                champion,
                undecided: true,
                ..
            } => write!(
                f,
                "v{challenger} rejected by the gate: not better than v{champion} within the \
                 labels allowed"
            ),
            GateOutcome::Rejected {
                challenger,
                champion,
                undecided: false,
                ..
            } => write!(
                f,
                "v{challenger} rejected by the gate: it cannot be better than v{champion} by the \
                 margin"
            ),
            GateOutcome::RolledBack {
                to,
                from,
                unfair: false,
            } => write!(
                f,
                "rolled back to v{to}: it proved better than v{from} on probation"
            ),
            GateOutcome::RolledBack {
                to,
                from,
                unfair: true,
            } => write!(
                f,
                "rolled back to v{to}: v{from} widens a gap between groups beyond it by more                  than the fairness margin, on probation"
            ),
            GateOutcome::Kept { champion, former } => {
                write!(f, "v{champion} passed probation against v{former}")
            }
            GateOutcome::Held {
                challenger,
                champion,
                rollback,
            } => {
                write!(
                f,
                "held: the gate would have {} v{challenger} over v{champion}, which an operator \
                 pinned",
                if rollback { "rolled back to" } else { "promoted" }
            )
            }
        }
    }
}

/// A decision the retrainer took about a version: one refused before any gate (offline, or too
/// large), or the gate's.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    /// A new version that was neither promoted nor shadowed.
    NotShadowed {
        version: u32,
        outcome: RetrainOutcome,
    },
    Gate(GateOutcome),
}

impl fmt::Display for Decided {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decided::NotShadowed { version, outcome } => write!(f, "v{version} {outcome}"),
            Decided::Gate(g) => g.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_listed_ones_and_words_name_the_versions() {
        let retrains = [
            RetrainOutcome::Champion,
            RetrainOutcome::Challenger,
            RetrainOutcome::RejectedOffline {
                check: "log loss 0.31 > 0.29".into(),
            },
            RetrainOutcome::Refused {
                bytes: 70_000_000,
                topic: "census.models".into(),
            },
        ];
        let labels: Vec<_> = retrains.iter().map(RetrainOutcome::as_label).collect();
        assert_eq!(
            labels,
            ["champion", "challenger", "rejected_offline", "refused"]
        );
        assert_eq!(
            retrains.iter().filter(|o| o.published()).count(),
            2,
            "only champion and challenger are published"
        );
        let gates = [
            GateOutcome::Promoted {
                challenger: 3,
                champion: 2,
            },
            GateOutcome::Rejected {
                challenger: 3,
                champion: 2,
                undecided: false,
                unfair: false,
            },
            GateOutcome::Rejected {
                challenger: 3,
                champion: 2,
                undecided: false,
                unfair: true,
            },
            GateOutcome::RolledBack {
                to: 2,
                from: 3,
                unfair: false,
            },
            GateOutcome::RolledBack {
                to: 2,
                from: 3,
                unfair: true,
            },
            GateOutcome::Kept {
                champion: 3,
                former: 2,
            },
        ];
        let labels: Vec<_> = gates.iter().map(GateOutcome::as_label).collect();
        assert_eq!(
            labels,
            [
                "promoted",
                "rejected",
                "rejected_unfair",
                "rolled_back",
                "rolled_back_unfair",
                "kept"
            ]
        );
        let champions: Vec<_> = gates.iter().map(GateOutcome::champion_after).collect();
        assert_eq!(champions, [3, 2, 2, 2, 2, 3]);
        assert!(gates[2].to_string().contains("gap between groups"));
        assert!(gates[4].to_string().contains("gap between groups"));
        for g in gates {
            let words = g.to_string();
            assert!(words.contains("v2") && words.contains("v3"), "{words}");
        }
        let d = Decided::NotShadowed {
            version: 4,
            outcome: retrains[2].clone(),
        };
        assert_eq!(d.to_string(), "v4 rejected offline: log loss 0.31 > 0.29");
    }
}
