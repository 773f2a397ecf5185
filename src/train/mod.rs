//! Training: cross-validated hyperparameter search, the final model, and its evaluation. Shared
//! by `initialize` and the retrainer.

pub mod calibrate;
mod cv;
pub mod evaluate;
mod lgbm;
mod search;
pub mod space;

use std::time::Instant;

pub use calibrate::Calibration;
pub use cv::{cross_validate, stratified_folds, CvScore, Matrix, EARLY_STOPPING_ROUNDS};
pub use lgbm::LgbmError;
pub use search::{search, Calibrate, SearchConfig, SearchOutcome, Trial};

use crate::data::LabeledRow;
use crate::features::FeatureProcessor;
use crate::model::{Model, ModelError, Scoring};
use crate::train::evaluate::Metrics;
use crate::train::space::Hyperparams;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Lgbm(#[from] LgbmError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("hyperparameter search failed")]
    Search(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("hyperparameter search finished no evaluation")]
    NoEvaluation,
    #[error("cannot start the search's worker threads")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
    #[error("training was cancelled")]
    Cancelled,
    #[error("{rows} training rows are too few for {folds}-fold cross-validation")]
    TooFewRows { rows: usize, folds: usize },
}

/// A freshly trained processor + model, not yet stored.
pub struct Trained {
    pub processor: FeatureProcessor,
    pub model_text: String,
    pub model: Model,
    pub search: SearchOutcome,
    pub test_metrics: Option<Metrics>,
    /// How its scores were calibrated (none: as LightGBM gives them).
    pub calibration: Option<Calibration>,
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
    let mut trainer = lgbm::Trainer::new(&set, None, &params.lightgbm_params(seed))?;
    for _ in 0..rounds.max(1) {
        if trainer.update()? {
            break;
        }
    }
    Ok(trainer.model_text(rounds.max(1))?)
}

/// Fits the processor on `train`, searches hyperparameters by CV, trains the final model on all
/// of `train`, loads it as `scoring` says, and evaluates it on `test` when given; every thread
/// that trains at `config.nice`.
pub fn fit(
    train: &[LabeledRow],
    test: Option<&[LabeledRow]>,
    config: &SearchConfig,
    scoring: Scoring,
) -> Result<Trained, TrainError> {
    if config.nice == 0 {
        return fit_here(train, test, config, scoring);
    }
    // The steps outside the search's own pool (the processor, the final model, its
    // evaluation) run on a thread of their own at the lower priority too.
    let nice = config.nice;
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .start_handler(move |_| crate::util::priority::nice_this_thread(nice))
        .build()?
        .install(|| fit_here(train, test, config, scoring))
}

fn fit_here(
    train: &[LabeledRow],
    test: Option<&[LabeledRow]>,
    config: &SearchConfig,
    scoring: Scoring,
) -> Result<Trained, TrainError> {
    let k = config.folds.get();
    if train.len() < k * 10 {
        return Err(TrainError::TooFewRows {
            rows: train.len(),
            folds: k,
        });
    }
    let processor = FeatureProcessor::fit(train.iter().map(|r| &r.row));
    let data = matrix(&processor, train);
    let folds = stratified_folds(&data.labels, k, config.seed);
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
    let mut model_text = train_final(&data, &best.params, best.score.rounds, config.seed)?;
    tracing::info!(
        "final model trained in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let calibration = match config.calibrate {
        Calibrate::None => None,
        Calibrate::Platt => {
            let start = Instant::now();
            let nice = config.nice;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(config.threads.get())
                .start_handler(move |_| crate::util::priority::nice_this_thread(nice))
                .build()?;
            let oof = pool.install(|| {
                calibrate::out_of_fold(
                    &data,
                    &folds,
                    k,
                    &best.params,
                    best.score.rounds,
                    config.seed,
                )
            })?;
            let c = calibrate::fit_platt(&oof, &data.labels);
            match c.platt.fold_into(&model_text) {
                Ok(text) => {
                    tracing::info!(
                        "calibrated (Platt a {:.4}, b {:.4}) on {} out-of-fold predictions in \
                         {:.1} s: log loss {:.5} -> {:.5}, ECE {:.4} -> {:.4}",
                        c.platt.a,
                        c.platt.b,
                        c.rows,
                        start.elapsed().as_secs_f64(),
                        c.log_loss_before,
                        c.log_loss_after,
                        c.ece_before,
                        c.ece_after
                    );
                    model_text = text;
                    Some(c)
                }
                Err(e) => {
                    tracing::warn!("scores left uncalibrated: {e}");
                    None
                }
            }
        }
    };
    let model = Model::from_text(&model_text, scoring)?;
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
        calibration,
    })
}
