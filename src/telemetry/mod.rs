//! Prometheus metrics of the services, served at `--metrics-addr` (`/metrics`, OpenMetrics
//! text, which Prometheus scrapes as is). Each service owns its metric families and registers
//! them in a [`Registry`] when it serves them; tests read the same families directly.

mod dashboard;
mod predictor;
mod retrainer;
mod server;

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use dashboard::{DashboardMetrics, GapLabels, GroupLabels, GroupRateLabels};
pub use predictor::{PredictorMetrics, ScoringLabels};
pub use retrainer::{CommandLabels, RetrainerMetrics};
pub use server::{health_routes, serve};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub model_version: u32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub role: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

pub(crate) fn register_build_info(r: &mut Registry) {
    let info = Family::<BuildLabels, Gauge>::default();
    info.get_or_create(&BuildLabels {
        version: env!("CARGO_PKG_VERSION").into(),
    })
    .set(1);
    r.register("build_info", "The running build: its version", info);
}

/// What a reader of the model registry counts: records it ignored, bundles it refused to serve,
/// and how long it has been behind the registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryMetrics {
    /// Records of `census.models` ignored, by reason (unreadable, not a bundle, a replaced
    /// bundle, a version far out of line, …).
    pub records_ignored: Family<ReasonLabel, Counter>,
    /// Bundles the registry names that this reader refused to serve, by reason.
    pub bundles_refused: Family<ReasonLabel, Counter>,
    /// Seconds since this reader last served what the registry names (0 while it does).
    pub stale_seconds: Gauge<f64, AtomicU64>,
}

impl RegistryMetrics {
    /// Registers the families under `r` (already prefixed `census`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "registry_records_ignored",
            "Records of the models topic ignored, by reason",
            self.records_ignored.clone(),
        );
        r.register(
            "bundles_refused",
            "Bundles the registry names that this reader refused, by reason",
            self.bundles_refused.clone(),
        );
        r.register(
            "registry_stale_seconds",
            "Seconds since this reader last served what the registry names (0: in step)",
            self.stale_seconds.clone(),
        );
    }

    /// Counts a record ignored.
    pub fn ignored(&self, reason: &str) {
        self.records_ignored
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
