//! Streams census rows into `census.requests` and shows the predictions that come back.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{shutdown_on_signals, DataArgs, KafkaArgs, ScenarioArgs, ShutdownArgs};
use census_stream::defaults;
use census_stream::producer::{run, Input, LabelPlan, ProducerConfig, Sink, Spread, Status};
use census_stream::settings::{positive, seconds, share, Rate};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    shutdown: ShutdownArgs,
    /// Rows to send: a CSV in UCI format, or JSON lines (`.jsonl`/`.json`). Default: adult.test.
    #[arg(long, conflicts_with = "scenario")]
    input: Option<PathBuf>,
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Longest input line sent, in bytes (its line ending not counted): a longer one is
    /// reported with its file and line number and skipped, as is a line that is not UTF-8, not
    /// JSON, or a UCI line that does not parse.
    #[arg(long, default_value_t = defaults::PRODUCER_MAX_LINE_BYTES,
          value_parser = positive)]
    max_line_bytes: NonZeroUsize,
    /// Send a JSON-lines line that is not a JSON object as it is (the predictor dead-letters it)
    /// instead of skipping it: to try out the dead-letter queue.
    #[arg(long)]
    send_non_json: bool,
    #[command(flatten)]
    data: DataArgs,
    /// Records a second (0: as fast as possible).
    #[arg(long, default_value_t = Rate::new(defaults::PRODUCER_RATE).unwrap(),
          allow_negative_numbers = true)]
    rate: Rate,
    /// Records to send; the input repeats when it has fewer (for load tests). Default: the
    /// input once (with --scenario: as many as adult.test has).
    #[arg(long)]
    limit: Option<usize>,
    /// Seconds to wait for the last predictions.
    #[arg(long, default_value_t = defaults::PRODUCER_WAIT.as_secs())]
    wait_secs: u64,
    /// Prediction lines printed a second at most (0: only the summary).
    #[arg(long, default_value_t = defaults::SHOW_PER_SEC)]
    show_per_sec: u32,
    /// No status line (sent, answered, accuracy per version) on stderr.
    #[arg(long)]
    no_status: bool,
    /// Send each label apart from its request, on census.labels, this many seconds after it
    /// (on average: see --label-spread); the request goes without income_bracket. Without this
    /// and --label-fraction, labels ride inside the requests.
    #[arg(long, value_parser = seconds)]
    label_delay_secs: Option<f64>,
    /// Share of requests whose label is ever sent (0 to 1), apart from the request.
    #[arg(long, value_parser = share)]
    label_fraction: Option<f64>,
    /// How the label delays spread around --label-delay-secs: none, uniform (0 to twice the
    /// delay) or exponential (the delay as mean). Spread delays send labels out of order.
    #[arg(long, value_enum, default_value = "uniform")]
    label_spread: Spread,
    /// Seed of which labels are sent and their delays.
    #[arg(long, default_value_t = 0)]
    label_seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::util::logging::init();
    let flags = Flags::parse();
    let input = match (&flags.input, flags.scenario.scenario()) {
        (Some(p), _) => Input::from_path(p),
        (None, Some(scenario)) => Input::Scenario {
            data_dir: flags.data.data_dir.clone(),
            scenario,
        },
        (None, None) => Input::AdultTest(flags.data.data_dir.clone()),
    };
    let mut config = ProducerConfig::new(flags.kafka.settings(), input);
    config.max_line_bytes = flags.max_line_bytes;
    config.send_non_json = flags.send_non_json;
    config.rate = flags.rate;
    config.limit = flags.limit;
    config.wait = Duration::from_secs(flags.wait_secs);
    config.sink = Some(Sink::stdout());
    config.show_per_sec = flags.show_per_sec;
    // On stderr with the logs: redrawn in place on a terminal, a plain line every 5 s elsewhere.
    config.status = (!flags.no_status).then(Status::stderr);
    if flags.label_delay_secs.is_some() || flags.label_fraction.is_some() {
        config.labels = Some(LabelPlan {
            delay: Duration::from_secs_f64(flags.label_delay_secs.unwrap_or(0.0)),
            spread: flags.label_spread,
            fraction: flags.label_fraction.unwrap_or(1.0),
            seed: flags.label_seed,
        });
    }
    let summary = run(
        config,
        shutdown_on_signals(
            "sending no more, then the summary of what came back",
            Some(flags.shutdown.deadline()),
        ),
    )
    .await
    .context("producer failed")?;
    println!(
        "\n{}{}",
        summary.report(),
        census_stream::util::peak_memory::peak_rss_line()
    );
    if !summary.missing.is_empty() {
        anyhow::bail!("{} requests got no prediction", summary.missing.len());
    }
    Ok(())
}
