//! One retrain, run as a task of its own so that the consume loop keeps storing rows meanwhile:
//! processor and model refitted on the base training rows plus the stream rows stored when it
//! started, published in the registry and cached locally. Without the gate the new version
//! becomes the champion; with it, a version that passes the offline check becomes the
//! challenger, and one that fails is recorded as rejected and never shadowed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;

use super::offline::{self, OfflineCheck};
use super::rowlog::StoredRow;
use super::{Promotion, RetrainEvent, RetrainerConfig, RetrainerError};
use crate::bundle::{Bundle, Manifest, TrainingData};
use crate::bundling::bundle_files;
use crate::data::LabeledRow;
use crate::registry::{Alias, AliasRecord, Publisher, RegistryError};
use crate::stream::messages::now_ms;
use crate::train::fit;
use crate::triggers::Fired;

/// What every retrain shares: settings, the base and test rows, the registry's publisher.
pub struct Trainer {
    pub config: RetrainerConfig,
    /// The base training rows (adult.data) and the file's sha256.
    pub base: Arc<Vec<LabeledRow>>,
    pub base_sha256: String,
    /// adult.test, for the offline check.
    pub test: Arc<Vec<LabeledRow>>,
    pub publisher: Publisher,
    /// The highest version in the registry when this retrainer took it over (a refused bundle
    /// is not cached locally, but its number is taken).
    pub registry_highest: u32,
}

/// The stream rows a retrain trains on, taken from the log when it starts.
pub struct StreamRows {
    pub rows: Vec<StoredRow>,
    pub offsets: BTreeMap<String, i64>,
}

/// What became of a new version.
#[derive(Clone)]
pub enum Verdict {
    /// Published as the champion (no gate).
    Champion(Arc<Bundle>),
    /// Passed the offline check: published as the challenger, for the gate to decide on.
    Challenger(Arc<Bundle>),
    /// Failed the offline check: recorded, never shadowed.
    RejectedOffline,
    /// Larger than the registry's topic accepts: neither published nor cached, and its number
    /// is free again.
    TooLarge,
}

/// A finished retrain.
pub struct Retrained {
    pub event: RetrainEvent,
    pub manifest: Manifest,
    pub verdict: Verdict,
    /// Labeled requests from these offsets count for the gate.
    pub from_offsets: BTreeMap<String, i64>,
}

/// Held back from training for the offline check: one in ten, by offset, of the stream rows
/// the champion was not trained on (at or after its `cutoff`), so neither model has seen them.
fn held_back(row: &StoredRow, cutoff: &BTreeMap<String, i64>) -> bool {
    row.offset % 10 == 0 && row.at_or_after(cutoff)
}

/// Trains, publishes and caches the version after `parent` (the champion, `champion` its
/// bundle), unless `cancel` stops it first.
pub async fn retrain(
    trainer: Arc<Trainer>,
    stream: StreamRows,
    parent: Manifest,
    champion: Arc<Bundle>,
    trigger: Fired,
    cancel: CancellationToken,
) -> Result<Retrained, RetrainerError> {
    let config = &trainer.config;
    let gate = match config.promotion {
        Promotion::Gate(g) => Some(g),
        Promotion::Always => None,
    };
    let started = Instant::now();
    let started_at_ms = now_ms();
    let total_rows = stream.rows.len();
    let (held, used): (Vec<StoredRow>, Vec<StoredRow>) = stream
        .rows
        .into_iter()
        .partition(|r| gate.is_some() && held_back(r, &parent.training_data.stream_offsets));
    let used: Vec<LabeledRow> = used.into_iter().map(StoredRow::into_labeled).collect();
    let held: Vec<LabeledRow> = held.into_iter().map(StoredRow::into_labeled).collect();
    tracing::info!(
        "retrainer: retraining after v{} ({}: {}) on {} base + {} stream rows ({} held back, {} \
         evaluations{})",
        parent.version,
        trigger.kind,
        trigger.figures,
        trainer.base.len(),
        used.len(),
        held.len(),
        config.search.max_evals,
        if config.shuffle_labels {
            ", labels shuffled"
        } else {
            ""
        }
    );
    let mut rows: Vec<LabeledRow> = Vec::with_capacity(trainer.base.len() + used.len());
    rows.extend(trainer.base.iter().cloned());
    rows.extend(used.iter().cloned());
    if config.shuffle_labels {
        let mut labels: Vec<bool> = rows.iter().map(|r| r.label).collect();
        labels.shuffle(&mut rand::rngs::StdRng::seed_from_u64(config.search.seed));
        for (r, l) in rows.iter_mut().zip(labels) {
            r.label = l;
        }
    }
    let mut search = config.search.clone();
    search.cancel = cancel;
    let trained = tokio::task::spawn_blocking(move || fit(&rows, None, &search)).await??;
    let log_losses = trained.search.log_losses();
    // No test metrics: the stream replays adult.test, so a test-set score would be contaminated.
    let mut files = bundle_files(
        trained,
        &config.search,
        Some(parent.version),
        TrainingData {
            stream_rows: used.len(),
            stream_offsets: stream.offsets.clone(),
            held_back_rows: held.len(),
            shuffled_labels: config.shuffle_labels,
            ..TrainingData::adult_data(&trainer.base_sha256, trainer.base.len())
        },
    );
    // Published first, then cached: a retrainer that was fenced, or that dies in between,
    // leaves no local version the registry does not have.
    let store = config.store.clone();
    let version = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.highest_used()).await??
    }
    .max(parent.version)
    .max(trainer.registry_highest)
        + 1;
    files.stamp(version);
    files.manifest.promoted = gate.is_none();
    files.manifest.trigger = Some(trigger.clone());

    let (verdict, alias, outcome) = match gate {
        None => {
            let f = files.clone();
            let bundle = tokio::task::spawn_blocking(move || f.load()).await??;
            (
                Verdict::Champion(Arc::new(bundle)),
                AliasRecord::new(
                    Alias::Champion,
                    Some(version),
                    Some(parent.version),
                    "retrain",
                ),
                "champion".to_owned(),
            )
        }
        Some(g) => {
            let f = files.clone();
            let (test, champ) = (trainer.test.clone(), champion.clone());
            let (bundle, check) = tokio::task::spawn_blocking(move || {
                let bundle = f.load()?;
                let check = offline::check(&bundle, &champ, &held, &test, &used, g.delta);
                Ok::<(Bundle, OfflineCheck), RetrainerError>((bundle, check))
            })
            .await??;
            if check.passed() {
                let mut a = AliasRecord::new(
                    Alias::Challenger,
                    Some(version),
                    None,
                    &format!("retrain; offline check passed: {}", check.summary()),
                );
                a.from_offsets = stream.offsets.clone();
                (
                    Verdict::Challenger(Arc::new(bundle)),
                    a,
                    "challenger".to_owned(),
                )
            } else {
                let reason = format!("v{version} rejected offline: {}", check.summary());
                (
                    Verdict::RejectedOffline,
                    AliasRecord::new(Alias::Challenger, None, None, &reason),
                    reason,
                )
            }
        }
    };
    let published = trainer
        .publisher
        .publish(Some(&files), std::slice::from_ref(&alias))
        .await;
    let (verdict, outcome, manifest) = match published {
        Err(RegistryError::TooLarge { bytes, .. }) => {
            let outcome = format!(
                "v{version} refused: its bundle record ({bytes} bytes) is larger than {} \
                 accepts (max.message.bytes)",
                trainer.config.kafka.topics.models
            );
            tracing::error!("retrainer: {outcome}; it is neither published nor kept");
            (Verdict::TooLarge, outcome, files.manifest)
        }
        published => {
            published?;
            let champion_now = matches!(verdict, Verdict::Champion(_));
            let files = tokio::task::spawn_blocking(move || {
                store.put(&files)?;
                if champion_now {
                    store.promote(version)?;
                }
                Ok::<_, RetrainerError>(files)
            })
            .await??;
            tracing::info!(
                "retrainer: v{version} stored and published ({outcome}; CV log loss {:.5}) in \
                 {:.1} s",
                files.manifest.cv.log_loss,
                started.elapsed().as_secs_f64()
            );
            (verdict, outcome, files.manifest)
        }
    };
    let event = RetrainEvent {
        version,
        rows: total_rows,
        started_at_ms,
        finished_at_ms: now_ms(),
        cv_log_loss: manifest.cv.log_loss,
        outcome,
        trigger,
        manifest: Arc::new(manifest.clone()),
        log_losses,
    };
    Ok(Retrained {
        event,
        manifest,
        verdict,
        from_offsets: stream.offsets,
    })
}
