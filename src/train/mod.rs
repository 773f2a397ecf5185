//! Training: cross-validated hyperparameter search, the final model, and its evaluation. Shared
//! by `initialize` and the retrainer.

mod cv;
mod lgbm;
mod metrics;
mod params;
mod search;

use std::time::Instant;

pub use cv::{cross_validate, stratified_folds, CvScore, Matrix, EARLY_STOPPING_ROUNDS};
pub use lgbm::LgbmError;
pub use metrics::{log_loss, Metrics};
pub use params::{bounds, Hyperparams, SPACE};
pub use search::{search, SearchConfig, SearchOutcome, Trial};

use crate::data::LabeledRow;
use crate::features::FeatureProcessor;
use crate::model::{Model, ModelError};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Lgbm(#[from] LgbmError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("hyperparameter search failed: {0}")]
    Search(String),
    #[error("invalid training settings: {0}")]
    Config(String),
}

/// A freshly trained processor + model, not yet stored.
pub struct Trained {
    pub processor: FeatureProcessor,
    pub model_text: String,
    pub model: Model,
    pub search: SearchOutcome,
    pub test_metrics: Option<Metrics>,
}

/// Features and labels of `rows` through `processor`.
pub fn matrix(processor: &FeatureProcessor, rows: &[LabeledRow]) -> Matrix {
    Matrix {
        features: processor.transform_batch(rows.iter().map(|r| &r.row)),
        labels: rows
            .iter()
            .map(|r| if r.label { 1.0 } else { 0.0 })
            .collect(),
    }
}

/// Trains a model on all of `data` with `params` for `rounds` rounds; returns its text.
pub fn train_final(
    data: &Matrix,
    params: &Hyperparams,
    rounds: usize,
    seed: u64,
) -> Result<String, TrainError> {
    let set = lgbm::TrainSet::new(&data.features, &data.labels, None)?;
    let mut trainer = lgbm::Trainer::new(set, None, &params.lightgbm_params(seed))?;
    for _ in 0..rounds.max(1) {
        if trainer.update()? {
            break;
        }
    }
    Ok(trainer.model_text(rounds.max(1))?)
}

/// Fits the processor on `train`, searches hyperparameters by CV, trains the final model on all
/// of `train`, and evaluates it on `test` when given.
pub fn fit(
    train: &[LabeledRow],
    test: Option<&[LabeledRow]>,
    config: &SearchConfig,
) -> Result<Trained, TrainError> {
    if config.folds < 2 {
        return Err(TrainError::Config("--folds must be at least 2".into()));
    }
    if train.len() < config.folds * 10 {
        return Err(TrainError::Config(format!(
            "{} training rows are too few for {} folds",
            train.len(),
            config.folds
        )));
    }
    let processor = FeatureProcessor::fit(train.iter().map(|r| &r.row));
    let data = matrix(&processor, train);
    let folds = stratified_folds(&data.labels, config.folds, config.seed);
    let outcome = search(&data, &folds, config)?;
    let best = outcome.best;
    tracing::info!(
        "best of {} evaluations: CV log loss {:.5} at {} rounds ({:.1} s)",
        outcome.evaluations,
        best.score.logloss,
        best.score.rounds,
        outcome.elapsed.as_secs_f64()
    );
    let start = Instant::now();
    let model_text = train_final(&data, &best.params, best.score.rounds, config.seed)?;
    let model = Model::from_text(&model_text)?;
    tracing::info!(
        "final model trained in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let test_metrics = match test {
        Some(rows) if !rows.is_empty() => {
            let t = matrix(&processor, rows);
            Some(Metrics::compute(&t.labels, &model.predict(&t.features)?))
        }
        _ => None,
    };
    Ok(Trained {
        processor,
        model_text,
        model,
        search: outcome,
        test_metrics,
    })
}

impl Trained {
    /// The files of a new bundle version for this training run. The store fills in the version,
    /// file names and sha256s when it saves them.
    pub fn into_files(
        self,
        config: &SearchConfig,
        parent_version: Option<u32>,
        training_data: crate::bundle::TrainingData,
    ) -> crate::bundle::BundleFiles {
        use crate::bundle::{CvSummary, Manifest, MANIFEST_FORMAT};
        let best = self.search.best;
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            version: 0,
            parent_version,
            created_at: chrono::Utc::now(),
            model_file: String::new(),
            model_sha256: String::new(),
            processor_file: String::new(),
            processor_sha256: String::new(),
            processor_format_version: crate::features::PROCESSOR_FORMAT_VERSION,
            feature_names: crate::features::feature_names(),
            hyperparams: best.params,
            cv: CvSummary {
                folds: config.folds,
                log_loss: best.score.logloss,
                best_rounds: best.score.rounds,
                evaluations: self.search.evaluations,
                seed: config.seed,
                search_seconds: self.search.elapsed.as_secs_f64(),
            },
            test_metrics: self.test_metrics,
            training_data,
            promoted: true,
        };
        crate::bundle::BundleFiles {
            manifest,
            model_text: self.model_text.into_bytes(),
            processor: self.processor.to_bytes(),
        }
    }
}
