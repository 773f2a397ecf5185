//! The load test: N census records through Kafka, as fast as possible or at a fixed rate,
//! measured from the first send to the last prediction: records/s, and the latency of every
//! record from its send to its prediction's arrival (p50 / p95 / p99 / max). Predictors run in
//! this process (`predictors > 0`) or are already running elsewhere (`predictors == 0`).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

mod report;

pub use report::LoadReport;

use crate::bundle::BundleStore;
use crate::defaults;
use crate::initialize::{self, InitConfig};
use crate::kafka::{kafka_or_embedded, BrokerError, KafkaSettings};
use crate::model::Scoring;
use crate::predictor::{self, Mode, PredictorConfig};
use crate::producer::{self, Input, ProducerConfig};
use crate::settings::Rate;
use crate::train::SearchConfig;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Topics, partitions and client settings; the brokers too unless `embedded`.
    pub kafka: KafkaSettings,
    /// Start an embedded broker instead of using `kafka.brokers`.
    pub embedded: bool,
    pub store: BundleStore,
    /// How the bundles of the predictors run here (and a bootstrap bundle) score.
    pub scoring: Scoring,
    /// Which predictions the predictors run here explain.
    pub explain: predictor::Explain,
    pub data_dir: PathBuf,
    /// Records measured (adult.test rows, repeated as needed).
    pub records: usize,
    /// Records sent before the measured run and waited for, so that consumer-group joins and
    /// bundle loading are not measured.
    pub warmup: usize,
    pub rate: Rate,
    /// Predictor instances run here (0: rely on predictors running elsewhere).
    pub predictors: usize,
    /// Most records a predictor scores in one batch, and how long a batch waits for more.
    pub max_batch: NonZeroUsize,
    pub linger: Duration,
    /// Batches each predictor has in flight (at-least-once).
    pub in_flight: NonZeroUsize,
    /// The predictors run here in exactly-once mode.
    pub exactly_once: bool,
    /// How long to wait for the last predictions.
    pub wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("bootstrapping a bundle failed")]
    Init(#[from] crate::initialize::InitError),
    #[error("a predictor failed")]
    Predictor(#[from] predictor::PredictorError),
    #[error("the producer failed")]
    Producer(#[from] producer::ProducerError),
    #[error("warm-up: {missing} of {sent} records got no prediction within {waited:?}")]
    WarmUp {
        missing: usize,
        sent: usize,
        waited: Duration,
    },
    #[error("a worker thread failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Runs the load test.
pub async fn run(config: LoadConfig, shutdown: CancellationToken) -> Result<LoadReport, LoadError> {
    let (_broker, kafka) = kafka_or_embedded(config.kafka.clone(), config.embedded).await?;
    let mut init = InitConfig::new(
        config.store.clone(),
        SearchConfig::with_budget(defaults::loadtest::MAX_EVALS),
    );
    init.data_dir = config.data_dir.clone();
    init.if_missing = true;
    init.scoring = config.scoring;
    tokio::task::spawn_blocking(move || initialize::run(&init)).await??;

    let services = shutdown.child_token();
    let predictors: Vec<_> = (0..config.predictors)
        .map(|i| {
            let mut p = PredictorConfig::new(kafka.clone());
            p.store = Some(config.store.clone());
            p.scoring = config.scoring;
            p.explain = config.explain;
            p.max_batch = config.max_batch;
            p.linger = config.linger;
            p.in_flight = config.in_flight;
            p.name = format!("predictor-{i}");
            if config.exactly_once {
                // Each its own transactional id.
                p.mode = Mode::ExactlyOnce {
                    instance_id: format!("loadtest-{i}"),
                };
            }
            tokio::spawn(predictor::run(p, services.clone()))
        })
        .collect();

    let input = Input::AdultTest(config.data_dir.clone());
    let producer_config = |records: usize, rate: Rate| {
        let mut c = ProducerConfig::new(kafka.clone(), input.clone());
        c.limit = Some(records);
        c.rate = rate;
        c.wait = config.wait;
        c
    };
    let producer = kafka.producer()?;
    let started = Instant::now();
    if config.warmup > 0 {
        let w = producer::run_with(
            &producer,
            producer_config(config.warmup, Rate::UNLIMITED),
            shutdown.clone(),
        )
        .await?;
        if !w.missing.is_empty() {
            services.cancel();
            return Err(LoadError::WarmUp {
                missing: w.missing.len(),
                sent: w.sent,
                waited: config.wait,
            });
        }
    }
    let warmup = started.elapsed();
    let summary = producer::run_with(
        &producer,
        producer_config(config.records, config.rate),
        shutdown,
    )
    .await;
    services.cancel();
    let mut stats = Vec::with_capacity(predictors.len());
    for p in predictors {
        stats.push(p.await??);
    }
    Ok(LoadReport {
        summary: summary?,
        predictors: stats,
        warmup,
    })
}
