//! What the retrainer tells its caller as it happens (retrains, the gate's progress and
//! decisions, drift), and what it did when it stops. Outcomes and decisions are values of the
//! lifecycle's enums: the logs, the metrics and MLflow each read them, none parses words.

use std::sync::Arc;

use crate::bundle::Manifest;
use crate::lifecycle::{Decided, Evidence, Fired, GateOutcome, RetrainOutcome};

/// What a retrainer did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetrainerStats {
    /// Labeled rows in the log when it stopped.
    pub rows: usize,
    /// Records skipped: unlabeled or invalid (the predictor dead-letters the invalid ones).
    pub skipped: u64,
    /// Versions it made.
    pub versions: Vec<u32>,
    /// Its decisions: versions refused before any gate, and the gate's.
    pub decisions: Vec<Decided>,
    /// Retrains that failed (logged; the service went on).
    pub failed_retrains: u64,
}

/// One retrain, as seen by the logs and the demo.
#[derive(Debug, Clone)]
pub struct RetrainEvent {
    pub version: u32,
    pub rows: usize,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub cv_log_loss: f64,
    pub outcome: RetrainOutcome,
    /// What started it.
    pub trigger: Fired,
    /// The new version's manifest.
    pub manifest: Arc<Manifest>,
    /// The CV log loss of each evaluation of its search, in the order they finished.
    pub log_losses: Vec<f64>,
}

/// The gate's progress or decision.
#[derive(Debug, Clone)]
pub struct GateEvent {
    pub challenger: u32,
    pub champion: u32,
    /// The challenger is the former champion, on probation.
    pub probation: bool,
    pub evidence: Evidence,
    /// Labeled rows after the cut-off left out of the evidence so far: either model was
    /// trained on their like (features and label), as a repeated input brings them.
    pub left_out: u64,
    /// The decision, when one was made.
    pub decision: Option<GateOutcome>,
}

impl std::fmt::Display for GateEvent {
    /// `gate: v3 vs v2: n 400, mean d -0.0123, 95% interval [...], margin 0.01: running`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gate: v{} {} v{}: {}, margin {}: ",
            self.challenger,
            if self.probation {
                "(on probation) vs"
            } else {
                "vs"
            },
            self.champion,
            self.evidence,
            self.evidence.delta
        )?;
        if self.left_out > 0 {
            write!(
                f,
                "{} rows left out (a model was trained on their like), ",
                self.left_out
            )?;
        }
        match &self.decision {
            Some(d) => d.fmt(f),
            None => f.write_str("running"),
        }
    }
}

/// An operator's command, answered.
#[derive(Debug, Clone)]
pub struct CommandEvent {
    /// The command with its answer.
    pub command: crate::registry::CommandRecord,
    /// The new champion, when the command changed it.
    pub champion: Option<u32>,
    /// The pinned version after the command, if any.
    pub pinned: Option<u32>,
}

/// What the retrainer tells its caller as it happens.
#[derive(Debug, Clone)]
pub enum Event {
    Retrained(RetrainEvent),
    Gate(GateEvent),
    Command(CommandEvent),
    /// A drift trigger fired (its retrain starts when no retrain or gate runs).
    Drift(Fired),
    /// Each feature's PSI over the window of requests just ended, against the champion's
    /// training data (with the feature-drift trigger on).
    FeatureDrift {
        psi: Vec<(String, f64)>,
        rows: u64,
    },
}

#[cfg(test)]
impl Event {
    /// A retrain of version `version` with `outcome` and made-up figures, for unit tests.
    pub(crate) fn retrained_example(version: u32, outcome: RetrainOutcome) -> Self {
        Event::Retrained(RetrainEvent {
            version,
            rows: 1000,
            started_at_ms: 10_000,
            finished_at_ms: 12_500,
            cv_log_loss: 0.29,
            outcome,
            trigger: Fired::new(crate::lifecycle::TriggerKind::Rows, "1000 new labeled rows"),
            manifest: Arc::new(crate::bundle::Manifest::example(version)),
            log_losses: vec![0.31, 0.29, 0.30],
        })
    }

    /// The gate's progress (`decision` `None`) or decision on `n` labels, for unit tests.
    pub(crate) fn gate_example(
        challenger: u32,
        champion: u32,
        probation: bool,
        n: u64,
        decision: Option<GateOutcome>,
    ) -> Self {
        Event::Gate(GateEvent {
            challenger,
            champion,
            probation,
            evidence: Evidence {
                n,
                mean_d: -0.05,
                interval: [-0.1, -0.01],
                statistic: 3.2,
                alpha: 0.05,
                delta: 0.01,
                fairness: None,
            },
            left_out: 0,
            decision,
        })
    }
}
