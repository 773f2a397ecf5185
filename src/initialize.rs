//! `initialize`: the offline bootstrap. Loads the Adult data, fits the processor, searches
//! LightGBM hyperparameters, trains and evaluates the final model, and stores it as a new bundle
//! version (version 1 on a fresh checkout), promoted to `models/CURRENT`.

use std::path::PathBuf;

use crate::bundle::{BundleStore, Manifest, TrainingData};
use crate::data::{load_adult, Fetch};
use crate::train::{fit, SearchConfig};

/// Settings of an `initialize` run.
#[derive(Debug, Clone)]
pub struct InitConfig {
    pub data_dir: PathBuf,
    pub fetch: Fetch,
    pub store: BundleStore,
    pub search: SearchConfig,
}

/// Errors of `initialize`, each already carrying the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
}

/// Runs `initialize`; returns the manifest of the stored version.
pub fn run(config: &InitConfig) -> Result<Manifest, InitError> {
    let data = load_adult(&config.data_dir, &config.fetch)?;
    tracing::info!(
        "loaded {} training rows and {} test rows from {}",
        data.train.len(),
        data.test.len(),
        config.data_dir.display()
    );
    let trained = fit(&data.train, Some(&data.test), &config.search)?;
    let files = trained.into_files(
        &config.search,
        None,
        TrainingData {
            base_file: "adult.data".into(),
            base_sha256: data.train_sha256.clone(),
            base_rows: data.train.len(),
            stream_rows: 0,
            stream_offsets: Default::default(),
        },
    );
    let manifest = config.store.save(files, true)?;
    Ok(manifest)
}

/// Runs `initialize` only if the store has no current bundle; returns the new manifest if it
/// trained one. For the demo and the load test, which bootstrap themselves.
pub fn ensure_bundle(config: &InitConfig) -> Result<Option<Manifest>, InitError> {
    if config.store.current()?.is_some() {
        return Ok(None);
    }
    tracing::info!(
        "no bundle yet: running initialize with {} evaluations",
        config.search.max_evals
    );
    run(config).map(Some)
}
