//! The retrainer's metrics, from the events it reports.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::{register_build_info, ReasonLabel, RoleLabel};
use crate::retrainer::Event;

/// A retrainer's metrics.
#[derive(Debug, Clone)]
pub struct RetrainerMetrics {
    /// Retrains by outcome: `champion`, `challenger`, `rejected_offline`, `refused`.
    pub retrains: Family<ReasonLabel, Counter>,
    /// Retrains by the kind of trigger that started them (`rows`, `time`, `feature_drift`,
    /// `loss_drift`).
    pub triggers: Family<ReasonLabel, Counter>,
    /// One retrain, search to publish.
    pub retrain_seconds: Histogram,
    /// The newest version's cross-validated log loss.
    pub cv_log_loss: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The gate's decisions: `promoted`, `rejected`, `rolled_back`, `kept`.
    pub gate_decisions: Family<ReasonLabel, Counter>,
    /// The running gate's labeled requests (0: no gate running).
    pub gate_labels: Gauge,
    /// The running gate's mean of d = log loss(challenger) − log loss(champion).
    pub gate_mean_difference: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The versions the registry names, by role (as the retrainer last set them).
    pub model_version: Family<RoleLabel, Gauge>,
}

impl Default for RetrainerMetrics {
    fn default() -> Self {
        RetrainerMetrics {
            retrains: Family::default(),
            triggers: Family::default(),
            // 0.25 s to about 17 minutes.
            retrain_seconds: Histogram::new(exponential_buckets(0.25, 2.0, 13)),
            cv_log_loss: Gauge::default(),
            gate_decisions: Family::default(),
            gate_labels: Gauge::default(),
            gate_mean_difference: Gauge::default(),
            model_version: Family::default(),
        }
    }
}

fn label(reason: &str) -> ReasonLabel {
    ReasonLabel {
        reason: reason.to_owned(),
    }
}

impl RetrainerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("census");
        r.register("retrains", "Retrains, by outcome", self.retrains.clone());
        r.register(
            "retrain_triggers",
            "Retrains, by the kind of trigger that started them",
            self.triggers.clone(),
        );
        r.register(
            "retrain_duration_seconds",
            "One retrain, search to publish",
            self.retrain_seconds.clone(),
        );
        r.register(
            "retrain_cv_log_loss",
            "The newest version's cross-validated log loss",
            self.cv_log_loss.clone(),
        );
        r.register(
            "gate_decisions",
            "The gate's decisions, by kind",
            self.gate_decisions.clone(),
        );
        r.register(
            "gate_labels",
            "Labeled requests in the running gate (0: none running)",
            self.gate_labels.clone(),
        );
        r.register(
            "gate_mean_difference",
            "Mean of log loss(challenger) - log loss(champion) in the running gate",
            self.gate_mean_difference.clone(),
        );
        r.register(
            "registry_model_version",
            "Versions the registry names, by role (0: none)",
            self.model_version.clone(),
        );
        register_build_info(r);
    }

    /// Records what `event` says.
    pub fn observe(&self, event: &Event) {
        match event {
            Event::Retrained(e) => {
                let outcome = match e.outcome.as_str() {
                    "champion" | "challenger" => e.outcome.as_str(),
                    o if o.contains("refused") => "refused",
                    _ => "rejected_offline",
                };
                self.retrains.get_or_create(&label(outcome)).inc();
                self.triggers.get_or_create(&label(&e.trigger.kind)).inc();
                let seconds = (e.finished_at_ms - e.started_at_ms).max(0) as f64 / 1000.0;
                self.retrain_seconds.observe(seconds);
                self.cv_log_loss.set(e.cv_log_loss);
                match outcome {
                    "champion" => self.set_version("champion", e.version),
                    "challenger" => self.set_version("challenger", e.version),
                    _ => {}
                }
            }
            Event::Gate(g) => match &g.decision {
                None => {
                    self.gate_labels.set(g.evidence.n as i64);
                    self.gate_mean_difference.set(g.evidence.mean_d);
                    self.set_version("champion", g.champion);
                    self.set_version("challenger", g.challenger);
                }
                Some(words) => {
                    let kind = if words.contains("rolled back") {
                        "rolled_back"
                    } else if words.contains("promoted") {
                        "promoted"
                    } else if words.contains("rejected") {
                        "rejected"
                    } else {
                        "kept"
                    };
                    self.gate_decisions.get_or_create(&label(kind)).inc();
                    self.gate_labels.set(0);
                    self.gate_mean_difference.set(0.0);
                    if matches!(kind, "promoted" | "rolled_back") {
                        self.set_version("champion", g.challenger);
                    }
                    self.set_version("challenger", 0);
                }
            },
            Event::Drift(_) => {}
        }
    }

    fn set_version(&self, role: &str, version: u32) {
        self.model_version
            .get_or_create(&RoleLabel { role: role.into() })
            .set(i64::from(version));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Evidence;
    use crate::retrainer::{GateEvent, RetrainEvent};
    use crate::triggers::Fired;

    fn retrained(version: u32, outcome: &str) -> Event {
        Event::Retrained(RetrainEvent {
            version,
            rows: 1000,
            started_at_ms: 10_000,
            finished_at_ms: 12_500,
            cv_log_loss: 0.29,
            outcome: outcome.into(),
            trigger: Fired {
                kind: "rows".into(),
                figures: String::new(),
            },
        })
    }

    fn gate(decision: Option<&str>, n: u64) -> Event {
        Event::Gate(GateEvent {
            challenger: 2,
            champion: 1,
            probation: false,
            evidence: Evidence {
                n,
                mean_d: -0.05,
                interval: [-0.1, -0.01],
                statistic: 3.2,
                alpha: 0.05,
                delta: 0.01,
            },
            decision: decision.map(str::to_owned),
        })
    }

    fn text(m: &RetrainerMetrics) -> String {
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn events_become_counters_and_gauges() {
        let m = RetrainerMetrics::default();
        m.observe(&retrained(2, "challenger"));
        m.observe(&gate(None, 400));
        let t = text(&m);
        assert!(
            t.contains("census_retrains_total{reason=\"challenger\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("census_retrain_triggers_total{reason=\"rows\"} 1"),
            "{t}"
        );
        assert!(t.contains("census_retrain_duration_seconds_sum 2.5"), "{t}");
        assert!(t.contains("census_gate_labels 400"), "{t}");
        assert!(
            t.contains("census_registry_model_version{role=\"challenger\"} 2"),
            "{t}"
        );

        m.observe(&gate(Some("v2 promoted over v1 by the gate"), 600));
        m.observe(&retrained(
            3,
            "v3 rejected offline: worse on the held-out rows",
        ));
        m.observe(&retrained(4, "v4 refused: its bundle record is too large"));
        let t = text(&m);
        assert!(
            t.contains("census_gate_decisions_total{reason=\"promoted\"} 1"),
            "{t}"
        );
        assert!(t.contains("census_gate_labels 0"), "{t}");
        assert!(
            t.contains("census_registry_model_version{role=\"champion\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("census_registry_model_version{role=\"challenger\"} 0"),
            "{t}"
        );
        assert!(
            t.contains("census_retrains_total{reason=\"rejected_offline\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("census_retrains_total{reason=\"refused\"} 1"),
            "{t}"
        );
    }
}
