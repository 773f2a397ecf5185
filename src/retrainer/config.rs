//! The retrainer's settings: where rows and bundles live, when to retrain, how a new version
//! becomes the champion.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::rowlog::Retention;
use crate::bundle::BundleStore;
use crate::data::Fetch;
use crate::defaults;
use crate::kafka::KafkaSettings;
use crate::lifecycle::gate::GateSettings;
use crate::lifecycle::triggers::Triggers;
use crate::model::Scoring;
use crate::telemetry::RetrainerMetrics;
use crate::tracking::Tracker;
use crate::train::SearchConfig;

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
    /// How the bundles it loads and trains score.
    pub scoring: Scoring,
    /// Where the labeled stream rows are kept.
    pub rows_file: PathBuf,
    /// Which of them are kept, and trained on.
    pub retention: Retention,
    /// Newest versions kept (beside those in use); older ones are retired: a tombstone on the
    /// registry, their local files removed.
    pub keep_versions: NonZeroUsize,
    /// Where the join of requests to labels keeps its state.
    pub join_file: PathBuf,
    /// How long a request waits for its label, and a label for its request.
    pub label_window: Duration,
    /// The rows trigger: retrain after this many new labeled rows.
    pub retrain_every: NonZeroUsize,
    /// The other triggers: time, feature drift, loss drift, and the minimum gap.
    pub triggers: Triggers,
    pub search: SearchConfig,
    pub promotion: Promotion,
    /// Train on shuffled labels: a deliberately bad challenger, for demos and tests.
    pub shuffle_labels: bool,
    /// Train where this share of women's `>50K` labels is turned to `<=50K`: a deliberately
    /// biased challenger, for demos and tests.
    pub biased_challenger: Option<f64>,
    pub max_batch: NonZeroUsize,
    pub linger: Duration,
    /// The registry publisher's Kafka transactional id: one retrainer publishes at a time, a
    /// newer one with the same id fences the older.
    pub transactional_id: String,
    /// Its Prometheus metrics (served by the caller, if at all), kept from its events.
    pub metrics: RetrainerMetrics,
    /// Its readiness probes (served by the caller, if at all): broker, registry, group.
    pub health: crate::util::health::Health,
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
            retention: Retention::default(),
            keep_versions: NonZeroUsize::new(defaults::KEEP_VERSIONS).expect("not 0"),
            join_file: store.models_dir().join(defaults::JOIN_FILE),
            label_window: defaults::LABEL_WINDOW,
            store,
            scoring: Scoring::default(),
            retrain_every: defaults::RETRAIN_EVERY,
            triggers: Triggers::default(),
            search: SearchConfig {
                nice: defaults::TRAIN_NICE,
                ..SearchConfig::with_budget(defaults::RETRAIN_MAX_EVALS)
            },
            promotion: Promotion::Gate(GateSettings::default()),
            shuffle_labels: false,
            biased_challenger: None,
            max_batch: defaults::MAX_BATCH,
            linger: defaults::RETRAINER_LINGER,
            transactional_id: crate::registry::publisher_id(&kafka.topics.models),
            metrics: RetrainerMetrics::default(),
            health: Default::default(),
            tracking: None,
            kafka,
        }
    }
}
