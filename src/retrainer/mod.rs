//! The retrainer: its own consumer group on `census.requests`. It keeps every labeled row in a
//! durable log ([`Retrainer::step`]; offsets are committed only once the rows are fsynced), and
//! every `retrain_every` new rows refits processor and model on the base training rows plus all
//! stream rows, stores the next bundle version, and announces it on `census.models`.

mod retrain;
mod rowlog;
mod step;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

pub use rowlog::{RowLog, RowLogError, StoredRow};
pub use step::{Retrainer, StepReport};

use crate::bundle::{BundleError, BundleStore, Manifest};
use crate::data::{load_training_rows, Fetch};
use crate::defaults;
use crate::kafka::{BrokerError, InMessage, KafkaSettings};
use crate::stream::models::{publish, PublishError};
use crate::stream::worker::{self, Batching, Worker};
use crate::train::SearchConfig;
use retrain::{retrain, Base};

#[derive(Debug, Clone)]
pub struct RetrainerConfig {
    pub kafka: KafkaSettings,
    pub group: String,
    /// Folder with adult.data, the base training rows.
    pub data_dir: PathBuf,
    pub fetch: Fetch,
    pub store: BundleStore,
    /// Where the labeled stream rows are kept.
    pub rows_file: PathBuf,
    pub retrain_every: NonZeroUsize,
    pub search: SearchConfig,
    pub max_batch: NonZeroUsize,
    pub linger: Duration,
}

impl RetrainerConfig {
    pub fn new(kafka: KafkaSettings, store: BundleStore) -> Self {
        RetrainerConfig {
            kafka,
            group: defaults::RETRAINER_GROUP.into(),
            data_dir: defaults::DATA_DIR.into(),
            fetch: Fetch::default(),
            rows_file: store.models_dir().join(defaults::ROWS_FILE),
            store,
            retrain_every: defaults::RETRAIN_EVERY,
            search: SearchConfig::with_budget(defaults::RETRAIN_MAX_EVALS),
            max_batch: defaults::MAX_BATCH,
            linger: defaults::RETRAINER_LINGER,
        }
    }
}

/// What a retrainer did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetrainerStats {
    /// Labeled rows in the log when it stopped.
    pub rows: usize,
    /// Records skipped: unlabeled or invalid (the predictor dead-letters the invalid ones).
    pub skipped: u64,
    /// Versions it made.
    pub versions: Vec<u32>,
}

/// One retrain, as seen by the logs and the demo.
#[derive(Debug, Clone)]
pub struct RetrainEvent {
    pub version: u32,
    pub rows: usize,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub cv_log_loss: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RetrainerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("retraining failed")]
    Train(#[from] crate::train::TrainError),
    #[error("the rows file")]
    Rows(#[from] RowLogError),
    #[error("publishing a bundle failed")]
    Publish(#[from] PublishError),
    #[error("a worker thread failed")]
    Join(#[from] tokio::task::JoinError),
}

/// The retrainer as the worker loop runs it: keep rows, then retrain when due.
struct Service<F> {
    config: RetrainerConfig,
    retrainer: Retrainer,
    base: Base,
    /// The version in use, parent of the next.
    parent: Manifest,
    producer: FutureProducer,
    due: bool,
    stats: RetrainerStats,
    on_retrain: F,
}

impl<F: Fn(&RetrainEvent) + Send + Sync + 'static> Worker for Service<F> {
    type Output = StepReport;
    type Error = RetrainerError;

    fn step(&mut self, batch: &[InMessage]) -> Result<StepReport, RetrainerError> {
        Ok(self.retrainer.step(batch)?)
    }

    /// Nothing to send: the rows are durable once the step returns.
    async fn deliver(&mut self, report: StepReport) -> Result<(), RetrainerError> {
        self.stats.skipped += report.skipped as u64;
        self.due = report.retrain_due;
        Ok(())
    }

    async fn after_commit(&mut self) -> Result<(), RetrainerError> {
        if !std::mem::take(&mut self.due) {
            return Ok(());
        }
        let (event, manifest) = retrain(
            &self.config,
            &self.base,
            self.retrainer.log(),
            &self.parent,
            &self.producer,
        )
        .await?;
        (self.on_retrain)(&event);
        self.retrainer.trained_on_all();
        self.stats.versions.push(manifest.version);
        self.parent = manifest;
        Ok(())
    }
}

/// Runs the retrainer until `shutdown`. `on_retrain` is told of each new version.
pub async fn run(
    config: RetrainerConfig,
    shutdown: CancellationToken,
    on_retrain: impl Fn(&RetrainEvent) + Send + Sync + 'static,
) -> Result<RetrainerStats, RetrainerError> {
    config.kafka.ensure_topics().await?;
    let (data_dir, fetch) = (config.data_dir.clone(), config.fetch.clone());
    let (rows, sha256) =
        tokio::task::spawn_blocking(move || load_training_rows(&data_dir, &fetch)).await??;
    let base = Base {
        rows: Arc::new(rows),
        sha256,
    };
    let rows_file = config.rows_file.clone();
    let log = tokio::task::spawn_blocking(move || RowLog::open(&rows_file)).await??;
    let producer = config.kafka.model_producer()?;

    // Announce the bundle in use, so that predictors elsewhere need only the broker.
    let store = config.store.clone();
    let current = tokio::task::spawn_blocking(move || {
        let files = store.read_files(store.current_version()?)?;
        files.load()?;
        Ok::<_, BundleError>(files)
    })
    .await??;
    publish(&producer, &config.kafka.topics.models, &current).await?;
    let retrainer = Retrainer::new(
        log,
        current.manifest.training_data.stream_rows,
        config.retrain_every,
    );
    tracing::info!(
        "retrainer: {} labeled rows stored, v{} trained on {}; retraining every {}",
        retrainer.log().len(),
        current.manifest.version,
        retrainer.trained_rows(),
        config.retrain_every
    );

    let consumer: Arc<StreamConsumer> = Arc::new(config.kafka.consumer(&config.group)?);
    consumer
        .subscribe(&[&config.kafka.topics.requests])
        .map_err(BrokerError::from)?;
    let batching = Batching {
        name: "retrainer".into(),
        max_batch: config.max_batch,
        linger: config.linger,
    };
    let service = Service {
        config,
        retrainer,
        base,
        parent: current.manifest,
        producer,
        due: false,
        stats: RetrainerStats::default(),
        on_retrain,
    };
    let service = worker::run(&consumer, &batching, service, &shutdown).await?;
    Ok(RetrainerStats {
        rows: service.retrainer.log().len(),
        ..service.stats
    })
}
