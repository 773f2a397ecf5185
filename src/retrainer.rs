//! The retrainer: its own consumer group on `census.requests`. It keeps every labeled row in a
//! durable log (offsets are committed only once the rows are fsynced), and every
//! `retrain_every` new rows refits processor and model on the base training rows plus all stream
//! rows, stores the next bundle version, and announces it on `census.models`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

use crate::bundle::{BundleFiles, BundleStore, Manifest, TrainingData};
use crate::data::{ensure_file, parse_label, read_labeled, Fetch, LabeledRow};
use crate::stream::batch::next_batch;
use crate::stream::decode::decode_request;
use crate::stream::kafka::{next_offsets, InMessage};
use crate::stream::models::publish;
use crate::stream::rowlog::{RowLog, StoredRow};
use crate::stream::{KafkaSettings, StreamError};
use crate::train::{fit, SearchConfig};

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
    pub retrain_every: usize,
    pub search: SearchConfig,
    pub max_batch: usize,
    pub linger: Duration,
}

impl RetrainerConfig {
    pub fn new(kafka: KafkaSettings, store: BundleStore) -> Self {
        RetrainerConfig {
            kafka,
            group: crate::cli::RETRAINER_GROUP.into(),
            data_dir: "data".into(),
            fetch: Fetch::default(),
            rows_file: store.models_dir().join("stream_rows.jsonl"),
            store,
            retrain_every: 1000,
            search: SearchConfig {
                max_evals: 10,
                folds: 3,
                seed: 1,
                threads: crate::cli::default_threads(),
                progress: false,
            },
            max_batch: 1024,
            linger: Duration::from_millis(20),
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

/// Runs the retrainer until `shutdown`. `on_retrain` is told of each new version.
pub async fn run(
    config: RetrainerConfig,
    shutdown: CancellationToken,
    on_retrain: impl Fn(&RetrainEvent) + Send,
) -> Result<RetrainerStats, StreamError> {
    let base_path = ensure_file(&config.data_dir, "adult.data", &config.fetch)?;
    let base_bytes = std::fs::read(&base_path)
        .map_err(|e| StreamError::Io(base_path.display().to_string(), e))?;
    let base_sha256 = crate::atomic::sha256_hex(&base_bytes);
    let base = Arc::new(tokio::task::spawn_blocking(move || read_labeled(&base_path)).await??);
    let mut log = RowLog::open(&config.rows_file)
        .map_err(|e| StreamError::Io(config.rows_file.display().to_string(), e))?;
    let producer = config.kafka.model_producer()?;

    // Announce the bundle in use, so that predictors elsewhere need only the broker.
    let store = config.store.clone();
    let current = tokio::task::spawn_blocking(move || -> Result<_, StreamError> {
        match store.current()? {
            Some(v) => Ok(Some(store.read_files(v)?)),
            None => Ok(None),
        }
    })
    .await??;
    let Some(current) = current else {
        return Err(StreamError::Setup(format!(
            "no bundle in {}: run `initialize` first",
            config.store.models_dir().display()
        )));
    };
    current.load()?;
    publish(&producer, &config.kafka.topics.models, &current).await?;
    // A log that was reset (a new broker, a new rows file) restarts the count from zero.
    let mut trained_rows = current.manifest.training_data.stream_rows.min(log.len());
    let mut parent = current.manifest;
    tracing::info!(
        "retrainer: {} labeled rows stored, v{} trained on {trained_rows}; retraining every {}",
        log.len(),
        parent.version,
        config.retrain_every
    );

    let consumer: StreamConsumer = config.kafka.consumer(&config.group)?;
    consumer.subscribe(&[&config.kafka.topics.requests])?;
    let mut stats = RetrainerStats::default();
    while let Some(batch) = next_batch(&consumer, config.max_batch, config.linger, &shutdown).await
    {
        let (rows, skipped) = labeled_rows(&batch);
        stats.skipped += skipped;
        log.append(rows)
            .map_err(|e| StreamError::Io(log.path().display().to_string(), e))?;
        // The rows are durable: their offsets may be committed.
        consumer.store_offsets(&next_offsets(&batch)?)?;
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
            tracing::debug!("retrainer: commit: {e}");
        }
        if log.len() >= trained_rows + config.retrain_every {
            let event = retrain(&config, &base, &base_sha256, &log, &parent, &producer).await?;
            on_retrain(&event.0);
            trained_rows = log.len();
            stats.versions.push(event.1.version);
            parent = event.1;
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!("retrainer: final commit: {e}");
    }
    stats.rows = log.len();
    Ok(stats)
}

/// The labeled, valid rows of a batch, and how many records were skipped.
fn labeled_rows(batch: &[InMessage]) -> (Vec<StoredRow>, u64) {
    let mut skipped = 0;
    let rows = batch
        .iter()
        .filter_map(|m| {
            let request = decode_request(m.payload.as_deref()).ok();
            let label = request
                .as_ref()
                .and_then(|r| r.income_bracket.as_deref())
                .and_then(parse_label);
            match (request, label) {
                (Some(r), Some(label)) => Some(StoredRow {
                    topic: m.topic.clone(),
                    partition: m.partition,
                    offset: m.offset,
                    label,
                    row: r.record,
                }),
                _ => {
                    skipped += 1;
                    None
                }
            }
        })
        .collect();
    (rows, skipped)
}

async fn retrain(
    config: &RetrainerConfig,
    base: &Arc<Vec<LabeledRow>>,
    base_sha256: &str,
    log: &RowLog,
    parent: &Manifest,
    producer: &FutureProducer,
) -> Result<(RetrainEvent, Manifest), StreamError> {
    let started = Instant::now();
    let started_at_ms = crate::stream::messages::now_ms();
    let stream_rows = log.len();
    tracing::info!(
        "retrainer: retraining v{} on {} base + {stream_rows} stream rows ({} evaluations)",
        parent.version + 1,
        base.len(),
        config.search.max_evals
    );
    let mut rows: Vec<LabeledRow> = Vec::with_capacity(base.len() + stream_rows);
    rows.extend(base.iter().cloned());
    rows.extend(log.labeled());
    let search = config.search.clone();
    let trained = tokio::task::spawn_blocking(move || fit(&rows, None, &search)).await??;
    // No test metrics: the stream replays adult.test, so a test-set score would be contaminated.
    let files = trained.into_files(
        &config.search,
        Some(parent.version),
        TrainingData {
            base_file: "adult.data".into(),
            base_sha256: base_sha256.to_owned(),
            base_rows: base.len(),
            stream_rows,
            stream_offsets: log.offsets(),
        },
    );
    let store = config.store.clone();
    let (files, manifest) = tokio::task::spawn_blocking(move || {
        let manifest = store.save(files.clone(), true)?;
        Ok::<_, StreamError>((
            BundleFiles {
                manifest: manifest.clone(),
                ..files
            },
            manifest,
        ))
    })
    .await??;
    publish(producer, &config.kafka.topics.models, &files).await?;
    let event = RetrainEvent {
        version: manifest.version,
        rows: stream_rows,
        started_at_ms,
        finished_at_ms: crate::stream::messages::now_ms(),
        cv_log_loss: manifest.cv.log_loss,
    };
    tracing::info!(
        "retrainer: v{} stored and announced (CV log loss {:.5}) in {:.1} s",
        manifest.version,
        manifest.cv.log_loss,
        started.elapsed().as_secs_f64()
    );
    Ok((event, manifest))
}
