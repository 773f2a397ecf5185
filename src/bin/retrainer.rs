//! The retrainer: keeps every labeled row of `census.requests`, retrains every N rows, stores and
//! announces each new bundle version on `census.models`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{
    default_threads, shutdown_on_signals, KafkaArgs, StoreArgs, DEFAULT_DATA_DIR, RETRAINER_GROUP,
};
use census_stream::data::Fetch;
use census_stream::retrainer::{run, RetrainerConfig};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Folder holding adult.data, the base training rows.
    #[arg(long, env = "CENSUS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// File keeping the labeled stream rows (default: stream_rows.jsonl in the models folder).
    #[arg(long)]
    rows_file: Option<PathBuf>,
    /// Retrain after this many new labeled rows.
    #[arg(long, default_value_t = 1000)]
    retrain_every: usize,
    /// Hyperparameter evaluations per retrain.
    #[arg(long, default_value_t = 10)]
    max_evals: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    #[arg(long, default_value = RETRAINER_GROUP)]
    group: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::logging::init();
    let flags = Flags::parse();
    let settings = flags.kafka.settings();
    settings.ensure_topics().await.context("creating topics")?;
    let mut config = RetrainerConfig::new(settings, flags.store.store());
    config.group = flags.group;
    config.data_dir = flags.data_dir;
    config.fetch = Fetch::default();
    if let Some(f) = flags.rows_file {
        config.rows_file = f;
    }
    config.retrain_every = flags.retrain_every;
    config.search.max_evals = flags.max_evals;
    config.search.seed = flags.seed;
    config.search.threads = flags.threads;
    let stats = run(config, shutdown_on_signals(), |_| {})
        .await
        .context("retrainer failed")?;
    println!(
        "{} labeled rows stored, {} records skipped, versions made {:?}; {}",
        stats.rows,
        stats.skipped,
        stats.versions,
        census_stream::memory::peak_rss_line()
    );
    Ok(())
}
