//! From a training result to the files of a new bundle version. This sits above both `train`
//! (which knows nothing of bundles) and `bundle` (which knows nothing of training), so that
//! `initialize` and the retrainer build their bundles in this one place.

use crate::bundle::{BundleFiles, CvSummary, Manifest, TrainingData, MANIFEST_FORMAT};
use crate::train::{SearchConfig, Trained};

/// The files of a new bundle version for `trained`. The store fills in the version, file names
/// and sha256s when it saves them.
pub fn bundle_files(
    trained: Trained,
    search: &SearchConfig,
    parent_version: Option<u32>,
    training_data: TrainingData,
) -> BundleFiles {
    let best = trained.search.best;
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
            folds: search.folds.get(),
            log_loss: best.score.logloss,
            best_rounds: best.score.rounds,
            evaluations: trained.search.evaluations,
            seed: search.seed,
            search_seconds: trained.search.elapsed.as_secs_f64(),
        },
        test_metrics: trained.test_metrics,
        training_data,
        promoted: true,
        trigger: None,
        calibration: trained.calibration,
    };
    BundleFiles {
        manifest,
        model_text: trained.model_text.into_bytes(),
        processor: trained.processor.to_bytes(),
    }
}
