//! The retrainer: keeps every labeled row of `census.requests`, retrains every N rows, stores and
//! announces each new bundle version on `census.models`.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{
    serve_metrics, shutdown_on_signals, DataArgs, KafkaArgs, PromotionArgs, SearchArgs, StoreArgs,
    StrictArgs, TrackingArgs, TriggerArgs,
};
use census_stream::defaults;
use census_stream::retrainer::{run, RetrainerConfig};
use census_stream::settings::positive;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    strict: StrictArgs,
    #[command(flatten)]
    data: DataArgs,
    /// File keeping the labeled stream rows (default: stream_rows.jsonl in the models folder).
    #[arg(long)]
    rows_file: Option<PathBuf>,
    /// Retrain after this many new labeled rows.
    #[arg(long, default_value_t = defaults::RETRAIN_EVERY, value_parser = positive)]
    retrain_every: NonZeroUsize,
    /// Hyperparameter evaluations per retrain.
    #[arg(long, default_value_t = defaults::RETRAIN_MAX_EVALS, value_parser = positive)]
    max_evals: NonZeroUsize,
    #[command(flatten)]
    search: SearchArgs,
    #[command(flatten)]
    promotion: PromotionArgs,
    #[command(flatten)]
    triggers: TriggerArgs,
    #[arg(long, default_value = defaults::RETRAINER_GROUP)]
    group: String,
    /// A stable name for this instance in its consumer group (Kafka's `group.instance.id`,
    /// static membership): restarted with the same name within the session timeout (10 s), it
    /// takes its partitions back at once, without a rebalance. Give each instance its own
    /// (e.g. its host name in a StatefulSet); two running with one name fence each other.
    #[arg(long, env = "CENSUS_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9465).
    #[arg(long, env = "CENSUS_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Most records stored in one batch.
    #[arg(long, default_value_t = defaults::MAX_BATCH, value_parser = positive)]
    max_batch: NonZeroUsize,
    #[command(flatten)]
    tracking: TrackingArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::util::logging::init();
    let flags = Flags::parse();
    let mut config = RetrainerConfig::new(flags.kafka.settings(), flags.store.store());
    config.group = flags.group;
    config.instance_id = flags.instance_id;
    config.data_dir = flags.data.data_dir;
    config.scoring = flags.strict.scoring();
    if let Some(f) = flags.rows_file {
        config.rows_file = f;
    }
    config.retrain_every = flags.retrain_every;
    config.search = flags.search.config(flags.max_evals);
    config.max_batch = flags.max_batch;
    config.promotion = flags.promotion.promotion();
    config.shuffle_labels = flags.promotion.shuffle_labels;
    config.triggers = flags.triggers.triggers();
    config.tracking = flags.tracking.tracker();
    let tracker = config.tracking.clone();
    let shutdown = shutdown_on_signals();
    serve_metrics(
        flags.metrics_addr,
        |r| config.metrics.register(r),
        shutdown.clone(),
    )
    .await?;
    let result = run(config, shutdown, |_| {}).await;
    if let Some(tracker) = tracker {
        let wait = flags.tracking.wait();
        tokio::task::spawn_blocking(move || tracker.finish(wait)).await?;
    }
    let stats = result.context("retrainer failed")?;
    println!(
        "{} labeled rows stored, {} records skipped, versions made {:?}, decisions [{}]; {}",
        stats.rows,
        stats.skipped,
        stats.versions,
        stats
            .decisions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        census_stream::util::peak_memory::peak_rss_line()
    );
    Ok(())
}
