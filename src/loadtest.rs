//! The load test: N census records through Kafka, as fast as possible or at a fixed rate,
//! measured from the first send to the last prediction: records/s, and the latency of every
//! record from its send to its prediction's arrival (p50 / p95 / p99 / max). Predictors run in
//! this process (`predictors > 0`) or are already running elsewhere (`predictors == 0`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::bundle::BundleStore;
use crate::data::{ensure_file, Fetch};
use crate::initialize::{self, InitConfig};
use crate::predictor::{self, PredictorConfig, PredictorStats};
use crate::producer::{self, Input, ProducerConfig, Summary};
use crate::stream::embedded::kafka_or_embedded;
use crate::stream::StreamError;
use crate::train::SearchConfig;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Kafka to use; `None` starts the embedded broker.
    pub brokers: Option<String>,
    pub partitions: i32,
    pub store: BundleStore,
    pub data_dir: PathBuf,
    /// Records measured (adult.test rows, repeated as needed).
    pub records: usize,
    /// Records sent before the measured run and waited for, so that consumer-group joins and
    /// bundle loading are not measured.
    pub warmup: usize,
    /// Records a second; 0 sends as fast as possible.
    pub rate: f64,
    /// Predictor instances run here (0: rely on predictors running elsewhere).
    pub predictors: usize,
    /// Most records a predictor scores in one batch, and how long a batch waits for more.
    pub max_batch: usize,
    pub linger: Duration,
    /// How long to wait for the last predictions.
    pub wait: Duration,
}

/// What the load test measured.
#[derive(Debug)]
pub struct LoadReport {
    pub summary: Summary,
    pub predictors: Vec<PredictorStats>,
    pub warmup: Duration,
}

impl LoadReport {
    pub fn text(&self) -> String {
        let mut s = self.summary.report();
        if !self.predictors.is_empty() {
            let batches: u64 = self.predictors.iter().map(|p| p.batches).sum();
            let scored: u64 = self.predictors.iter().map(|p| p.predicted).sum();
            s += &format!(
                "predictors here: {}, {} batches, {:.1} records a batch\n",
                self.predictors.len(),
                batches,
                scored as f64 / batches.max(1) as f64
            );
        }
        s
    }
}

/// Runs the load test.
pub async fn run(
    config: LoadConfig,
    shutdown: CancellationToken,
) -> Result<LoadReport, StreamError> {
    let (_broker, kafka) = kafka_or_embedded(config.brokers.as_deref(), config.partitions).await?;
    let init = InitConfig {
        data_dir: config.data_dir.clone(),
        fetch: Fetch::default(),
        store: config.store.clone(),
        search: SearchConfig {
            max_evals: 5,
            folds: 3,
            seed: 1,
            threads: crate::cli::default_threads(),
            progress: false,
        },
    };
    tokio::task::spawn_blocking(move || initialize::ensure_bundle(&init))
        .await?
        .map_err(|e| StreamError::Setup(e.to_string()))?;

    let services = shutdown.child_token();
    let predictors: Vec<_> = (0..config.predictors)
        .map(|i| {
            let mut p = PredictorConfig::new(kafka.clone());
            p.store = Some(config.store.clone());
            p.max_batch = config.max_batch;
            p.linger = config.linger;
            p.name = format!("predictor-{i}");
            tokio::spawn(predictor::run(p, services.clone()))
        })
        .collect();

    let input = Input::Uci(ensure_file(
        &config.data_dir,
        "adult.test",
        &Fetch::default(),
    )?);
    let producer_config = |records: usize, rate: f64| {
        let mut c = ProducerConfig::new(kafka.clone(), input.clone());
        c.limit = Some(records);
        c.rate = rate;
        c.wait = config.wait;
        c.show_per_sec = 0;
        c
    };
    let producer = kafka.producer()?;
    let started = Instant::now();
    if config.warmup > 0 {
        let w = producer::run_with(
            &producer,
            producer_config(config.warmup, 0.0),
            shutdown.clone(),
        )
        .await?;
        if !w.missing.is_empty() {
            services.cancel();
            return Err(StreamError::Setup(format!(
                "warm-up: {} of {} records got no prediction within {:?}",
                w.missing.len(),
                w.sent,
                config.wait
            )));
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
