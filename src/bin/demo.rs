//! The whole pipeline in one process, on an embedded Kafka broker unless --brokers is given.

use std::num::NonZeroUsize;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{
    shutdown_on_signals, DataArgs, EmbeddedOrKafkaArgs, PromotionArgs, SearchArgs, StrictArgs,
    TriggerArgs,
};
use census_stream::defaults::demo;
use census_stream::demo::{run, DemoConfig};
use census_stream::producer::Sink;
use census_stream::settings::{positive, Rate};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: EmbeddedOrKafkaArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Rows streamed (from adult.test).
    #[arg(long, default_value_t = demo::ROWS)]
    rows: usize,
    /// Records a second (0: as fast as possible).
    #[arg(long, default_value_t = Rate::new(demo::RATE).unwrap(), allow_negative_numbers = true)]
    rate: Rate,
    /// Retrain after this many new labeled rows.
    #[arg(long, default_value_t = demo::RETRAIN_EVERY, value_parser = positive)]
    retrain_every: NonZeroUsize,
    /// Hyperparameter evaluations of the bootstrap and of each retrain.
    #[arg(long, default_value_t = demo::MAX_EVALS, value_parser = positive)]
    max_evals: NonZeroUsize,
    /// Rows of adult.data that v1 is trained on: a weak champion, so that the first retrain is
    /// clearly better and the gate promotes it (0: all of them, with initialize).
    #[arg(long, default_value_t = demo::BOOTSTRAP_ROWS)]
    bootstrap_rows: usize,
    #[command(flatten)]
    search: SearchArgs,
    #[command(flatten)]
    strict: StrictArgs,
    #[command(flatten)]
    promotion: PromotionArgs,
    #[command(flatten)]
    triggers: TriggerArgs,
    /// Serve the live dashboard here (port 0: any free port).
    #[arg(long, default_value = census_stream::defaults::DASHBOARD_ADDR)]
    dashboard_addr: std::net::SocketAddr,
    /// No dashboard.
    #[arg(long, conflicts_with = "stay")]
    no_dashboard: bool,
    /// After the stream, keep the dashboard up until Ctrl-C (to look at it at leisure).
    #[arg(long)]
    stay: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::util::logging::init();
    let flags = Flags::parse();
    let (kafka, embedded) = flags.kafka.settings();
    let config = DemoConfig {
        kafka,
        embedded,
        data_dir: flags.data.data_dir,
        rows: flags.rows,
        rate: flags.rate,
        retrain_every: flags.retrain_every,
        search: flags.search.config(flags.max_evals),
        scoring: flags.strict.scoring(),
        bootstrap_rows: (flags.bootstrap_rows > 0).then_some(flags.bootstrap_rows),
        promotion: flags.promotion.promotion(),
        shuffle_labels: flags.promotion.shuffle_labels,
        triggers: flags.triggers.triggers(),
        sink: Sink::stdout(),
        status: Some(census_stream::producer::Status::stderr()),
        dashboard: (!flags.no_dashboard).then_some(flags.dashboard_addr),
        stay: flags.stay,
    };
    let summary = run(config, shutdown_on_signals())
        .await
        .context("demo failed")?;
    if !summary.missing.is_empty() {
        anyhow::bail!("{} requests got no prediction", summary.missing.len());
    }
    Ok(())
}
