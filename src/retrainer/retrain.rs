//! One retrain: processor and model refitted on the base training rows plus every stored
//! stream row, stored as the next bundle version and announced on `census.models`.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::producer::FutureProducer;

use super::rowlog::RowLog;
use super::{RetrainEvent, RetrainerConfig, RetrainerError};
use crate::bundle::{BundleFiles, Manifest, TrainingData};
use crate::bundling::bundle_files;
use crate::data::LabeledRow;
use crate::stream::messages::now_ms;
use crate::stream::models::publish;
use crate::train::fit;

/// The base training rows (adult.data) and the file's sha256.
pub struct Base {
    pub rows: Arc<Vec<LabeledRow>>,
    pub sha256: String,
}

/// Trains, stores and publishes the version after `parent`.
pub async fn retrain(
    config: &RetrainerConfig,
    base: &Base,
    log: &RowLog,
    parent: &Manifest,
    producer: &FutureProducer,
) -> Result<(RetrainEvent, Manifest), RetrainerError> {
    let started = Instant::now();
    let started_at_ms = now_ms();
    let stream_rows = log.len();
    tracing::info!(
        "retrainer: retraining v{} on {} base + {stream_rows} stream rows ({} evaluations)",
        parent.version + 1,
        base.rows.len(),
        config.search.max_evals
    );
    let mut rows: Vec<LabeledRow> = Vec::with_capacity(base.rows.len() + stream_rows);
    rows.extend(base.rows.iter().cloned());
    rows.extend(log.labeled());
    let search = config.search.clone();
    let trained = tokio::task::spawn_blocking(move || fit(&rows, None, &search)).await??;
    // No test metrics: the stream replays adult.test, so a test-set score would be contaminated.
    let files = bundle_files(
        trained,
        &config.search,
        Some(parent.version),
        TrainingData {
            stream_rows,
            stream_offsets: log.offsets(),
            ..TrainingData::adult_data(&base.sha256, base.rows.len())
        },
    );
    let store = config.store.clone();
    let files = tokio::task::spawn_blocking(move || {
        let manifest = store.save(files.clone(), true)?;
        Ok::<_, RetrainerError>(BundleFiles { manifest, ..files })
    })
    .await??;
    publish(producer, &config.kafka.topics.models, &files).await?;
    let manifest = files.manifest;
    let event = RetrainEvent {
        version: manifest.version,
        rows: stream_rows,
        started_at_ms,
        finished_at_ms: now_ms(),
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
