//! Load test: N records through Kafka (embedded broker unless --brokers is given), measured
//! from the first send to the last prediction.

use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{
    shutdown_on_signals, DataArgs, EmbeddedOrKafkaArgs, StoreArgs, StrictArgs,
};
use census_stream::defaults::{self, loadtest};
use census_stream::loadtest::{run, LoadConfig};
use census_stream::settings::{positive, Rate};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: EmbeddedOrKafkaArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    strict: StrictArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Records measured (adult.test rows, repeated as needed).
    #[arg(long, default_value_t = loadtest::RECORDS)]
    records: usize,
    /// Records sent and waited for before the measured run.
    #[arg(long, default_value_t = loadtest::WARMUP)]
    warmup: usize,
    /// Records a second (0: as fast as possible).
    #[arg(long, default_value_t = Rate::UNLIMITED, allow_negative_numbers = true)]
    rate: Rate,
    /// Predictor instances in this process (0: predictors already running elsewhere).
    #[arg(long, default_value_t = loadtest::PREDICTORS)]
    predictors: usize,
    /// Most records a predictor scores in one batch.
    #[arg(long, default_value_t = defaults::MAX_BATCH, value_parser = positive)]
    max_batch: NonZeroUsize,
    /// Milliseconds a batch waits for more records after its first.
    #[arg(long, default_value_t = defaults::PREDICTOR_LINGER.as_millis() as u64)]
    linger_ms: u64,
    /// Batches a predictor run here has in flight in at-least-once mode (see predictor --help).
    #[arg(long, default_value_t = defaults::PREDICTOR_IN_FLIGHT, value_parser = positive)]
    batches_in_flight: NonZeroUsize,
    /// The predictors run here score in exactly-once mode (Kafka transactions).
    #[arg(long)]
    exactly_once: bool,
    /// Seconds to wait for the last predictions.
    #[arg(long, default_value_t = loadtest::WAIT_SECS)]
    wait_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::util::logging::init();
    let f = Flags::parse();
    let (kafka, embedded) = f.kafka.settings();
    let config = LoadConfig {
        kafka,
        embedded,
        store: f.store.store(),
        scoring: f.strict.scoring(),
        data_dir: f.data.data_dir,
        records: f.records,
        warmup: f.warmup,
        rate: f.rate,
        predictors: f.predictors,
        max_batch: f.max_batch,
        linger: Duration::from_millis(f.linger_ms),
        in_flight: f.batches_in_flight,
        exactly_once: f.exactly_once,
        wait: Duration::from_secs(f.wait_secs),
    };
    let report = run(config, shutdown_on_signals())
        .await
        .context("load test failed")?;
    println!(
        "\n=== load test: {} records, rate {}, broker {}, {} predictor(s) here{} ===",
        f.records,
        match f.rate.per_sec() {
            Some(r) => format!("{r} records/s"),
            None => "as fast as possible".into(),
        },
        f.kafka.brokers.as_deref().unwrap_or("embedded"),
        f.predictors,
        if f.exactly_once { ", exactly-once" } else { "" }
    );
    print!("{}", report.text());
    println!(
        "warm-up {:.1} s; this process: {}",
        report.warmup.as_secs_f64(),
        census_stream::util::peak_memory::peak_rss_line()
    );
    if !report.summary.missing.is_empty() {
        anyhow::bail!("{} records got no prediction", report.summary.missing.len());
    }
    Ok(())
}
