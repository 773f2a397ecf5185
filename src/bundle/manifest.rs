//! The manifest: what a bundle version is, where its files are, their sha256, and how it was
//! made (hyperparameters, CV score, test metrics, training data).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::train::evaluate::CvSummary;
use crate::train::evaluate::Metrics;
use crate::train::space::Hyperparams;

/// Bump when the manifest's layout changes incompatibly.
pub const MANIFEST_FORMAT: u32 = 1;

/// Highest version number a bundle may have. A number above it is refused as corrupt: no
/// deployment retrains a billion times, and the numbers above the highest must stay free for
/// the next versions.
pub const MAX_VERSION: u32 = 999_999_999;

/// File names of a version.
pub fn model_file(version: u32) -> String {
    format!("model_v{version:04}.txt")
}
pub fn processor_file(version: u32) -> String {
    format!("dataprocessor_v{version:04}.bin")
}
pub fn manifest_file(version: u32) -> String {
    format!("manifest_v{version:04}.json")
}

/// What a version was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    pub base_file: String,
    pub base_sha256: String,
    pub base_rows: usize,
    /// Labeled rows taken from the stream.
    pub stream_rows: usize,
    /// Per `topic/partition`: the next offset after the last stream row used.
    pub stream_offsets: BTreeMap<String, i64>,
    /// Stream rows below those offsets kept out of training for the challenger's offline check.
    #[serde(default)]
    pub held_back_rows: usize,
    /// Trained on shuffled labels (a deliberately bad model, for demos and tests).
    #[serde(default)]
    pub shuffled_labels: bool,
    /// Trained where this share of women's `>50K` labels was turned to `<=50K` (a deliberately
    /// biased model, for demos and tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biased_labels: Option<f64>,
}

impl TrainingData {
    /// Trained on the rows of adult.data (`rows` of them, whose file has `sha256`) alone.
    pub fn adult_data(sha256: &str, rows: usize) -> Self {
        TrainingData {
            base_file: crate::data::TRAIN_FILE.to_owned(),
            base_sha256: sha256.to_owned(),
            base_rows: rows,
            stream_rows: 0,
            stream_offsets: BTreeMap::new(),
            held_back_rows: 0,
            shuffled_labels: false,
            biased_labels: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub version: u32,
    pub parent_version: Option<u32>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub model_file: String,
    pub model_sha256: String,
    pub processor_file: String,
    pub processor_sha256: String,
    pub processor_format_version: u32,
    pub feature_names: Vec<String>,
    pub hyperparams: Hyperparams,
    pub cv: CvSummary,
    pub test_metrics: Option<Metrics>,
    pub training_data: TrainingData,
    pub promoted: bool,
    /// What started the retrain that made this version (none for `initialize`).
    #[serde(default)]
    pub trigger: Option<crate::lifecycle::triggers::Fired>,
    /// How its scores were calibrated in training, already folded into the model file (none:
    /// LightGBM's scores as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::train::Calibration>,
}

impl Manifest {
    /// Identity of the bundle as a whole: sha256 over the two files' sha256s.
    pub fn bundle_sha256(&self) -> String {
        crate::util::atomic_file::sha256_hex(
            format!("{}{}", self.model_sha256, self.processor_sha256).as_bytes(),
        )
    }
}

#[cfg(test)]
impl Manifest {
    /// A manifest of made-up figures for version `version`, for unit tests.
    pub(crate) fn example(version: u32) -> Self {
        Manifest {
            format: MANIFEST_FORMAT,
            version,
            parent_version: version.checked_sub(1).filter(|&p| p > 0),
            created_at: chrono::Utc::now(),
            model_file: model_file(version),
            model_sha256: "aa".repeat(32),
            processor_file: processor_file(version),
            processor_sha256: "bb".repeat(32),
            processor_format_version: crate::features::PROCESSOR_FORMAT_VERSION,
            feature_names: crate::features::feature_names(),
            hyperparams: Hyperparams::from_point(&[0.1, 100.0, 31.0, 1.0, 0.8, 0.8, 0.05, 0.05]),
            cv: CvSummary {
                folds: 3,
                log_loss: 0.29,
                best_rounds: 120,
                evaluations: 2,
                seed: 1,
                search_seconds: 4.5,
            },
            test_metrics: None,
            training_data: TrainingData::adult_data(&"cc".repeat(32), 32_561),
            promoted: false,
            trigger: None,
            calibration: None,
        }
    }
}
