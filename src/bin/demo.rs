//! The whole pipeline in one process, on an embedded Kafka broker unless --brokers is given.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{default_threads, shutdown_on_signals, StoreArgs, DEFAULT_DATA_DIR};
use census_stream::demo::{run, DemoConfig};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// A real Kafka to use instead of the embedded broker.
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    #[arg(long, env = "CENSUS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Rows streamed (from adult.test).
    #[arg(long, default_value_t = 6000)]
    rows: usize,
    /// Records a second.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Retrain after this many new labeled rows.
    #[arg(long, default_value_t = 2000)]
    retrain_every: usize,
    /// Hyperparameter evaluations of the bootstrap and of each retrain.
    #[arg(long, default_value_t = 5)]
    max_evals: usize,
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::logging::init();
    let flags = Flags::parse();
    let config = DemoConfig {
        brokers: flags.brokers,
        data_dir: flags.data_dir,
        store: flags.store.store(),
        rows: flags.rows,
        rate: flags.rate,
        retrain_every: flags.retrain_every,
        max_evals: flags.max_evals,
        threads: flags.threads,
        partitions: flags.partitions,
    };
    let summary = run(config, shutdown_on_signals())
        .await
        .context("demo failed")?;
    if !summary.missing.is_empty() {
        anyhow::bail!("{} requests got no prediction", summary.missing.len());
    }
    Ok(())
}
