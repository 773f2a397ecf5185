//! The retrainer's events as Prometheus metrics ([`RetrainerMetrics`]).

use super::Event;
use crate::lifecycle::RetrainOutcome;
use crate::registry::Alias;

const CHAMPION: &str = Alias::Champion.as_str();
const CHALLENGER: &str = Alias::Challenger.as_str();
use crate::telemetry::RetrainerMetrics;

/// Records what `event` says in `metrics`.
pub fn observe(metrics: &RetrainerMetrics, event: &Event) {
    match event {
        Event::Retrained(e) => {
            let seconds = (e.finished_at_ms - e.started_at_ms).max(0) as f64 / 1000.0;
            metrics.retrained(&e.outcome, e.trigger.kind, seconds, e.cv_log_loss);
            match e.outcome {
                RetrainOutcome::Champion => metrics.set_version(CHAMPION, e.version),
                RetrainOutcome::Challenger => metrics.set_version(CHALLENGER, e.version),
                _ => {}
            }
        }
        Event::Gate(g) => match &g.decision {
            None => {
                let widening = g
                    .evidence
                    .fairness
                    .as_ref()
                    .map_or([0.0; 2], |f| f.interval);
                metrics.gate_progress(g.evidence.n, g.evidence.mean_d, widening);
                metrics.set_version(CHAMPION, g.champion);
                metrics.set_version(CHALLENGER, g.challenger);
            }
            Some(decision) => {
                metrics.gate_decided(decision);
                metrics.set_version(CHAMPION, decision.champion_after());
                metrics.set_version(CHALLENGER, 0);
            }
        },
        Event::FeatureDrift { psi, .. } => {
            for (feature, value) in psi {
                metrics.feature_drift(feature, *value);
            }
        }
        Event::Command(c) => {
            let answered = c.command.answer.as_ref();
            metrics
                .commands
                .get_or_create(&crate::telemetry::CommandLabels {
                    action: c.command.action.as_label().to_owned(),
                    result: match answered.is_some_and(|a| a.applied) {
                        true => "applied",
                        false => "refused",
                    }
                    .to_owned(),
                })
                .inc();
            if let Some(v) = c.champion {
                metrics.set_version(CHAMPION, v);
                metrics.set_version(CHALLENGER, 0);
            }
            metrics.pinned.set(i64::from(c.pinned.is_some()));
        }
        Event::Drift(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::RetrainerMetrics;
    use prometheus_client::registry::Registry;

    use crate::lifecycle::GateOutcome;

    fn retrained(version: u32, outcome: RetrainOutcome) -> Event {
        Event::retrained_example(version, outcome)
    }

    fn gate(decision: Option<GateOutcome>, n: u64) -> Event {
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
        observe(&m, &retrained(2, RetrainOutcome::Challenger));
        let mut progress = gate(None, 400);
        if let Event::Gate(g) = &mut progress {
            g.evidence.fairness = Some(Box::new(crate::lifecycle::fairness::GapEvidence::example(
                [0.125, 0.25],
            )));
        }
        observe(&m, &progress);
        let t = text(&m);
        assert!(
            t.contains("census_gate_fairness_widening{bound=\"lower\"} 0.125"),
            "{t}"
        );
        assert!(
            t.contains("census_gate_fairness_widening{bound=\"upper\"} 0.25"),
            "{t}"
        );
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

        observe(
            &m,
            &gate(
                Some(GateOutcome::Promoted {
                    challenger: 2,
                    champion: 1,
                }),
                600,
            ),
        );
        observe(
            &m,
            &retrained(
                3,
                RetrainOutcome::RejectedOffline {
                    check: "worse on the held-out rows".into(),
                },
            ),
        );
        observe(
            &m,
            &retrained(
                4,
                RetrainOutcome::Refused {
                    bytes: 70_000_000,
                    topic: "census.models".into(),
                },
            ),
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
