//! Streams census rows into `census.requests` and shows the predictions that come back.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{shutdown_on_signals, KafkaArgs, DEFAULT_DATA_DIR};
use census_stream::data::{ensure_file, Fetch};
use census_stream::producer::{run, Input, ProducerConfig};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Rows to send: a CSV in UCI format, or JSON lines (`.jsonl`/`.json`). Default: adult.test.
    #[arg(long)]
    input: Option<PathBuf>,
    #[arg(long, env = "CENSUS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Records a second (0: as fast as possible).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Records to send; the input repeats when it has fewer (for load tests). Default: the
    /// input once.
    #[arg(long)]
    limit: Option<usize>,
    /// Seconds to wait for the last predictions.
    #[arg(long, default_value_t = 30)]
    wait_secs: u64,
    /// Prediction lines printed a second at most (0: only the summary).
    #[arg(long, default_value_t = 20)]
    show_per_sec: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::logging::init();
    let flags = Flags::parse();
    let input = match flags.input {
        Some(p)
            if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("jsonl" | "json")
            ) =>
        {
            Input::JsonLines(p)
        }
        Some(p) => Input::Uci(p),
        None => Input::Uci(ensure_file(
            &flags.data_dir,
            "adult.test",
            &Fetch::default(),
        )?),
    };
    let settings = flags.kafka.settings();
    settings.ensure_topics().await.context("creating topics")?;
    let mut config = ProducerConfig::new(settings, input);
    config.rate = flags.rate;
    config.limit = flags.limit;
    config.wait = Duration::from_secs(flags.wait_secs);
    config.show_per_sec = flags.show_per_sec;
    let summary = run(config, shutdown_on_signals())
        .await
        .context("producer failed")?;
    println!(
        "\n{}{}",
        summary.report(),
        census_stream::memory::peak_rss_line()
    );
    if !summary.missing.is_empty() {
        anyhow::bail!("{} requests got no prediction", summary.missing.len());
    }
    Ok(())
}
