//! The dashboard's metrics: what it read, and who watches.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
        register_build_info(r);
    }
}
