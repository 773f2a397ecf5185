//! Every default in one place: the flags show them, the library's configs start from them, and
//! docker-compose.yml is checked against them.

use std::num::NonZeroUsize;
use std::time::Duration;

const fn nz(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(n) => n,
        None => panic!("a default count is never zero"),
    }
}

/// Kafka bootstrap servers when neither `--brokers` nor `KAFKA_BROKERS` is given.
pub const BROKERS: &str = "localhost:9092";
/// Partitions of `census.requests` and `census.predictions` when a component creates them.
pub const PARTITIONS: i32 = 6;
/// Replicas of each topic a component creates, at most: `min(this, brokers in the cluster)`.
pub const MAX_REPLICATION_FACTOR: i32 = 3;
/// `min.insync.replicas` of a topic created with at least this many replicas: an
/// acknowledged record is then on two brokers, and one broker may be lost without refusing
/// writes. A topic with fewer replicas gets 1.
pub const MIN_INSYNC_REPLICAS: i32 = 2;
pub const REQUESTS_TOPIC: &str = "census.requests";
pub const PREDICTIONS_TOPIC: &str = "census.predictions";
pub const DLQ_TOPIC: &str = "census.dlq";
/// Labels that come apart from their requests (keyed by `request_id`).
pub const LABELS_TOPIC: &str = "census.labels";
pub const MODELS_TOPIC: &str = "census.models";
/// Consumer group of the predictors.
pub const PREDICTOR_GROUP: &str = "census-predictor";
/// Where the dashboard serves its page.
pub const DASHBOARD_ADDR: &str = "127.0.0.1:8080";
/// Consumer group of the retrainer.
pub const RETRAINER_GROUP: &str = "census-retrainer";

/// Folder of model files, manifests and `CURRENT`, relative to the working directory.
pub const MODELS_DIR: &str = "models";
/// Folder of feature processor files, relative to the working directory.
pub const PROCESSORS_DIR: &str = "dataprocessors";
/// Folder of the Adult data files, relative to the working directory.
pub const DATA_DIR: &str = "data";
/// The retrainer's rows file, in the models folder unless given.
pub const ROWS_FILE: &str = "stream_rows.jsonl";
/// The join's journal (requests waiting for labels, labels waiting for requests), beside it.
pub const JOIN_FILE: &str = "label_join.jsonl";
/// How long a request waits for its label (and a label for its request) before it expires.
pub const LABEL_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Most records a service handles in one batch.
pub const MAX_BATCH: NonZeroUsize = nz(1024);
/// How long a predictor's batch waits for more records after its first: none, batches still
/// grow under load while the previous batch is scored and sent.
pub const PREDICTOR_LINGER: Duration = Duration::ZERO;
/// Batches a predictor has in flight (read, not yet committed) in at-least-once mode: the next
/// ones are read, scored and sent while the broker acknowledges the last ones.
pub const PREDICTOR_IN_FLIGHT: NonZeroUsize = nz(4);
/// The retrainer's linger: it is not latency-bound, and fewer fsyncs are cheaper.
pub const RETRAINER_LINGER: Duration = Duration::from_millis(20);

/// How long a group member that stopped heartbeating keeps its partitions: a dead predictor
/// that is not restarted is replaced within about this long (plus a rebalance). Kafka's own
/// default is 45 s; the broker's minimum is 6 s.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a service may take to stop after SIGTERM before it exits anyway.
pub const SHUTDOWN: Duration = Duration::from_secs(10);
/// How often a group member heartbeats (a third of the session timeout or less).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long the broker lets a transaction stay open before it aborts it. A predictor in
/// exactly-once mode killed mid-transaction and not restarted holds back `read_committed`
/// readers of its output partitions, and the next owner of its input partitions, this long. A
/// batch's transaction takes milliseconds; the same bound as the session timeout.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each call of a predictor's transaction (begin, offsets, commit, abort) waits before
/// the transaction is given up, its producer renewed and its batch read again: half the
/// transaction's timeout, so that a lost coordinator costs seconds, not the whole timeout.
pub const TRANSACTION_STEP: Duration =
    Duration::from_millis(TRANSACTION_TIMEOUT.as_millis() as u64 / 2);

/// Labeled rows between two retrains.
pub const RETRAIN_EVERY: NonZeroUsize = nz(1000);
/// Stream rows the retrainer keeps and trains on (beside adult.data's): the newest this many.
pub const ROWS_KEEP: usize = 100_000;
/// Versions the retrainer keeps beside the champion, the challenger, the previous champion and
/// a pinned one: the newest this many. Older ones are retired.
pub const KEEP_VERSIONS: usize = 10;
/// The nice value of the retrainer's training threads: predictors on the same host keep their
/// cores while a retrain runs.
pub const TRAIN_NICE: i32 = 10;
/// The nice value of the retrainer's scheduling group (its session's, when it has one of its
/// own): the lowest, so that services of other sessions keep their cores while it trains.
pub const SESSION_NICE: i32 = 19;
/// How often the retrainer looks again at who shares its session.
pub const SESSION_CHECK: Duration = Duration::from_secs(10);
/// How far back the dashboard reads the stream's topics at start.
pub const DASHBOARD_SINCE: Duration = Duration::from_secs(60 * 60);
/// Hyperparameter evaluations of `initialize` and of a retrain.
pub const INIT_MAX_EVALS: NonZeroUsize = nz(50);
pub const RETRAIN_MAX_EVALS: NonZeroUsize = nz(10);
/// Cross-validation folds and the seed of folds, search and LightGBM.
pub const FOLDS: usize = 3;
pub const SEED: u64 = 1;

/// The producer's pace and patience.
pub const PRODUCER_RATE: f64 = 100.0;
pub const PRODUCER_WAIT: Duration = Duration::from_secs(30);
pub const SHOW_PER_SEC: u32 = 20;
/// The producer's longest input line, in bytes: a request made of one still fits Kafka's default
/// `max.message.bytes` (1 MiB) with the id and send time the producer adds.
pub const PRODUCER_MAX_LINE_BYTES: NonZeroUsize = nz(1_000_000);
/// How often the producer's status line is redrawn on a terminal, and written as a plain line
/// elsewhere.
pub const STATUS_REDRAW: Duration = Duration::from_millis(250);
pub const STATUS_LINE_EVERY: Duration = Duration::from_secs(5);

/// The gate between a challenger and the champion (`lifecycle::gate`).
pub mod gate {
    /// Error rate of each decision, however often the gate looks.
    pub const ALPHA: f64 = 0.05;
    /// The margin: promote only a challenger better by more than this mean log loss.
    pub const DELTA: f64 = 0.01;
    /// Labeled requests before any decision.
    pub const MIN_LABELS: u64 = 200;
    /// Labeled requests after which an undecided challenger is rejected.
    pub const MAX_LABELS: u64 = 10_000;
    /// Requests per batch mean.
    pub const BATCH: u64 = 20;
    /// Batches at which the interval is tightest (the mixture's m₀).
    pub const TUNED_BATCHES: f64 = 50.0;
    /// The fairness margin ε: five points of a true- or false-positive rate, about half of the
    /// true-positive gap between the sexes `initialize`'s model has on adult.test (0.091); a
    /// model trained where 30 % of women's `>50K` labels were turned widens it by 0.19 while
    /// its log loss stays within the gate's δ.
    pub const FAIRNESS_DELTA: f64 = 0.05;
}

/// The retrain triggers besides the count of new rows (`lifecycle::triggers`).
pub mod triggers {
    use super::{nz, Duration, NonZeroUsize};
    /// The time trigger's period: off.
    pub const EVERY: Option<Duration> = None;
    /// New labeled rows the time and drift triggers wait for.
    pub const MIN_ROWS: usize = 100;
    /// The feature-drift trigger's PSI threshold, and its window of requests.
    pub const PSI: Option<f64> = Some(0.25);
    pub const PSI_WINDOW: NonZeroUsize = nz(2000);
    /// The loss-drift trigger is on (with the Page-Hinkley settings of [`super::loss_drift`]).
    pub const LOSS_DRIFT: bool = true;
    /// No retrain starts sooner than this after the last one started.
    pub const MIN_GAP: Duration = Duration::from_secs(5);
}

/// The Page-Hinkley test of the loss-drift trigger. Per-row log losses of a good model on this
/// data have a mean near 0.28 and a standard deviation near 0.45: with δ = 0.05 and λ = 100 a
/// steady stream practically never alarms (the chance that a walk with drift −0.05 and step
/// deviation 0.45 ever climbs 100 is about e^(−2·0.05·100/0.45²) ≈ 1e-22), while flipped labels
/// (losses near 2) alarm within about 60 rows.
pub mod loss_drift {
    /// The tolerated rise per observation.
    pub const DELTA: f64 = 0.05;
    /// The alarm threshold on the cumulative rise.
    pub const LAMBDA: f64 = 100.0;
    /// Observations before an alarm may sound.
    pub const MIN_N: u64 = 100;
}

/// The demo: rows of adult.test streamed, their rate, its retrain cadence and budget.
pub mod demo {
    use super::{nz, NonZeroUsize};
    pub const ROWS: usize = 6000;
    /// v1 is trained on this many rows of adult.data: a weak champion the gate can replace.
    pub const BOOTSTRAP_ROWS: usize = 1000;
    pub const RATE: f64 = 500.0;
    pub const RETRAIN_EVERY: NonZeroUsize = nz(2000);
    pub const MAX_EVALS: NonZeroUsize = nz(5);
    /// How long the demo's producer waits for the last predictions.
    pub const WAIT: std::time::Duration = std::time::Duration::from_secs(60);
    /// Prediction lines shown a second.
    pub const SHOW_PER_SEC: u32 = 4;
    /// Labels come apart from the requests, this long after them on average...
    pub const LABEL_DELAY: std::time::Duration = std::time::Duration::from_secs(2);
    /// ...for this share of them.
    pub const LABEL_FRACTION: f64 = 0.8;
}

/// The load test.
pub mod loadtest {
    use super::{nz, NonZeroUsize};
    pub const RECORDS: usize = 100_000;
    pub const WARMUP: usize = 1000;
    /// Records a second: 0, as fast as possible.
    pub const RATE: f64 = 0.0;
    pub const PREDICTORS: usize = 1;
    pub const WAIT_SECS: u64 = 60;
    /// Budget of the bootstrap `initialize` when there is no bundle yet.
    pub const MAX_EVALS: NonZeroUsize = nz(5);
}

/// MLflow tracking: the experiment of the runs, the registered model of the versions, and how
/// long a process about to exit waits for the tracking server to take what is left.
pub const MLFLOW_EXPERIMENT: &str = "census-stream";
pub const MLFLOW_MODEL: &str = "census-income";
pub const MLFLOW_WAIT_SECS: u64 = 10;

/// The machine's core count, the default number of worker threads.
pub fn threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(nz(1))
}

/// A scenario's drift reaches its strength at this row.
pub const SCENARIO_RAMP_ROWS: usize = 10_000;
