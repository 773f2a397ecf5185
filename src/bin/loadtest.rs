//! Load test: N records through Kafka (embedded broker unless --brokers is given), measured
//! from the first send to the last prediction.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{shutdown_on_signals, StoreArgs, DEFAULT_DATA_DIR};
use census_stream::loadtest::{run, LoadConfig};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// A real Kafka to use instead of the embedded broker.
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: Option<String>,
    /// Partitions of census.requests and census.predictions when this creates them.
    #[arg(long, env = "CENSUS_PARTITIONS", default_value_t = 6)]
    partitions: i32,
    #[command(flatten)]
    store: StoreArgs,
    #[arg(long, env = "CENSUS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Records measured (adult.test rows, repeated as needed).
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Records sent and waited for before the measured run.
    #[arg(long, default_value_t = 1000)]
    warmup: usize,
    /// Records a second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Predictor instances in this process (0: predictors already running elsewhere).
    #[arg(long, default_value_t = 1)]
    predictors: usize,
    /// Most records a predictor scores in one batch.
    #[arg(long, default_value_t = 1024)]
    max_batch: usize,
    /// Milliseconds a batch waits for more records after its first.
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
    /// Seconds to wait for the last predictions.
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::logging::init();
    let f = Flags::parse();
    let config = LoadConfig {
        brokers: f.brokers.clone(),
        partitions: f.partitions,
        store: f.store.store(),
        data_dir: f.data_dir,
        records: f.records,
        warmup: f.warmup,
        rate: f.rate,
        predictors: f.predictors,
        max_batch: f.max_batch,
        linger: Duration::from_millis(f.linger_ms),
        wait: Duration::from_secs(f.wait_secs),
    };
    let report = run(config, shutdown_on_signals())
        .await
        .context("load test failed")?;
    println!(
        "\n=== load test: {} records, rate {}, broker {}, {} predictor(s) here ===",
        f.records,
        if f.rate > 0.0 {
            format!("{} records/s", f.rate)
        } else {
            "as fast as possible".into()
        },
        f.brokers.as_deref().unwrap_or("embedded"),
        f.predictors
    );
    print!("{}", report.text());
    println!(
        "warm-up {:.1} s; this process: {}",
        report.warmup.as_secs_f64(),
        census_stream::memory::peak_rss_line()
    );
    if !report.summary.missing.is_empty() {
        anyhow::bail!("{} records got no prediction", report.summary.missing.len());
    }
    Ok(())
}
