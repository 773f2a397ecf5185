//! One retrain, run as a task of its own so that the consume loop keeps storing rows meanwhile:
//! processor and model refitted on the base training rows plus the stream rows stored when it
//! started, stored as the next bundle version and published in the registry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{RetrainEvent, RetrainerConfig, RetrainerError};
use crate::bundle::{Manifest, TrainingData};
use crate::bundling::bundle_files;
use crate::data::LabeledRow;
use crate::registry::{Alias, AliasRecord, Publisher};
use crate::stream::messages::now_ms;
use crate::train::fit;

/// What every retrain shares: settings, the base rows, the registry's publisher.
pub struct Trainer {
    pub config: RetrainerConfig,
    /// The base training rows (adult.data) and the file's sha256.
    pub base: Arc<Vec<LabeledRow>>,
    pub base_sha256: String,
    pub publisher: Publisher,
    /// The highest version in the registry when this retrainer took it over (a refused bundle
    /// is not cached locally, but its number is taken).
    pub registry_highest: u32,
}

/// The stream rows a retrain trains on, taken from the log when it starts.
pub struct StreamRows {
    pub rows: Vec<LabeledRow>,
    pub offsets: BTreeMap<String, i64>,
}

/// Trains, stores and publishes the version after `parent`, unless `cancel` stops it first.
pub async fn retrain(
    trainer: Arc<Trainer>,
    stream: StreamRows,
    parent: Manifest,
    cancel: CancellationToken,
) -> Result<(RetrainEvent, Manifest), RetrainerError> {
    let config = &trainer.config;
    let started = Instant::now();
    let started_at_ms = now_ms();
    let stream_rows = stream.rows.len();
    tracing::info!(
        "retrainer: retraining after v{} on {} base + {stream_rows} stream rows ({} evaluations)",
        parent.version,
        trainer.base.len(),
        config.search.max_evals
    );
    let mut rows: Vec<LabeledRow> = Vec::with_capacity(trainer.base.len() + stream_rows);
    rows.extend(trainer.base.iter().cloned());
    rows.extend(stream.rows);
    let mut search = config.search.clone();
    search.cancel = cancel;
    let trained = tokio::task::spawn_blocking(move || fit(&rows, None, &search)).await??;
    // No test metrics: the stream replays adult.test, so a test-set score would be contaminated.
    let files = bundle_files(
        trained,
        &config.search,
        Some(parent.version),
        TrainingData {
            stream_rows,
            stream_offsets: stream.offsets,
            ..TrainingData::adult_data(&trainer.base_sha256, trainer.base.len())
        },
    );
    // Published first, then cached: a retrainer that was fenced, or that dies in between,
    // leaves no local version the registry does not have.
    let mut files = files;
    let store = config.store.clone();
    let version = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.highest_used()).await??
    }
    .max(parent.version)
    .max(trainer.registry_highest)
        + 1;
    files.stamp(version);
    trainer
        .publisher
        .publish(
            Some(&files),
            &[AliasRecord::new(
                Alias::Champion,
                Some(version),
                Some(parent.version),
                "retrain",
            )],
        )
        .await?;
    let files = tokio::task::spawn_blocking(move || {
        store.put(&files)?;
        store.promote(version)?;
        Ok::<_, RetrainerError>(files)
    })
    .await??;
    let manifest = files.manifest;
    let event = RetrainEvent {
        version,
        rows: stream_rows,
        started_at_ms,
        finished_at_ms: now_ms(),
        cv_log_loss: manifest.cv.log_loss,
    };
    tracing::info!(
        "retrainer: v{version} stored and published as champion (CV log loss {:.5}) in {:.1} s",
        manifest.cv.log_loss,
        started.elapsed().as_secs_f64()
    );
    Ok((event, manifest))
}
