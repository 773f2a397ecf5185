//! Load test: N records through Kafka (embedded broker unless --brokers is given), measured
//! from the first send to the last prediction.

use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{
    self, shutdown_on_signals, Check, Contradiction, DataArgs, EmbeddedOrKafkaArgs, Given,
    StoreArgs, StrictArgs,
};
use census_stream::defaults::{self, loadtest};
use census_stream::loadtest::{run, LoadConfig};
use census_stream::predictor::{Explain, DEFAULT_EXPLAIN};
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
    #[arg(long, default_value_t = Rate::new(loadtest::RATE).unwrap(), allow_negative_numbers = true)]
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
    #[arg(long, default_value_t = defaults::PREDICTOR_IN_FLIGHT, value_parser = positive,
          conflicts_with = "exactly_once")]
    batches_in_flight: NonZeroUsize,
    /// The predictors run here score in exactly-once mode (Kafka transactions; a real broker
    /// only).
    #[arg(long)]
    exactly_once: bool,
    /// Which predictions the predictors run here explain (see predictor --help).
    #[arg(long, default_value_t = DEFAULT_EXPLAIN)]
    explain: Explain,
    /// Seconds to wait for the last predictions.
    #[arg(long, default_value_t = loadtest::WAIT_SECS)]
    wait_secs: u64,
}

/// The flags of the predictors run here, by id: none applies with `--predictors 0`.
const PREDICTOR_FLAGS: [(&str, &str); 5] = [
    ("explain", "--explain"),
    ("max_batch", "--max-batch"),
    ("linger_ms", "--linger-ms"),
    ("batches_in_flight", "--batches-in-flight"),
    ("exactly_once", "--exactly-once"),
];

impl Check for Flags {
    type Valid = LoadConfig;

    fn check(self, given: &Given) -> Result<LoadConfig, Contradiction> {
        let (kafka, embedded) = self.kafka.settings();
        if self.predictors == 0 {
            if embedded {
                return Err(Contradiction::new(
                    "'--predictors 0' needs '--brokers' (or KAFKA_BROKERS): no predictor \
                     elsewhere can reach the embedded broker of this process",
                ));
            }
            if let Some((_, flag)) = PREDICTOR_FLAGS.iter().find(|(id, _)| given.contains(id)) {
                return Err(Contradiction::new(format!(
                    "'{flag}' sets the predictors run here, and '--predictors 0' runs none"
                )));
            }
        }
        if self.exactly_once && embedded {
            return Err(Contradiction::new(
                "'--exactly-once' needs '--brokers' (or KAFKA_BROKERS): the embedded broker does \
                 not commit offsets in transactions",
            ));
        }
        Ok(LoadConfig {
            kafka,
            embedded,
            store: self.store.store(),
            scoring: self.strict.scoring(),
            explain: self.explain,
            data_dir: self.data.data_dir,
            records: self.records,
            warmup: self.warmup,
            rate: self.rate,
            predictors: self.predictors,
            max_batch: self.max_batch,
            linger: Duration::from_millis(self.linger_ms),
            in_flight: self.batches_in_flight,
            exactly_once: self.exactly_once,
            wait: Duration::from_secs(self.wait_secs),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::util::logging::init();
    let config = cli::parse::<Flags>();
    let title = format!(
        "{} records, rate {}, broker {}, {} predictor(s) here{}",
        config.records,
        match config.rate.per_sec() {
            Some(r) => format!("{r} records/s"),
            None => "as fast as possible".into(),
        },
        if config.embedded {
            "embedded"
        } else {
            &config.kafka.brokers
        },
        config.predictors,
        if config.exactly_once {
            ", exactly-once"
        } else {
            ""
        }
    );
    let report = run(
        config,
        shutdown_on_signals("stopping the load and reporting what was measured", None),
    )
    .await
    .context("load test failed")?;
    println!("\n=== load test: {title} ===");
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
