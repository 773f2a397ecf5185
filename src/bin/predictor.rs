//! A predictor instance of the `census-predictor` group: scores `census.requests` into
//! `census.predictions`, dead-letters what it cannot score, hot-swaps bundles from
//! `census.models`.

use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{serve_metrics, shutdown_on_signals, KafkaArgs, ScoringArgs, StoreArgs};
use census_stream::defaults;
use census_stream::predictor::{run, PredictorConfig};
use census_stream::settings::positive;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Start without local bundles: wait for one on census.models.
    #[arg(long)]
    no_local_bundle: bool,
    #[arg(long, default_value = defaults::PREDICTOR_GROUP)]
    group: String,
    /// A stable name for this instance in its consumer group (Kafka's `group.instance.id`,
    /// static membership): restarted with the same name within the session timeout (10 s), it
    /// takes its partitions back at once, without a rebalance. Give each instance its own
    /// (e.g. its host name in a StatefulSet); two running with one name fence each other.
    #[arg(long, env = "CENSUS_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Exactly-once: each batch's predictions, dead letters and offsets in one Kafka
    /// transaction, as transactional id `<group>-<instance id>`, so that a `read_committed`
    /// reader of census.predictions sees every request answered once, crashes included.
    /// Needs --instance-id. Costs throughput and latency (see README).
    #[arg(long, requires = "instance_id")]
    exactly_once: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9464).
    #[arg(long, env = "CENSUS_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Most records scored in one batch.
    #[arg(long, default_value_t = defaults::MAX_BATCH, value_parser = positive)]
    max_batch: NonZeroUsize,
    #[command(flatten)]
    scoring: ScoringArgs,
    /// Milliseconds a batch waits for more records after its first (0: it takes what has
    /// arrived; batches still grow under load, while the previous batch is scored and sent).
    #[arg(long, default_value_t = defaults::PREDICTOR_LINGER.as_millis() as u64)]
    linger_ms: u64,
    /// Batches in flight, read and not yet committed: while the broker acknowledges a batch's
    /// predictions, the next ones are read, scored and sent (1: each batch is committed before
    /// the next is read). Offsets are still committed in order, only past acknowledged
    /// predictions; a crash repeats at most these batches. At-least-once only: --exactly-once
    /// keeps one.
    #[arg(long, default_value_t = defaults::PREDICTOR_IN_FLIGHT, value_parser = positive)]
    batches_in_flight: NonZeroUsize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::util::logging::init();
    let flags = Flags::parse();
    let mut config = PredictorConfig::new(flags.kafka.settings());
    config.group = flags.group;
    config.instance_id = flags.instance_id;
    config.exactly_once = flags.exactly_once;
    config.max_batch = flags.max_batch;
    config.linger = Duration::from_millis(flags.linger_ms);
    config.in_flight = flags.batches_in_flight;
    config.store = (!flags.no_local_bundle).then(|| flags.store.store());
    config.scoring = flags.scoring.scoring();
    let shutdown = shutdown_on_signals();
    serve_metrics(
        flags.metrics_addr,
        |r| config.metrics.register(r),
        shutdown.clone(),
    )
    .await?;
    let stats = run(config, shutdown).await.context("predictor failed")?;
    println!(
        "predicted {}, dead-lettered {}, versions used {:?}; {}",
        stats.predicted,
        stats.dead_lettered,
        stats.versions,
        census_stream::util::peak_memory::peak_rss_line()
    );
    Ok(())
}
