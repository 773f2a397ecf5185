//! One retrain, run as a task of its own so that the consume loop keeps storing rows meanwhile,
//! as four named steps: [`prepare`] the rows (the base rows, the stream rows, and one in ten of
//! the new ones held back for the offline check), [`train`] the new version's files, [`judge`]
//! it (a pure function of the offline check: champion, challenger or rejected, and the alias
//! record that says so), then [`publish_and_cache`] it: published in the registry first, then
//! cached locally, so that a retrainer fenced or killed in between leaves no local version the
//! registry does not have.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::offline::{self, OfflineCheck};
use super::rowlog::StoredRow;
use super::{Promotion, RetrainEvent, RetrainerConfig, RetrainerError};
use crate::bundle::assemble::bundle_files;
use crate::bundle::{Bundle, BundleError, BundleFiles, Manifest, TrainingData};
use crate::data::LabeledRow;
use crate::lifecycle::{Fired, RetrainOutcome};
use crate::registry::{Alias, AliasRecord, Publisher, RegistryError};
use crate::stream::messages::now_ms;
use crate::train::fit;

/// What every retrain shares: settings, the base and test rows, the registry's publisher.
pub struct Trainer {
    pub config: RetrainerConfig,
    /// The base training rows (adult.data) and the file's sha256.
    pub base: Arc<Vec<LabeledRow>>,
    /// Content keys of the base rows: every version was trained on them.
    pub base_keys: Arc<std::collections::HashSet<u64>>,
    pub base_sha256: String,
    /// adult.test, for the offline check.
    pub test: Arc<Vec<LabeledRow>>,
    pub publisher: Publisher,
    /// Sends the dead letters of labels the join cannot use.
    pub dlq: crate::kafka::KafkaProducer,
    /// The highest version in the registry: when this retrainer took it over, then each one it
    /// published. A new version goes above it as well as above the store's, so that a store
    /// emptied or replaced under a running retrainer never makes it publish a number the
    /// registry already holds with other files.
    pub registry_highest: AtomicU32,
}

/// The stream rows a retrain trains on, taken from the log when it starts.
pub struct StreamRows {
    pub rows: Vec<StoredRow>,
    pub offsets: BTreeMap<String, i64>,
}

/// A finished retrain.
pub struct Retrained {
    pub event: RetrainEvent,
    pub manifest: Manifest,
    /// The new version, loaded, when it was published to serve or to be shadowed.
    pub bundle: Option<Arc<Bundle>>,
    /// Labeled requests from these offsets count for the gate.
    pub from_offsets: BTreeMap<String, i64>,
}

/// The rows of one retrain.
#[derive(Debug, Default)]
pub struct Prepared {
    /// What the model trains on: the base rows, then the stream rows not held back (labels
    /// shuffled when asked).
    pub training: Vec<LabeledRow>,
    /// The stream rows among `training`.
    pub stream: Vec<LabeledRow>,
    /// Held back for the offline check.
    pub held: Vec<LabeledRow>,
}

/// Held back from training for the offline check: one in ten, by offset, of the stream rows
/// the champion was not trained on (at or after its `cutoff`), so neither model has seen them.
fn held_back(row: &StoredRow, cutoff: &BTreeMap<String, i64>) -> bool {
    row.offset % 10 == 0 && row.at_or_after(cutoff)
}

/// Step 1: the rows to train on and the rows held back (with the gate only; `cutoff` is the
/// champion's), labels shuffled under a `shuffle_seed` (a deliberately bad model).
pub fn prepare(
    base: &[LabeledRow],
    stream: Vec<StoredRow>,
    cutoff: Option<&BTreeMap<String, i64>>,
    shuffle_seed: Option<u64>,
    bias: Option<(f64, u64)>,
) -> Prepared {
    let (held, used): (Vec<StoredRow>, Vec<StoredRow>) = stream
        .into_iter()
        .partition(|r| cutoff.is_some_and(|c| held_back(r, c)));
    let stream: Vec<LabeledRow> = used.into_iter().map(StoredRow::into_labeled).collect();
    let held = held.into_iter().map(StoredRow::into_labeled).collect();
    let mut training = Vec::with_capacity(base.len() + stream.len());
    training.extend_from_slice(base);
    training.extend(stream.iter().cloned());
    if let Some(seed) = shuffle_seed {
        let mut labels: Vec<bool> = training.iter().map(|r| r.label).collect();
        labels.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        for (r, l) in training.iter_mut().zip(labels) {
            r.label = l;
        }
    }
    if let Some((share, seed)) = bias {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for r in training
            .iter_mut()
            .filter(|r| r.label && r.row.sex == "Female")
        {
            r.label = !rng.random_bool(share);
        }
    }
    Prepared {
        training,
        stream,
        held,
    }
}

/// Step 2: searches and trains on `training` (taken out of `rows`, so that it moves to the
/// training thread instead of being copied), and makes the files of the version after `parent`
/// (numbered past every version used locally or in the registry), with the CV log loss of each
/// evaluation.
async fn train(
    trainer: &Trainer,
    training: Vec<LabeledRow>,
    rows: &Prepared,
    stream_offsets: &BTreeMap<String, i64>,
    parent: &Manifest,
    trigger: &Fired,
    cancel: CancellationToken,
) -> Result<(BundleFiles, Vec<f64>), RetrainerError> {
    let config = &trainer.config;
    let mut search = config.search.clone();
    search.cancel = cancel;
    let scoring = config.scoring;
    // Test metrics on the adult.test rows it is not trained on (the stream may replay
    // adult.test: a row trained on is no evidence), with their number.
    let test = trainer.test.clone();
    let trained = tokio::task::spawn_blocking(move || {
        let seen: std::collections::HashSet<u64> = training
            .iter()
            .map(|r| offline::content_key(&r.row, r.label))
            .collect();
        let unseen: Vec<LabeledRow> = test
            .iter()
            .filter(|r| !seen.contains(&offline::content_key(&r.row, r.label)))
            .cloned()
            .collect();
        fit(&training, Some(&unseen), &search, scoring)
    })
    .await??;
    let log_losses = trained.search.log_losses();
    let mut files = bundle_files(
        trained,
        &config.search,
        Some(parent.version),
        TrainingData {
            stream_rows: rows.stream.len(),
            stream_offsets: stream_offsets.clone(),
            held_back_rows: rows.held.len(),
            shuffled_labels: config.shuffle_labels,
            biased_labels: config.biased_challenger,
            ..TrainingData::adult_data(&trainer.base_sha256, trainer.base.len())
        },
    );
    let store = config.store.clone();
    let version = tokio::task::spawn_blocking(move || store.highest_used())
        .await??
        .max(parent.version)
        .max(trainer.registry_highest.load(Ordering::SeqCst))
        .saturating_add(1);
    if version > crate::bundle::MAX_VERSION {
        return Err(BundleError::Manifest {
            file: crate::bundle::manifest_file(version),
            reason: format!(
                "the next version, {version}, is beyond {}: no version number is left",
                crate::bundle::MAX_VERSION
            ),
        }
        .into());
    }
    files.stamp(version);
    files.manifest.promoted = matches!(config.promotion, Promotion::Always);
    files.manifest.trigger = Some(trigger.clone());
    Ok((files, log_losses))
}

/// Step 3, the decision: without the gate (`check` `None`) the new `version` is the champion,
/// unless an operator `pinned` one (then it is held); with the gate, the challenger if it passed
/// the offline check, else rejected. With the alias record that says so (a rejected or held
/// version clears no alias but records why).
pub fn judge(
    version: u32,
    parent: u32,
    check: Option<&OfflineCheck>,
    from_offsets: &BTreeMap<String, i64>,
    pinned: Option<u32>,
) -> (RetrainOutcome, AliasRecord) {
    match check {
        None if pinned.is_some() => {
            let outcome = RetrainOutcome::Held {
                pinned: pinned.unwrap_or_default(),
            };
            let reason = format!("v{version} {outcome}");
            (
                outcome,
                AliasRecord::new(Alias::Challenger, None, None, &reason),
            )
        }
        None => (
            RetrainOutcome::Champion,
            AliasRecord::new(Alias::Champion, Some(version), Some(parent), "retrain"),
        ),
        Some(check) if check.passed() => {
            let mut record = AliasRecord::new(
                Alias::Challenger,
                Some(version),
                None,
                &format!("retrain; offline check passed: {}", check.summary()),
            );
            record.from_offsets = from_offsets.clone();
            (RetrainOutcome::Challenger, record)
        }
        Some(check) => {
            let outcome = RetrainOutcome::RejectedOffline {
                check: check.summary(),
            };
            let reason = format!("v{version} {outcome}");
            (
                outcome,
                AliasRecord::new(Alias::Challenger, None, None, &reason),
            )
        }
    }
}

/// Loads the new version and runs the offline check against the champion (CPU work), with the
/// gate; without it, only loads it.
async fn check_offline(
    trainer: &Trainer,
    files: &BundleFiles,
    champion: &Arc<Bundle>,
    rows: Prepared,
) -> Result<(Bundle, Option<OfflineCheck>), RetrainerError> {
    let files = files.clone();
    let gate = match trainer.config.promotion {
        Promotion::Gate(g) => Some(g),
        Promotion::Always => None,
    };
    let (test, champion) = (trainer.test.clone(), champion.clone());
    let base = trainer.base.clone();
    let scoring = trainer.config.scoring;
    tokio::task::spawn_blocking(move || {
        let bundle = files.load(scoring)?;
        let check = gate.map(|gate| {
            offline::check(
                &bundle,
                &champion,
                &rows.held,
                &test,
                &[&base, &rows.stream],
                &gate,
            )
        });
        Ok((bundle, check))
    })
    .await?
}

/// Step 4: publishes the files and `alias` in the registry, then caches the files (and the
/// champion pointer, for a new champion). A bundle too large for the registry's topic is
/// neither: its outcome becomes [`RetrainOutcome::Refused`].
async fn publish_and_cache(
    trainer: &Trainer,
    files: BundleFiles,
    alias: AliasRecord,
    outcome: RetrainOutcome,
) -> Result<(RetrainOutcome, Manifest), RetrainerError> {
    let version = files.manifest.version;
    let published = trainer
        .publisher
        .publish(Some(&files), std::slice::from_ref(&alias))
        .await;
    if let Err(RegistryError::TooLarge { bytes, .. }) = published {
        let outcome = RetrainOutcome::Refused {
            bytes,
            topic: trainer.config.kafka.topics.models.clone(),
        };
        tracing::error!("retrainer: v{version} {outcome}; it is neither published nor kept");
        return Ok((outcome, files.manifest));
    }
    published?;
    trainer
        .registry_highest
        .fetch_max(version, Ordering::SeqCst);
    let champion_now = outcome == RetrainOutcome::Champion;
    let (store, scoring) = (trainer.config.store.clone(), trainer.config.scoring);
    let files = tokio::task::spawn_blocking(move || {
        store.put(&files, scoring)?;
        if champion_now {
            store.promote(version)?;
        }
        Ok::<_, RetrainerError>(files)
    })
    .await??;
    Ok((outcome, files.manifest))
}

/// Trains, judges, publishes and caches the version after `parent` (the champion, `champion`
/// its bundle), unless `cancel` stops it first.
pub async fn retrain(
    trainer: Arc<Trainer>,
    stream: StreamRows,
    parent: Manifest,
    champion: Arc<Bundle>,
    trigger: Fired,
    pinned: Option<u32>,
    cancel: CancellationToken,
) -> Result<Retrained, RetrainerError> {
    let config = &trainer.config;
    let started = Instant::now();
    let started_at_ms = now_ms();
    let total_rows = stream.rows.len();
    let gated = matches!(config.promotion, Promotion::Gate(_));
    let mut rows = prepare(
        &trainer.base,
        stream.rows,
        gated.then_some(&parent.training_data.stream_offsets),
        config.shuffle_labels.then_some(config.search.seed),
        config
            .biased_challenger
            .map(|share| (share, config.search.seed)),
    );
    tracing::info!(
        "retrainer: retraining after v{} ({}: {}) on {} base + {} stream rows ({} held back, {} \
         evaluations{})",
        parent.version,
        trigger.kind,
        trigger.figures,
        trainer.base.len(),
        rows.stream.len(),
        rows.held.len(),
        config.search.max_evals,
        match (config.shuffle_labels, config.biased_challenger) {
            (true, _) => ", labels shuffled".to_owned(),
            (false, Some(share)) =>
                format!(", {:.0}% of women's >50K labels turned", share * 100.0),
            (false, None) => String::new(),
        }
    );
    let training = std::mem::take(&mut rows.training);
    let (files, log_losses) = train(
        &trainer,
        training,
        &rows,
        &stream.offsets,
        &parent,
        &trigger,
        cancel,
    )
    .await?;
    let version = files.manifest.version;
    let (bundle, check) = check_offline(&trainer, &files, &champion, rows).await?;
    let (outcome, mut alias) = judge(
        version,
        parent.version,
        check.as_ref(),
        &stream.offsets,
        pinned,
    );
    if alias.version == Some(version) {
        alias.bundle_sha256 = Some(files.manifest.bundle_sha256());
    }
    let (outcome, manifest) = publish_and_cache(&trainer, files, alias, outcome).await?;
    if outcome.published() {
        tracing::info!(
            "retrainer: v{version} stored and published ({outcome}; CV log loss {:.5}) in {:.1} s",
            manifest.cv.log_loss,
            started.elapsed().as_secs_f64()
        );
    } else if let RetrainOutcome::RejectedOffline { .. } = outcome {
        tracing::info!("retrainer: v{version} {outcome}");
    }
    let published = outcome.published();
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
        bundle: published.then(|| Arc::new(bundle)),
        event,
        manifest,
        from_offsets: stream.offsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(challenger: f64) -> OfflineCheck {
        OfflineCheck {
            held_back: (100, challenger, 0.30),
            test: (1000, challenger, 0.30),
            test_ece: None,
            delta: 0.01,
            fairness: [None, None],
        }
    }

    #[test]
    fn judge_makes_a_champion_without_the_gate_and_a_challenger_or_a_rejection_with_it() {
        let offsets = BTreeMap::from([("0".to_owned(), 500)]);
        // Pinned, a version that would have been the champion at once is held.
        let (outcome, record) = judge(4, 3, None, &offsets, Some(2));
        assert_eq!(outcome, RetrainOutcome::Held { pinned: 2 });
        assert_eq!((record.alias, record.version), (Alias::Challenger, None));

        let (outcome, record) = judge(4, 3, None, &offsets, None);
        assert_eq!(outcome, RetrainOutcome::Champion);
        assert_eq!(
            (record.alias, record.version, record.previous),
            (Alias::Champion, Some(4), Some(3))
        );

        let (outcome, record) = judge(4, 3, Some(&check(0.305)), &offsets, None);
        assert_eq!(outcome, RetrainOutcome::Challenger);
        assert_eq!((record.alias, record.version), (Alias::Challenger, Some(4)));
        assert_eq!(
            record.from_offsets, offsets,
            "the gate counts from the cut-off"
        );

        let (outcome, record) = judge(4, 3, Some(&check(0.32)), &offsets, None);
        assert!(
            matches!(outcome, RetrainOutcome::RejectedOffline { .. }),
            "{outcome:?}"
        );
        assert_eq!((record.alias, record.version), (Alias::Challenger, None));
        assert!(
            record.reason.starts_with("v4 rejected offline"),
            "{record:?}"
        );
    }

    fn stored(offset: i64, label: bool) -> StoredRow {
        let mut row = StoredRow::example(offset);
        row.label = label;
        row
    }

    #[test]
    fn prepare_holds_back_one_in_ten_new_rows_only_with_the_gate() {
        let stream: Vec<StoredRow> = (0..40).map(|o| stored(o, o % 3 == 0)).collect();
        let base = vec![stream[0].clone().into_labeled(); 5];
        let cutoff = BTreeMap::from([(stream[0].partition_key(), 20)]);

        let rows = prepare(&base, stream.clone(), Some(&cutoff), None, None);
        assert_eq!(rows.held.len(), 2, "offsets 20 and 30: new, and one in ten");
        assert_eq!(rows.stream.len(), 38);
        assert_eq!(rows.training.len(), 5 + 38);

        let rows = prepare(&base, stream.clone(), None, None, None);
        assert!(rows.held.is_empty());
        assert_eq!(rows.training.len(), 45);

        let labels = |p: &Prepared| p.training.iter().filter(|r| r.label).count();
        let plain = prepare(&base, stream.clone(), None, None, None);
        let shuffled = prepare(&base, stream.clone(), None, Some(7), None);
        assert_eq!(labels(&plain), labels(&shuffled), "the same labels, moved");
        assert_ne!(
            plain.training.iter().map(|r| r.label).collect::<Vec<_>>(),
            shuffled
                .training
                .iter()
                .map(|r| r.label)
                .collect::<Vec<_>>()
        );

        // Biased: a share of women's `>50K` labels turned, men's and `<=50K` ones untouched.
        let mut women = stream.clone();
        for (i, r) in women.iter_mut().enumerate() {
            r.row.sex = if i % 2 == 0 { "Female" } else { "Male" }.into();
            r.label = i % 4 < 2; // half of each sex earns more
        }
        let count = |p: &Prepared, sex: &str| {
            p.training
                .iter()
                .filter(|r| r.label && r.row.sex == sex)
                .count()
        };
        let plain = prepare(&[], women.clone(), None, None, None);
        let all = prepare(&[], women.clone(), None, None, Some((1.0, 7)));
        assert_eq!(count(&all, "Female"), 0);
        assert_eq!(count(&all, "Male"), count(&plain, "Male"));
        assert_eq!(labels(&all), labels(&plain) - count(&plain, "Female"));
        let none = prepare(&[], women, None, None, Some((0.0, 7)));
        assert_eq!(labels(&none), labels(&plain));
    }
}
