//! The retrainer: its own consumer group on `census.requests`. At start it takes over the model
//! registry on `census.models` (one retrainer publishes at a time) and caches its bundles
//! locally. It keeps every labeled row in a durable log ([`Retrainer::step`]; offsets are
//! committed only once the rows are fsynced), and every `retrain_every` new rows refits processor
//! and model on the base training rows plus all stream rows in a task of its own, while rows keep
//! being stored; the new version is stored and published in the registry.

mod registry_sync;
mod retrain;
mod rowlog;
mod step;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use rowlog::{RowLog, RowLogError, StoredRow};
pub use step::{Retrainer, StepReport};

use crate::bundle::{BundleError, BundleStore, Manifest};
use crate::data::{load_training_rows, Fetch};
use crate::defaults;
use crate::kafka::{BrokerError, InMessage, KafkaSettings};
use crate::registry::{read_registry, Publisher, RegistryError};
use crate::stream::worker::{self, Batching, Worker};
use crate::train::{SearchConfig, TrainError};
use retrain::{retrain, StreamRows, Trainer};

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
    /// The registry publisher's Kafka transactional id: one retrainer publishes at a time, a
    /// newer one with the same id fences the older.
    pub transactional_id: String,
}

impl RetrainerConfig {
    pub fn new(kafka: KafkaSettings, store: BundleStore) -> Self {
        RetrainerConfig {
            group: defaults::RETRAINER_GROUP.into(),
            data_dir: defaults::DATA_DIR.into(),
            fetch: Fetch::default(),
            rows_file: store.models_dir().join(defaults::ROWS_FILE),
            store,
            retrain_every: defaults::RETRAIN_EVERY,
            search: SearchConfig::with_budget(defaults::RETRAIN_MAX_EVALS),
            max_batch: defaults::MAX_BATCH,
            linger: defaults::RETRAINER_LINGER,
            transactional_id: format!("census-registry.{}", kafka.topics.models),
            kafka,
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
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("a worker thread failed")]
    Join(#[from] tokio::task::JoinError),
}

/// A retrain in progress.
struct Training {
    task: JoinHandle<Result<(RetrainEvent, Manifest), RetrainerError>>,
}

/// The retrainer as the worker loop runs it: keep rows, start a retrain when one is due and
/// none runs, and take in a finished one's result.
struct Service<F> {
    trainer: Arc<Trainer>,
    retrainer: Retrainer,
    /// The champion, parent of the next version.
    parent: Manifest,
    training: Option<Training>,
    /// Cancels every retrain when the service stops.
    stop_training: CancellationToken,
    stats: RetrainerStats,
    on_retrain: F,
}

impl<F: Fn(&RetrainEvent) + Send + Sync + 'static> Service<F> {
    /// Takes in the result of a retrain that finished.
    fn take_result(
        &mut self,
        result: Result<(RetrainEvent, Manifest), RetrainerError>,
    ) -> Result<(), RetrainerError> {
        match result {
            Ok((event, manifest)) => {
                (self.on_retrain)(&event);
                self.stats.versions.push(manifest.version);
                self.parent = manifest;
                Ok(())
            }
            Err(RetrainerError::Train(TrainError::Cancelled)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn start_retrain(&mut self) {
        let log = self.retrainer.log();
        let stream = StreamRows {
            rows: log.labeled().collect(),
            offsets: log.offsets(),
        };
        self.retrainer.trained_on_all();
        let task = tokio::spawn(retrain(
            self.trainer.clone(),
            stream,
            self.parent.clone(),
            self.stop_training.child_token(),
        ));
        self.training = Some(Training { task });
    }
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
        Ok(())
    }

    async fn after_commit(&mut self) -> Result<(), RetrainerError> {
        if self.training.is_none() && self.retrainer.retrain_due() {
            self.start_retrain();
        }
        Ok(())
    }

    /// A retrain finishing, taken in as soon as it does.
    async fn background(&mut self) -> Result<(), RetrainerError> {
        let Some(training) = self.training.as_mut() else {
            return std::future::pending().await;
        };
        // Awaiting a `&mut JoinHandle` is cancel-safe: a batch may win the race and this is
        // called again.
        let result = (&mut training.task).await;
        self.training = None;
        self.take_result(result?)?;
        // Rows that came during the retrain may already make the next one due.
        if self.retrainer.retrain_due() {
            self.start_retrain();
        }
        Ok(())
    }
}

/// Runs the retrainer until `shutdown`: takes over the registry (fencing any older retrainer),
/// brings the local cache up to it, then keeps rows and retrains. `on_retrain` is told of each
/// new version. On shutdown a retrain in progress is cancelled.
pub async fn run(
    config: RetrainerConfig,
    shutdown: CancellationToken,
    on_retrain: impl Fn(&RetrainEvent) + Send + Sync + 'static,
) -> Result<RetrainerStats, RetrainerError> {
    config.kafka.ensure_topics().await?;
    let publisher = Publisher::start(&config.kafka, &config.transactional_id).await?;
    let registry = read_registry(&config.kafka).await?;
    let champion = registry_sync::sync(&config.store, &registry, &publisher).await?;

    let (data_dir, fetch) = (config.data_dir.clone(), config.fetch.clone());
    let (base, base_sha256) =
        tokio::task::spawn_blocking(move || load_training_rows(&data_dir, &fetch)).await??;
    let rows_file = config.rows_file.clone();
    let log = tokio::task::spawn_blocking(move || RowLog::open(&rows_file)).await??;
    let retrainer = Retrainer::new(
        log,
        &champion.manifest.training_data.stream_offsets,
        config.retrain_every,
    );
    tracing::info!(
        "retrainer: {} labeled rows stored, champion v{} trained on {}; retraining every {}",
        retrainer.log().len(),
        champion.manifest.version,
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
    let stop_training = CancellationToken::new();
    let service = Service {
        trainer: Arc::new(Trainer {
            config,
            base: Arc::new(base),
            base_sha256,
            publisher,
            registry_highest: registry.highest().unwrap_or(0),
        }),
        retrainer,
        parent: champion.manifest,
        training: None,
        stop_training: stop_training.clone(),
        stats: RetrainerStats::default(),
        on_retrain,
    };
    let result = worker::run(&consumer, &batching, service, &shutdown).await;
    stop_training.cancel();
    let mut service = result?;
    if let Some(t) = service.training.take() {
        tracing::info!("retrainer: stopping the retrain in progress");
        let result = t.task.await?;
        service.take_result(result)?;
    }
    Ok(RetrainerStats {
        rows: service.retrainer.log().len(),
        ..service.stats
    })
}
