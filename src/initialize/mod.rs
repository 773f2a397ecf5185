//! `initialize`: the offline bootstrap. Loads the Adult data, fits the processor, searches
//! LightGBM hyperparameters, trains and evaluates the final model, and stores it as a new bundle
//! version (version 1 on a fresh checkout), promoted to `models/CURRENT`.

mod tracked;

use std::path::PathBuf;

use crate::bundle::assemble::bundle_files;
use crate::bundle::{BundleStore, Manifest, TrainingData};
use crate::data::{load_adult, Fetch};
use crate::model::Scoring;
use crate::tracking::Tracker;
use crate::train::{fit, SearchConfig};

/// Settings of an `initialize` run.
#[derive(Debug, Clone)]
pub struct InitConfig {
    pub data_dir: PathBuf,
    pub fetch: Fetch,
    pub store: BundleStore,
    pub search: SearchConfig,
    /// How the new model loads when it is trained (to score the test set).
    pub scoring: Scoring,
    /// Do nothing when the store already has a current bundle of this build, whole (scripted
    /// set-ups that run this on every start, the demo, the load test). One that is not (made by
    /// an older build, or damaged) is left as it is, and a new version is trained.
    pub if_missing: bool,
    /// Where to log the search and the new version, if anywhere (MLflow).
    pub tracking: Option<Tracker>,
}

impl InitConfig {
    /// Defaults: data from `data/` (downloaded when missing), the given store and search.
    pub fn new(store: BundleStore, search: SearchConfig) -> Self {
        InitConfig {
            data_dir: crate::defaults::DATA_DIR.into(),
            fetch: Fetch::default(),
            store,
            search,
            scoring: Scoring::default(),
            if_missing: false,
            tracking: None,
        }
    }
}

/// Errors of `initialize`, each already carrying the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("training failed")]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
}

/// What `initialize` did.
#[derive(Debug, Clone)]
pub enum Initialized {
    /// It trained and stored this version.
    Trained(Box<Manifest>),
    /// `if_missing` was set and the store already had this current version, whole and of this
    /// build's layout.
    AlreadyThere(u32),
}

/// Runs `initialize`. With `tracking`, the new version is queued for MLflow as the champion:
/// wait on the tracker for it to be logged.
pub fn run(config: &InitConfig) -> Result<Initialized, InitError> {
    if config.if_missing {
        match config.store.current()? {
            // Verified, not loaded: the service that serves it loads it (compiling its trees).
            Some(v) => match config.store.read_files(v).and_then(|f| f.verify()) {
                Ok(()) => return Ok(Initialized::AlreadyThere(v)),
                // Made by an older build (another feature layout), or damaged: a new version is
                // trained beside it, which stays as it was.
                Err(e) => tracing::warn!(
                    "bundle v{v} cannot be loaded by this build ({:#}): training a new version \
                     with {} evaluations",
                    anyhow::Error::from(e),
                    config.search.max_evals
                ),
            },
            None => tracing::info!(
                "no bundle yet: running initialize with {} evaluations",
                config.search.max_evals
            ),
        }
    }
    let data = load_adult(&config.data_dir, &config.fetch)?;
    tracing::info!(
        "loaded {} training rows and {} test rows from {}",
        data.train.len(),
        data.test.len(),
        config.data_dir.display()
    );
    let started_ms = chrono::Utc::now().timestamp_millis();
    let trained = fit(
        &data.train,
        Some(&data.test),
        &config.search,
        config.scoring,
    )?;
    let log_losses = trained.search.log_losses();
    let files = bundle_files(
        trained,
        &config.search,
        None,
        TrainingData::adult_data(&data.train_sha256, data.train.len()),
    );
    let manifest = config.store.save(files, true)?;
    if let Some(tracker) = &config.tracking {
        tracked::track(tracker, &config.store, &manifest, &log_losses, started_ms);
    }
    Ok(Initialized::Trained(Box::new(manifest)))
}
