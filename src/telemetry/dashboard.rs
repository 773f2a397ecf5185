//! The dashboard's metrics: what it read, and who watches.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use std::sync::atomic::AtomicU64;

use super::{register_build_info, ReasonLabel};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Debug, Clone, Default)]
pub struct DashboardMetrics {
    /// Records read, by topic.
    pub records_read: Family<TopicLabel, Counter>,
    /// Pages open now (server-sent event streams).
    pub viewers: Gauge,
    /// Records of the models topic ignored, by reason.
    pub registry_records_ignored: Family<ReasonLabel, Counter>,
    /// Per version and role (`served`, `shadow`, and `new_rows`: served on rows whose features
    /// came for the first time): predictions joined to their labels, and the realised accuracy
    /// and mean log loss over them (cumulative).
    pub live_labels: Family<QualityLabels, Gauge>,
    pub live_accuracy: Family<QualityLabels, Gauge<f64, AtomicU64>>,
    pub live_log_loss: Family<QualityLabels, Gauge<f64, AtomicU64>>,
    /// Per version: served predictions, and the accuracy and log loss estimated from their
    /// probabilities alone, before labels (cumulative).
    pub estimated_predictions: Family<VersionLabel, Gauge>,
    pub estimated_accuracy: Family<VersionLabel, Gauge<f64, AtomicU64>>,
    pub estimated_log_loss: Family<VersionLabel, Gauge<f64, AtomicU64>>,
    /// Predictions waiting for their label.
    pub labels_pending: Gauge,
    /// The champion's figures per group (on its labeled predictions on new rows): the version
    /// they are of, labeled rows per group, rates per group (`selection`, `tpr`, `fpr`,
    /// `precision`), and the gaps per attribute (`demographic_parity`, `equalized_odds`) with
    /// their always-valid interval (`bound`: `estimate`, `lower`, `upper`).
    pub fairness_version: Gauge,
    pub group_labels: Family<GroupLabels, Gauge>,
    pub group_rate: Family<GroupRateLabels, Gauge<f64, AtomicU64>>,
    pub fairness_gap: Family<GapLabels, Gauge<f64, AtomicU64>>,
    /// The versions with series now.
    published: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<u32>>>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QualityLabels {
    pub model_version: u32,
    pub role: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub attribute: String,
    pub group: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupRateLabels {
    pub attribute: String,
    pub group: String,
    pub rate: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GapLabels {
    pub attribute: String,
    pub gap: String,
    pub bound: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub model_version: u32,
}

impl DashboardMetrics {
    pub fn read(&self, topic: &str) {
        self.records_read
            .get_or_create(&TopicLabel {
                topic: topic.to_owned(),
            })
            .inc();
    }

    pub fn registry_ignored(&self, reason: &str) {
        self.registry_records_ignored
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A version's realised quality in `role` (`served`, `shadow`): on `labels` labeled
    /// predictions.
    pub fn live(&self, version: u32, role: &str, labels: u64, accuracy: f64, log_loss: f64) {
        let l = QualityLabels {
            model_version: version,
            role: role.into(),
        };
        self.live_labels.get_or_create(&l).set(labels as i64);
        self.live_accuracy.get_or_create(&l).set(accuracy);
        self.live_log_loss.get_or_create(&l).set(log_loss);
    }

    /// Keeps the per-version series of `versions` only (those the board still keeps): the
    /// series of the others are dropped.
    pub fn keep_versions(&self, versions: std::collections::BTreeSet<u32>) {
        let mut published = self.published.lock().expect("metrics lock");
        for &v in published.difference(&versions) {
            for role in ["served", "shadow", "new_rows"] {
                let l = QualityLabels {
                    model_version: v,
                    role: role.into(),
                };
                self.live_labels.remove(&l);
                self.live_accuracy.remove(&l);
                self.live_log_loss.remove(&l);
            }
            let l = VersionLabel { model_version: v };
            self.estimated_predictions.remove(&l);
            self.estimated_accuracy.remove(&l);
            self.estimated_log_loss.remove(&l);
        }
        *published = versions;
    }

    /// A version's quality estimated from its `predictions` served probabilities.
    pub fn estimated(&self, version: u32, predictions: u64, accuracy: f64, log_loss: f64) {
        let l = VersionLabel {
            model_version: version,
        };
        self.estimated_predictions
            .get_or_create(&l)
            .set(predictions as i64);
        self.estimated_accuracy.get_or_create(&l).set(accuracy);
        self.estimated_log_loss.get_or_create(&l).set(log_loss);
    }

    /// The champion's (`version`) figures per group. Only the data set's groups have series,
    /// so the label sets are bounded (23 groups, 4 attributes).
    pub fn groups(&self, version: u32, attributes: &[crate::lifecycle::groups::AttributeView]) {
        self.fairness_version.set(i64::from(version));
        for a in attributes {
            for g in &a.groups {
                let labels = GroupLabels {
                    attribute: a.attribute.clone(),
                    group: g.group.clone(),
                };
                self.group_labels
                    .get_or_create(&labels)
                    .set(g.labeled as i64);
                for (rate, r) in [
                    ("selection", g.selection),
                    ("tpr", g.tpr),
                    ("fpr", g.fpr),
                    ("precision", g.precision),
                ] {
                    if let Some(r) = r {
                        self.group_rate
                            .get_or_create(&GroupRateLabels {
                                attribute: a.attribute.clone(),
                                group: g.group.clone(),
                                rate: rate.into(),
                            })
                            .set(r.value);
                    }
                }
            }
            for (gap, figure) in [
                ("demographic_parity", a.demographic_parity),
                ("equalized_odds", a.equalized_odds),
            ] {
                let Some(figure) = figure else { continue };
                for (bound, value) in [
                    ("estimate", figure.value),
                    ("lower", figure.interval[0]),
                    ("upper", figure.interval[1]),
                ] {
                    self.fairness_gap
                        .get_or_create(&GapLabels {
                            attribute: a.attribute.clone(),
                            gap: gap.into(),
                            bound: bound.into(),
                        })
                        .set(value);
                }
            }
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("census");
        r.register(
            "dashboard_records_read",
            "Records the dashboard read, by topic",
            self.records_read.clone(),
        );
        r.register(
            "dashboard_viewers",
            "Pages following the dashboard's live updates now",
            self.viewers.clone(),
        );
        r.register(
            "registry_records_ignored",
            "Records of the models topic ignored, by reason",
            self.registry_records_ignored.clone(),
        );
        r.register(
            "live_labels",
            "Predictions joined to their labels, by version and role (served, shadow, new_rows: served on rows whose features came for the first time)",
            self.live_labels.clone(),
        );
        r.register(
            "live_accuracy",
            "Realised accuracy over the labeled predictions, by version and role",
            self.live_accuracy.clone(),
        );
        r.register(
            "live_log_loss",
            "Realised mean log loss over the labeled predictions, by version and role",
            self.live_log_loss.clone(),
        );
        r.register(
            "estimated_predictions",
            "Served predictions the estimates rest on, by version",
            self.estimated_predictions.clone(),
        );
        r.register(
            "estimated_accuracy",
            "Accuracy estimated from the served probabilities before labels (CBPE), by version",
            self.estimated_accuracy.clone(),
        );
        r.register(
            "estimated_log_loss",
            "Log loss estimated from the served probabilities before labels, by version",
            self.estimated_log_loss.clone(),
        );
        r.register(
            "dashboard_labels_pending",
            "Predictions waiting for their label",
            self.labels_pending.clone(),
        );
        r.register(
            "fairness_model_version",
            "The version the figures per group are of (the champion)",
            self.fairness_version.clone(),
        );
        r.register(
            "group_labels",
            "The champion's labeled predictions on new rows, by attribute and group",
            self.group_labels.clone(),
        );
        r.register(
            "group_rate",
            "The champion's rates by attribute and group (selection, tpr, fpr, precision)",
            self.group_rate.clone(),
        );
        r.register(
            "fairness_gap",
            "The champion's gaps between groups by attribute (demographic_parity, equalized_odds), with their always-valid interval (bound: estimate, lower, upper)",
            self.fairness_gap.clone(),
        );
        register_build_info(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::groups::{GroupFigures, Groups};

    #[test]
    fn the_champion_s_figures_per_group_become_bounded_series() {
        let mut f = GroupFigures::default();
        for i in 0..400 {
            let mut row = crate::features::tests::row("Private", "Sales", "United-States", 40.0);
            row.sex = if i % 2 == 0 { "Male" } else { "Female" }.into();
            let label = i % 4 < 2;
            f.add(Groups::of(&row), if i % 2 == 0 { 0.9 } else { 0.1 }, label);
        }
        let m = DashboardMetrics::default();
        m.groups(3, &f.view().unwrap());
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, &registry).unwrap();
        assert!(t.contains("census_fairness_model_version 3"), "{t}");
        assert!(
            t.contains("census_group_labels{attribute=\"sex\",group=\"Female\"} 200"),
            "{t}"
        );
        assert!(
            t.contains(
                "census_group_rate{attribute=\"sex\",group=\"Male\",rate=\"selection\"} 1.0"
            ),
            "{t}"
        );
        // Men all said >50K, women none: a selection-rate gap of 1.
        assert!(
            t.contains(
                "census_fairness_gap{attribute=\"sex\",gap=\"demographic_parity\",bound=\"estimate\"} 1.0"
            ),
            "{t}"
        );
        assert!(t.contains("gap=\"equalized_odds\",bound=\"lower\""), "{t}");
        // Only groups with rows have series.
        assert!(!t.contains("group=\"Other\""), "{t}");
    }
}
