//! The whole pipeline in one process, on an embedded Kafka broker unless --brokers is given.

use std::num::NonZeroUsize;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{
    self, shutdown_on_signals, Check, Contradiction, DataArgs, EmbeddedOrKafkaArgs, Given,
    PromotionArgs, ScenarioArgs, SearchArgs, StrictArgs, TriggerArgs,
};
use census_stream::defaults::demo;
use census_stream::demo::{run, DemoConfig};
use census_stream::producer::{LabelPlan, Sink, Spread};
use census_stream::settings::{positive, seconds, share, Rate};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: EmbeddedOrKafkaArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Rows streamed (from adult.test, or made by --scenario).
    #[arg(long, default_value_t = demo::ROWS)]
    rows: usize,
    #[command(flatten)]
    scenario: ScenarioArgs,
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
    #[arg(long, conflicts_with_all = ["stay", "dashboard_addr"])]
    no_dashboard: bool,
    /// After the stream, keep the dashboard up until Ctrl-C (to look at it at leisure).
    #[arg(long)]
    stay: bool,
    /// Seconds after its request a label comes, on average (uniform between 0 and twice this).
    #[arg(long, default_value_t = demo::LABEL_DELAY.as_secs_f64(), value_parser = seconds)]
    label_delay_secs: f64,
    /// Share of requests whose label ever comes.
    #[arg(long, default_value_t = demo::LABEL_FRACTION, value_parser = share)]
    label_fraction: f64,
    /// Labels ride inside the requests, known the instant each is predicted.
    #[arg(long, conflicts_with_all = ["label_delay_secs", "label_fraction"])]
    inline_labels: bool,
    /// Which predictions carry their reasons: off, all or sample:F.
    #[arg(long, default_value_t = census_stream::predictor::DEFAULT_EXPLAIN)]
    explain: census_stream::predictor::Explain,
}

impl Check for Flags {
    type Valid = DemoConfig;

    fn check(self, given: &Given) -> Result<DemoConfig, Contradiction> {
        let (kafka, embedded) = self.kafka.settings();
        Ok(DemoConfig {
            kafka,
            embedded,
            data_dir: self.data.data_dir,
            rows: self.rows,
            rate: self.rate,
            retrain_every: self.retrain_every,
            search: self.search.config(self.max_evals),
            scoring: self.strict.scoring(),
            bootstrap_rows: (self.bootstrap_rows > 0).then_some(self.bootstrap_rows),
            promotion: self.promotion.promotion(given)?,
            shuffle_labels: self.promotion.shuffle_labels,
            biased_challenger: self.promotion.biased_challenger,
            triggers: self.triggers.triggers(),
            sink: Sink::stdout(),
            status: Some(census_stream::producer::Status::stderr()),
            dashboard: (!self.no_dashboard).then_some(self.dashboard_addr),
            stay: self.stay,
            labels: (!self.inline_labels).then(|| LabelPlan {
                delay: std::time::Duration::from_secs_f64(self.label_delay_secs),
                spread: Spread::Uniform,
                fraction: self.label_fraction,
                seed: 0,
            }),
            scenario: self.scenario.scenario(),
            explain: self.explain,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::util::free_memory::limit_arenas();
    census_stream::util::logging::init();
    let config = cli::parse::<Flags>();
    tokio::spawn(census_stream::util::free_memory::trim_every(
        census_stream::util::free_memory::TRIM_EVERY,
    ));
    let summary = run(
        config,
        shutdown_on_signals("stopping the stream, then every component", None),
    )
    .await
    .context("demo failed")?;
    if !summary.missing.is_empty() {
        anyhow::bail!("{} requests got no prediction", summary.missing.len());
    }
    Ok(())
}
