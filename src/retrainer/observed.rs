//! The retrainer's events as Prometheus metrics ([`RetrainerMetrics`]).

use super::Event;
use crate::telemetry::RetrainerMetrics;

/// Records what `event` says in `metrics`.
pub fn observe(metrics: &RetrainerMetrics, event: &Event) {
    match event {
        Event::Retrained(e) => {
            let outcome = e.outcome_kind();
            let seconds = (e.finished_at_ms - e.started_at_ms).max(0) as f64 / 1000.0;
            metrics.retrained(outcome, &e.trigger.kind, seconds, e.cv_log_loss);
            if matches!(outcome, "champion" | "challenger") {
                metrics.set_version(outcome, e.version);
            }
        }
        Event::Gate(g) => match g.decision_kind() {
            None => {
                metrics.gate_progress(g.evidence.n, g.evidence.mean_d);
                metrics.set_version("champion", g.champion);
                metrics.set_version("challenger", g.challenger);
            }
            Some(decision) => {
                metrics.gate_decided(decision);
                if matches!(decision, "promoted" | "rolled_back") {
                    metrics.set_version("champion", g.challenger);
                }
                metrics.set_version("challenger", 0);
            }
        },
        Event::FeatureDrift { psi, .. } => {
            for (feature, value) in psi {
                metrics.feature_drift(feature, *value);
            }
        }
        Event::Drift(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::RetrainerMetrics;
    use prometheus_client::registry::Registry;

    fn retrained(version: u32, outcome: &str) -> Event {
        Event::retrained_example(version, outcome)
    }

    fn gate(decision: Option<&str>, n: u64) -> Event {
        Event::gate_example(2, 1, false, n, decision)
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
        observe(&m, &retrained(2, "challenger"));
        observe(&m, &gate(None, 400));
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

        observe(&m, &gate(Some("v2 promoted over v1 by the gate"), 600));
        observe(
            &m,
            &retrained(3, "v3 rejected offline: worse on the held-out rows"),
        );
        observe(
            &m,
            &retrained(4, "v4 refused: its bundle record is too large"),
        );
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
