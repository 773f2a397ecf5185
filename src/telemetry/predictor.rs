//! The predictor's metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::{register_build_info, ReasonLabel, RegistryMetrics, RoleLabel, VersionLabel};

/// A predictor's metrics. Counters move when a batch's outputs are committed, so that they
/// equal what a reader of the topics finds.
#[derive(Debug, Clone)]
pub struct PredictorMetrics {
    /// Predictions committed, by the champion version that made them.
    pub predictions: Family<VersionLabel, Counter>,
    /// Dead letters committed, by `dlq.reason`.
    pub dead_letters: Family<ReasonLabel, Counter>,
    /// Its reading of `census.models`: records ignored, bundles refused, staleness.
    pub registry: RegistryMetrics,
    /// Transactions aborted (exactly-once mode).
    pub transactions_aborted: Counter,
    /// One batch: scoring, delivery and commit.
    pub batch_seconds: Histogram,
    /// From a request's `sent_at_ms` to its prediction's commit.
    pub latency_seconds: Histogram,
    /// The versions in use: `role` champion or challenger (0: none).
    pub model_version: Family<RoleLabel, Gauge>,
    /// Labeled requests scored, by version and role (the challenger's in shadow).
    pub labeled: Family<ScoringLabels, Counter>,
    /// Of those, the ones the version got right (probability ≥ 0.5 for `>50K`).
    pub correct: Family<ScoringLabels, Counter>,
    /// Their summed log loss: with `labeled`, the live log loss.
    pub log_loss: Family<ScoringLabels, Counter<f64, AtomicU64>>,
    /// Requests not yet read by this instance, over its partitions (updated every few
    /// seconds).
    pub consumer_lag: Gauge,
    /// Predictions committed with their reasons (`--explain`).
    pub explained: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScoringLabels {
    pub model_version: u32,
    pub role: String,
}

impl Default for PredictorMetrics {
    /// Every dead-letter reason starts at 0, so that a rate over it exists before the first.
    fn default() -> Self {
        let dead_letters = Family::<ReasonLabel, Counter>::default();
        for f in crate::stream::decode::Fault::ALL {
            let _ = dead_letters.get_or_create(&ReasonLabel {
                reason: f.as_str().into(),
            });
        }
        PredictorMetrics {
            predictions: Family::default(),
            dead_letters,
            registry: RegistryMetrics::default(),
            transactions_aborted: Counter::default(),
            // 0.5 ms to about 16 s.
            batch_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            latency_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            model_version: Family::default(),
            labeled: Family::default(),
            correct: Family::default(),
            log_loss: Family::default(),
            consumer_lag: Gauge::default(),
            explained: Counter::default(),
        }
    }
}

impl PredictorMetrics {
    /// Registers every family under `census_`, with a build-info gauge.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("census");
        r.register(
            "predictions",
            "Predictions committed, by model version",
            self.predictions.clone(),
        );
        r.register(
            "dead_letters",
            "Dead letters committed, by reason",
            self.dead_letters.clone(),
        );
        self.registry.register(r);
        r.register(
            "transactions_aborted",
            "Transactions aborted (exactly-once mode)",
            self.transactions_aborted.clone(),
        );
        r.register(
            "predictor_batch_duration_seconds",
            "One batch: scoring, delivery and commit",
            self.batch_seconds.clone(),
        );
        r.register(
            "prediction_latency_seconds",
            "From a request's sent_at_ms to its prediction's commit",
            self.latency_seconds.clone(),
        );
        r.register(
            "model_version",
            "Model version in use, by role (champion, challenger; 0: none)",
            self.model_version.clone(),
        );
        r.register(
            "labeled_predictions",
            "Labeled requests scored, by version and role (challenger: in shadow)",
            self.labeled.clone(),
        );
        r.register(
            "correct_predictions",
            "Labeled requests the version got right, by version and role",
            self.correct.clone(),
        );
        r.register(
            "log_loss_sum",
            "Summed log loss over labeled requests, by version and role",
            self.log_loss.clone(),
        );
        r.register(
            "consumer_lag",
            "Requests not yet read by this instance, over its partitions",
            self.consumer_lag.clone(),
        );
        r.register(
            "explained_predictions",
            "Predictions committed with their reasons (--explain)",
            self.explained.clone(),
        );
        register_build_info(r);
    }

    /// Counts a labeled request `version` scored `probability` in `role`.
    pub fn labeled(&self, (version, probability): (u32, f64), role: &str, truth: bool) {
        let labels = ScoringLabels {
            model_version: version,
            role: role.into(),
        };
        self.labeled.get_or_create(&labels).inc();
        if truth == (probability >= 0.5) {
            self.correct.get_or_create(&labels).inc();
        }
        let loss = crate::train::evaluate::row_log_loss(truth, probability);
        self.log_loss.get_or_create(&labels).inc_by(loss);
    }

    /// Drops the series of `version` (by version, in either role): a version out of use for
    /// long keeps no series, so that months of retrains do not grow the label sets.
    pub fn forget_version(&self, version: u32) {
        self.predictions.remove(&VersionLabel {
            model_version: version,
        });
        for role in ["champion", "challenger"] {
            let labels = ScoringLabels {
                model_version: version,
                role: role.into(),
            };
            self.labeled.remove(&labels);
            self.correct.remove(&labels);
            self.log_loss.remove(&labels);
        }
    }

    pub fn set_version(&self, role: &str, version: Option<u32>) {
        self.model_version
            .get_or_create(&RoleLabel { role: role.into() })
            .set(version.map_or(0, i64::from));
    }
}
