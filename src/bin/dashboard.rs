//! The dashboard: a live web page of the pipeline, read from the topics as a consumer of its
//! own. Open the URL it prints.

use std::num::NonZeroUsize;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{
    serve_metrics, shutdown_on_signals, DataArgs, KafkaArgs, MetricsArgs, ShutdownArgs,
};
use census_stream::dashboard::{run, DashboardConfig};
use census_stream::defaults;
use census_stream::settings::{self, positive};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    shutdown: ShutdownArgs,
    /// Serve the page at http://ADDR/ (0.0.0.0:8080 to reach it from other machines).
    #[arg(long, env = "CENSUS_DASHBOARD_ADDR", default_value = defaults::DASHBOARD_ADDR)]
    addr: std::net::SocketAddr,
    /// The predictors' consumer group, whose lag the page shows.
    #[arg(long, default_value = defaults::PREDICTOR_GROUP)]
    predictor_group: String,
    /// Requests per drift window (as the retrainer's --drift-window).
    #[arg(long, default_value_t = defaults::triggers::PSI_WINDOW, value_parser = positive)]
    drift_window: NonZeroUsize,
    /// The drift threshold marked on the page (as the retrainer's --drift-psi; 0: none).
    #[arg(long, default_value_t = defaults::triggers::PSI.unwrap_or(0.0),
          value_parser = settings::non_negative)]
    drift_psi: f64,
    /// Seconds a prediction waits for its label on census.labels (as the retrainer's).
    #[arg(long, default_value_t = defaults::LABEL_WINDOW.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    label_window_secs: u64,
    /// Read the stream's topics from the records written this many minutes ago (0: from
    /// their beginning); the registry is always read whole.
    #[arg(long, default_value_t = defaults::DASHBOARD_SINCE.as_secs() / 60)]
    since_mins: u64,
    /// adult.data's rows are read from here (when there) so that requests with their features
    /// do not count as new rows.
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::util::free_memory::limit_arenas();
    census_stream::util::logging::init();
    let flags = Flags::parse();
    tokio::spawn(census_stream::util::free_memory::trim_every(
        census_stream::util::free_memory::TRIM_EVERY,
    ));
    let mut config = DashboardConfig::new(flags.kafka.settings(), flags.addr);
    config.predictor_group = flags.predictor_group;
    config.triggers.psi_window = flags.drift_window.get();
    config.label_window = std::time::Duration::from_secs(flags.label_window_secs);
    config.data_dir = Some(flags.data.data_dir.clone());
    config.since =
        (flags.since_mins > 0).then(|| std::time::Duration::from_secs(flags.since_mins * 60));
    config.triggers.psi = (flags.drift_psi > 0.0).then_some(flags.drift_psi);
    let shutdown = shutdown_on_signals(
        "closing the page and its event streams",
        Some(flags.shutdown.deadline()),
    );
    serve_metrics(
        flags.metrics.metrics_addr,
        |r| config.metrics.register(r),
        config.health.clone(),
        shutdown.clone(),
    )
    .await?;
    run(config, shutdown).await.context("dashboard failed")?;
    // Stopped: exit now, without waiting for a look-up that waits for the broker (the runtime's
    // end would wait for it).
    std::process::exit(0)
}
