//! The retrainer: its own consumer group on `census.requests`. At start it takes over the model
//! registry on `census.models` (one retrainer publishes at a time) and caches its bundles
//! locally. It keeps every labeled row in a durable log ([`Retrainer::step`]; offsets are
//! committed only once the rows are fsynced), and every `retrain_every` new rows refits processor
//! and model on the base training rows plus all stream rows in a task of its own, while rows keep
//! being stored. With the gate ([`Promotion::Gate`], the default) a new version that passes an
//! offline check becomes the challenger; the gate then promotes or rejects it on the paired log
//! losses of the labeled rows that follow, and after a promotion it keeps the former champion on
//! probation and rolls back to it if it proves better.

mod gating;
mod observed;
mod offline;
mod registry_sync;
mod retrain;
mod rowlog;
mod service;
mod step;
mod tracked;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio_util::sync::CancellationToken;

pub use rowlog::{RowLog, RowLogError, StoredRow};
pub use step::{Retrainer, StepReport};

use crate::bundle::{BundleError, BundleStore, Manifest};
use crate::data::{load_adult, Fetch};
use crate::defaults;
use crate::gate::GateSettings;
use crate::kafka::{BrokerError, KafkaSettings};
use crate::registry::{read_registry, Evidence, Publisher, RegistryError};
use crate::stream::worker::{self, Batching, Guarantee};
use crate::telemetry::RetrainerMetrics;
use crate::tracking::Tracker;
use crate::train::SearchConfig;
use crate::triggers::{Fired, Triggers};
use retrain::Trainer;
use service::Service;

/// How a new version becomes the champion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Promotion {
    /// Every retrain becomes the champion at once.
    Always,
    /// Through the offline check and the sequential gate.
    Gate(GateSettings),
}

#[derive(Debug, Clone)]
pub struct RetrainerConfig {
    pub kafka: KafkaSettings,
    pub group: String,
    /// A stable name for this instance in the group (`group.instance.id`): a static member,
    /// which takes its partitions back at once when restarted. None: a dynamic member.
    pub instance_id: Option<String>,
    /// Folder with adult.data (the base training rows) and adult.test (the offline check).
    pub data_dir: PathBuf,
    pub fetch: Fetch,
    pub store: BundleStore,
    /// Where the labeled stream rows are kept.
    pub rows_file: PathBuf,
    /// The rows trigger: retrain after this many new labeled rows.
    pub retrain_every: NonZeroUsize,
    /// The other triggers: time, feature drift, loss drift, and the minimum gap.
    pub triggers: Triggers,
    pub search: SearchConfig,
    pub promotion: Promotion,
    /// Train on shuffled labels: a deliberately bad challenger, for demos and tests.
    pub shuffle_labels: bool,
    pub max_batch: NonZeroUsize,
    pub linger: Duration,
    /// The registry publisher's Kafka transactional id: one retrainer publishes at a time, a
    /// newer one with the same id fences the older.
    pub transactional_id: String,
    /// Its Prometheus metrics (served by the caller, if at all), kept from its events.
    pub metrics: RetrainerMetrics,
    /// Where to log each retrain and the gate's decisions, if anywhere (MLflow).
    pub tracking: Option<Tracker>,
}

impl RetrainerConfig {
    pub fn new(kafka: KafkaSettings, store: BundleStore) -> Self {
        RetrainerConfig {
            group: defaults::RETRAINER_GROUP.into(),
            instance_id: None,
            data_dir: defaults::DATA_DIR.into(),
            fetch: Fetch::default(),
            rows_file: store.models_dir().join(defaults::ROWS_FILE),
            store,
            retrain_every: defaults::RETRAIN_EVERY,
            triggers: Triggers::default(),
            search: SearchConfig::with_budget(defaults::RETRAIN_MAX_EVALS),
            promotion: Promotion::Gate(GateSettings::default()),
            shuffle_labels: false,
            max_batch: defaults::MAX_BATCH,
            linger: defaults::RETRAINER_LINGER,
            transactional_id: crate::registry::publisher_id(&kafka.topics.models),
            metrics: RetrainerMetrics::default(),
            tracking: None,
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
    /// The gate's decisions, in words.
    pub decisions: Vec<String>,
}

/// One retrain, as seen by the logs and the demo.
#[derive(Debug, Clone)]
pub struct RetrainEvent {
    pub version: u32,
    pub rows: usize,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub cv_log_loss: f64,
    /// "champion", "challenger", or why it was rejected offline.
    pub outcome: String,
    /// What started it.
    pub trigger: Fired,
    /// The new version's manifest.
    pub manifest: Arc<Manifest>,
    /// The CV log loss of each evaluation of its search, in the order they finished.
    pub log_losses: Vec<f64>,
}

impl RetrainEvent {
    /// The outcome in one word: `champion`, `challenger`, `rejected_offline`, or `refused`
    /// (too large for the registry: neither published nor stored).
    pub fn outcome_kind(&self) -> &'static str {
        match self.outcome.as_str() {
            "champion" => "champion",
            "challenger" => "challenger",
            o if o.contains("refused") => "refused",
            _ => "rejected_offline",
        }
    }
}

/// The gate's progress or decision.
#[derive(Debug, Clone)]
pub struct GateEvent {
    pub challenger: u32,
    pub champion: u32,
    /// The challenger is the former champion, on probation.
    pub probation: bool,
    pub evidence: Evidence,
    /// The decision, in words, when one was made.
    pub decision: Option<String>,
}

impl GateEvent {
    /// The decision in one word, when one was made: `promoted`, `rejected`, `rolled_back`, or
    /// `kept` (the champion passed its probation).
    pub fn decision_kind(&self) -> Option<&'static str> {
        let words = self.decision.as_deref()?;
        Some(if words.contains("rolled back") {
            "rolled_back"
        } else if words.contains("promoted") {
            "promoted"
        } else if words.contains("rejected") {
            "rejected"
        } else {
            "kept"
        })
    }
}

/// What the retrainer tells its caller as it happens.
#[derive(Debug, Clone)]
pub enum Event {
    Retrained(RetrainEvent),
    Gate(GateEvent),
    /// A drift trigger fired (its retrain starts when no retrain or gate runs).
    Drift(Fired),
    /// Each feature's PSI over the window of requests just ended, against the champion's
    /// training data (with the feature-drift trigger on).
    FeatureDrift {
        psi: Vec<(String, f64)>,
        rows: u64,
    },
}

#[cfg(test)]
impl Event {
    /// A retrain of version `version` with outcome `outcome` and made-up figures, for unit tests.
    pub(crate) fn retrained_example(version: u32, outcome: &str) -> Self {
        Event::Retrained(RetrainEvent {
            version,
            rows: 1000,
            started_at_ms: 10_000,
            finished_at_ms: 12_500,
            cv_log_loss: 0.29,
            outcome: outcome.into(),
            trigger: Fired {
                kind: "rows".into(),
                figures: "1000 new labeled rows".into(),
            },
            manifest: Arc::new(crate::bundle::Manifest::example(version)),
            log_losses: vec![0.31, 0.29, 0.30],
        })
    }

    /// The gate's progress (`decision` `None`) or decision on `n` labels, for unit tests.
    pub(crate) fn gate_example(
        challenger: u32,
        champion: u32,
        probation: bool,
        n: u64,
        decision: Option<&str>,
    ) -> Self {
        Event::Gate(GateEvent {
            challenger,
            champion,
            probation,
            evidence: crate::registry::Evidence {
                n,
                mean_d: -0.05,
                interval: [-0.1, -0.01],
                statistic: 3.2,
                alpha: 0.05,
                delta: 0.01,
            },
            decision: decision.map(str::to_owned),
        })
    }
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

/// Runs the retrainer until `shutdown`: takes over the registry (fencing any older retrainer),
/// brings the local cache up to it, then keeps rows, retrains and gates. `on_event` is told of
/// each new version and of the gate's progress and decisions. On shutdown a retrain in progress
/// is cancelled.
pub async fn run(
    config: RetrainerConfig,
    shutdown: CancellationToken,
    on_event: impl Fn(&Event) + Send + Sync + 'static,
) -> Result<RetrainerStats, RetrainerError> {
    let metrics = config.metrics.clone();
    let tracking = config.tracking.clone().map(|t| (t, config.store.clone()));
    let on_event = move |e: &Event| {
        observed::observe(&metrics, e);
        if let Some((tracker, store)) = &tracking {
            tracked::track(tracker, store, e);
        }
        on_event(e)
    };
    config.kafka.ensure_topics().await?;
    let publisher = Publisher::start(&config.kafka, &config.transactional_id).await?;
    let registry = read_registry(&config.kafka).await?;
    let champion = registry_sync::sync(&config.store, &registry, &publisher).await?;

    let (data_dir, fetch) = (config.data_dir.clone(), config.fetch.clone());
    let adult = tokio::task::spawn_blocking(move || load_adult(&data_dir, &fetch)).await??;
    let rows_file = config.rows_file.clone();
    let log = tokio::task::spawn_blocking(move || RowLog::open(&rows_file)).await??;
    // New rows are counted from the cut-off of the newest version, not the champion's: a
    // version that was rejected, or rolled back from, has used the rows before its cut-off.
    let newest = registry
        .highest()
        .filter(|&h| h != champion.manifest.version);
    let store = config.store.clone();
    let cutoff = match newest {
        Some(h) => tokio::task::spawn_blocking(move || store.read_files(h))
            .await?
            .map(|f| f.manifest.training_data.stream_offsets)
            .unwrap_or_else(|_| champion.manifest.training_data.stream_offsets.clone()),
        None => champion.manifest.training_data.stream_offsets.clone(),
    };
    let retrainer = Retrainer::new(log, &cutoff, config.retrain_every);
    tracing::info!(
        "retrainer: {} labeled rows stored, champion v{} trained on {}; retraining every {}",
        retrainer.log().len(),
        champion.manifest.version,
        retrainer.trained_rows(),
        config.retrain_every
    );

    let consumer: Arc<StreamConsumer> = Arc::new(
        config
            .kafka
            .member(&config.group, config.instance_id.as_deref())?,
    );
    consumer
        .subscribe(&[&config.kafka.topics.requests])
        .map_err(BrokerError::from)?;
    let lag_stop = shutdown.child_token();
    crate::telemetry::watch_lag(
        &consumer,
        config.metrics.consumer_lag.clone(),
        lag_stop.clone(),
    );
    let batching = Batching {
        name: "retrainer".into(),
        max_batch: config.max_batch,
        linger: config.linger,
        // Its rows are durable once a step returns: nothing to wait for between batches.
        in_flight: std::num::NonZeroUsize::MIN,
    };
    let stop_training = CancellationToken::new();
    let trainer = Arc::new(Trainer {
        registry_highest: registry.highest().unwrap_or(0),
        config,
        base: Arc::new(adult.train),
        base_sha256: adult.train_sha256,
        test: Arc::new(adult.test),
        publisher,
    });
    let mut service = Service::start(
        trainer,
        retrainer,
        champion,
        &registry,
        stop_training.clone(),
        on_event,
    )
    .await?;
    service.apply_gate().await?;
    let result = worker::run(
        &consumer,
        &batching,
        &Guarantee::AtLeastOnce,
        service,
        &shutdown,
    )
    .await;
    stop_training.cancel();
    lag_stop.cancel();
    result?.stop().await
}
