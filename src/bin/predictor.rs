//! A predictor instance of the `census-predictor` group: scores `census.requests` into
//! `census.predictions`, dead-letters what it cannot score, hot-swaps bundles from
//! `census.models`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{
    self, serve_metrics, shutdown_on_signals, Check, Contradiction, Given, KafkaArgs, MemberArgs,
    PredictorGroup, ScoringArgs, ShutdownArgs, StoreArgs,
};
use census_stream::defaults;
use census_stream::predictor::{run, Explain, PredictorConfig, DEFAULT_EXPLAIN};
use census_stream::settings::positive;
use census_stream::util::slot::HostSlot;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    shutdown: ShutdownArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Start without local bundles: wait for one on census.models.
    #[arg(long)]
    no_local_bundle: bool,
    #[command(flatten)]
    member: MemberArgs<PredictorGroup>,
    /// Exactly-once: each batch's predictions, dead letters and offsets in one Kafka
    /// transaction, as transactional id `<group>-<instance id>`, so that a `read_committed`
    /// reader of census.predictions sees every request answered once, crashes included.
    /// Needs an instance name (the default, `--instance-id auto`, is one). Costs throughput and
    /// latency (see README).
    #[arg(long)]
    exactly_once: bool,
    #[command(flatten)]
    scoring: ScoringArgs,
    /// Which predictions carry their reasons (the features that moved the champion's log-odds
    /// most, by TreeSHAP): `off`, `all`, or `sample:F`, a share F of the requests chosen by
    /// their id. Explaining costs about a millisecond a row (see BENCHMARKS.md).
    #[arg(long, env = "CENSUS_EXPLAIN", default_value_t = DEFAULT_EXPLAIN)]
    explain: Explain,
    /// Milliseconds a batch waits for more records after its first (0: it takes what has
    /// arrived; batches still grow under load, while the previous batch is scored and sent).
    #[arg(long, default_value_t = defaults::PREDICTOR_LINGER.as_millis() as u64)]
    linger_ms: u64,
    /// Batches in flight, read and not yet committed: while the broker acknowledges a batch's
    /// predictions, the next ones are read, scored and sent (1: each batch is committed before
    /// the next is read). Offsets are still committed in order, only past acknowledged
    /// predictions; a crash repeats at most these batches. At-least-once only: --exactly-once
    /// keeps one.
    #[arg(long, default_value_t = defaults::PREDICTOR_IN_FLIGHT, value_parser = positive,
          conflicts_with = "exactly_once")]
    batches_in_flight: NonZeroUsize,
}

/// The predictor's settings, its flags checked.
struct Settings {
    config: PredictorConfig,
    metrics_addr: Option<SocketAddr>,
    /// The host slot its instance name holds, while it runs.
    _slot: Option<HostSlot>,
    deadline: std::time::Duration,
}

impl Check for Flags {
    type Valid = Settings;

    fn check(self, _: &Given) -> Result<Settings, Contradiction> {
        let mut config = PredictorConfig::new(self.kafka.settings());
        let (instance, slot) = self.member.instance()?;
        config.mode = self.member.mode(self.exactly_once, instance)?;
        config.group = self.member.group;
        config.max_batch = self.member.max_batch;
        config.linger = Duration::from_millis(self.linger_ms);
        config.in_flight = self.batches_in_flight;
        config.store = (!self.no_local_bundle).then(|| self.store.store());
        config.scoring = self.scoring.scoring();
        config.explain = self.explain;
        Ok(Settings {
            config,
            metrics_addr: self.member.metrics.metrics_addr,
            _slot: slot,
            deadline: self.shutdown.deadline(),
        })
    }
}

fn main() -> anyhow::Result<()> {
    census_stream::cli::run_service(serve())
}

async fn serve() -> anyhow::Result<()> {
    census_stream::util::logging::init();
    let Settings {
        config,
        metrics_addr,
        _slot,
        deadline,
    } = cli::parse::<Flags>();
    let shutdown = shutdown_on_signals(
        "finishing the batches in hand, committing, leaving the group",
        Some(deadline),
    );
    serve_metrics(
        metrics_addr,
        |r| config.metrics.register(r),
        config.health.clone(),
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
