//! Prometheus metrics of the services, served at `--metrics-addr` (`/metrics`, OpenMetrics
//! text, which Prometheus scrapes as is). Each service owns its metric families and registers
//! them in a [`Registry`] when it serves them; tests read the same families directly.

mod dashboard;
mod predictor;
mod retrainer;
mod server;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use dashboard::DashboardMetrics;
pub use predictor::{PredictorMetrics, ScoringLabels};
pub use retrainer::RetrainerMetrics;
pub use server::serve;

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
