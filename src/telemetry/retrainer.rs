//! The retrainer's metrics, from the events it reports.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::{register_build_info, ReasonLabel, RoleLabel};
use crate::lifecycle::{GateOutcome, RetrainOutcome, TriggerKind};

/// A retrainer's metrics.
#[derive(Debug, Clone)]
pub struct RetrainerMetrics {
    /// Retrains by outcome: `champion`, `challenger`, `rejected_offline`, `refused`, `held`.
    pub retrains: Family<ReasonLabel, Counter>,
    /// Retrains by the kind of trigger that started them (`rows`, `time`, `feature_drift`,
    /// `loss_drift`).
    pub triggers: Family<ReasonLabel, Counter>,
    /// One retrain, search to publish.
    pub retrain_seconds: Histogram,
    /// The newest version's cross-validated log loss.
    pub cv_log_loss: Gauge<f64, AtomicU64>,
    /// The gate's decisions: `promoted`, `rejected`, `rejected_unfair`, `rolled_back`,
    /// `rolled_back_unfair`, `kept`, `held`.
    pub gate_decisions: Family<ReasonLabel, Counter>,
    /// The running gate's labeled requests (0: no gate running).
    pub gate_labels: Gauge,
    /// The running gate's mean of d = log loss(challenger) − log loss(champion).
    pub gate_mean_difference: Gauge<f64, AtomicU64>,
    /// The running gate's always-valid interval (`bound` `lower`, `upper`) for how much the
    /// model it checks widens the gap between the sexes of most concern (0 and 0: none running).
    pub gate_fairness_widening: Family<BoundLabel, Gauge<f64, AtomicU64>>,
    /// The versions the registry names, by role (as the retrainer last set them).
    pub model_version: Family<RoleLabel, Gauge>,
    /// Labeled requests not yet read by this retrainer (updated every few seconds).
    pub consumer_lag: Gauge,
    /// Each feature's PSI over the last window of requests, against the champion's training
    /// data.
    pub feature_drift: Family<FeatureLabel, Gauge<f64, AtomicU64>>,
    /// Operators' commands answered, by action and result (`applied`, `refused`).
    pub commands: Family<CommandLabels, Counter>,
    /// 1 while an operator has pinned the champion.
    pub pinned: Gauge,
    /// Retrains that failed (the service went on).
    pub retrains_failed: Counter,
    /// Requests joined to their label (inline or apart).
    pub labels_matched: Counter,
    /// Requests whose label did not come within the window.
    pub labels_expired_requests: Counter,
    /// Labels dead-lettered, by reason (`unmatched_label`, `duplicate_label`, or a decoding
    /// fault such as `not_json`).
    pub labels_dead_letters: Family<ReasonLabel, Counter>,
    /// The join's waiting entries: `request` (waiting for its label), `label` (for its request).
    pub labels_pending: Family<SideLabel, Gauge>,
    /// How far the label join's clock (the input's time) is behind the wall clock.
    pub label_join_clock_lag_seconds: Gauge<f64, AtomicU64>,
    /// Versions retired (a tombstone on the registry, their local files removed).
    pub versions_retired: Counter,
    /// Stream rows in the rows file, and dropped from it by its retention.
    pub rows_stored: Gauge,
    pub rows_dropped: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BoundLabel {
    pub bound: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideLabel {
    pub side: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub action: String,
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabel {
    pub feature: String,
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
            gate_fairness_widening: {
                let family = Family::<BoundLabel, Gauge<f64, AtomicU64>>::default();
                for bound in ["lower", "upper"] {
                    let _ = family.get_or_create(&BoundLabel {
                        bound: bound.into(),
                    });
                }
                family
            },
            model_version: Family::default(),
            consumer_lag: Gauge::default(),
            feature_drift: Family::default(),
            commands: Family::default(),
            pinned: Gauge::default(),
            retrains_failed: Counter::default(),
            labels_matched: Counter::default(),
            labels_expired_requests: Counter::default(),
            labels_dead_letters: {
                let family = Family::<ReasonLabel, Counter>::default();
                for f in crate::join::LabelFault::ALL {
                    let _ = family.get_or_create(&label(f.as_str()));
                }
                family
            },
            labels_pending: {
                let family = Family::<SideLabel, Gauge>::default();
                for side in ["request", "label"] {
                    let _ = family.get_or_create(&SideLabel { side: side.into() });
                }
                family
            },
            label_join_clock_lag_seconds: Gauge::default(),
            versions_retired: Counter::default(),
            rows_stored: Gauge::default(),
            rows_dropped: Counter::default(),
        }
    }
}

fn label(reason: &str) -> ReasonLabel {
    ReasonLabel {
        reason: reason.to_owned(),
    }
}

impl RetrainerMetrics {
    pub fn retired(&self, versions: usize) {
        self.versions_retired.inc_by(versions as u64);
    }

    /// The rows file holds `stored` rows after `dropped` left it by its retention.
    pub fn rows(&self, stored: usize, dropped: usize) {
        self.rows_stored.set(stored as i64);
        self.rows_dropped.inc_by(dropped as u64);
    }

    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("census");
        r.register(
            "registry_versions_retired",
            "Versions retired: a tombstone on the registry, their local files removed",
            self.versions_retired.clone(),
        );
        r.register(
            "retrainer_rows_stored",
            "Stream rows in the retrainer's rows file",
            self.rows_stored.clone(),
        );
        r.register(
            "retrainer_rows_dropped",
            "Stream rows dropped from the rows file by its retention",
            self.rows_dropped.clone(),
        );
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
            "gate_fairness_widening",
            "Always-valid interval for how much the running gate's checked model widens the \
             gap between the sexes of most concern",
            self.gate_fairness_widening.clone(),
        );
        r.register(
            "registry_model_version",
            "Versions the registry names, by role (0: none)",
            self.model_version.clone(),
        );
        r.register(
            "consumer_lag",
            "Requests not yet read by this retrainer",
            self.consumer_lag.clone(),
        );
        r.register(
            "feature_drift_psi",
            "Each feature's PSI over the last window of requests, against the champion's \
             training data",
            self.feature_drift.clone(),
        );
        r.register(
            "registry_commands",
            "Operators' commands answered, by action and result",
            self.commands.clone(),
        );
        r.register(
            "registry_pinned",
            "1 while an operator has pinned the champion",
            self.pinned.clone(),
        );
        r.register(
            "retrains_failed",
            "Retrains that failed (the retrainer went on)",
            self.retrains_failed.clone(),
        );
        r.register(
            "labels_matched",
            "Requests joined to their label (inline or apart)",
            self.labels_matched.clone(),
        );
        r.register(
            "labels_expired_requests",
            "Requests whose label did not come within the label window",
            self.labels_expired_requests.clone(),
        );
        r.register(
            "labels_dead_letters",
            "Labels dead-lettered, by reason",
            self.labels_dead_letters.clone(),
        );
        r.register(
            "labels_pending",
            "The join's waiting entries: requests waiting for their label, labels for their \
             request",
            self.labels_pending.clone(),
        );
        r.register(
            "label_join_clock_lag_seconds",
            "How far the label join's clock (its input's time, held back by the partition read \
             least far) is behind the wall clock",
            self.label_join_clock_lag_seconds.clone(),
        );
        register_build_info(r);
    }

    /// The join after a batch: its counts since start (the counters move by the difference)
    /// and what waits now.
    pub fn joined(&self, counts: crate::join::JoinCounts, pending: (usize, usize)) {
        let up = |c: &Counter, to: u64| {
            let now = c.get();
            if to > now {
                c.inc_by(to - now);
            }
        };
        up(&self.labels_matched, counts.matched);
        up(&self.labels_expired_requests, counts.expired_requests);
        for (side, n) in [("request", pending.0), ("label", pending.1)] {
            self.labels_pending
                .get_or_create(&SideLabel { side: side.into() })
                .set(n as i64);
        }
    }

    /// Dead letters of labels sent, by reason.
    pub fn label_dead_letters<'a>(&self, reasons: impl Iterator<Item = &'a str>) {
        for reason in reasons {
            self.labels_dead_letters.get_or_create(&label(reason)).inc();
        }
    }

    /// A retrain ended with `outcome`, started by a `trigger` of that kind.
    pub fn retrained(
        &self,
        outcome: &RetrainOutcome,
        trigger: TriggerKind,
        seconds: f64,
        cv_log_loss: f64,
    ) {
        self.retrains
            .get_or_create(&label(outcome.as_label()))
            .inc();
        self.triggers
            .get_or_create(&label(trigger.as_label()))
            .inc();
        self.retrain_seconds.observe(seconds);
        self.cv_log_loss.set(cv_log_loss);
    }

    /// The running gate's evidence so far.
    pub fn gate_progress(&self, labels: u64, mean_difference: f64, widening: [f64; 2]) {
        self.gate_labels.set(labels as i64);
        self.gate_mean_difference.set(mean_difference);
        for (bound, value) in ["lower", "upper"].into_iter().zip(widening) {
            self.gate_fairness_widening
                .get_or_create(&BoundLabel {
                    bound: bound.into(),
                })
                .set(value);
        }
    }

    /// The gate decided: none runs now.
    pub fn gate_decided(&self, decision: &GateOutcome) {
        self.gate_decisions
            .get_or_create(&label(decision.as_label()))
            .inc();
        self.gate_progress(0, 0.0, [0.0, 0.0]);
    }

    /// A feature's drift over the window just ended.
    pub fn feature_drift(&self, feature: &str, psi: f64) {
        self.feature_drift
            .get_or_create(&FeatureLabel {
                feature: feature.to_owned(),
            })
            .set(psi);
    }

    /// The version the registry names in `role` (0: none).
    pub fn set_version(&self, role: &str, version: u32) {
        self.model_version
            .get_or_create(&RoleLabel { role: role.into() })
            .set(i64::from(version));
    }
}
