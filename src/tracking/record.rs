//! What MLflow gets for a bundle version: one run for the search that made it (parameters,
//! the CV log loss of every evaluation, test metrics, the bundle's three files as artifacts)
//! and one version of the registered model, made from that run.

use std::path::PathBuf;

use crate::bundle::{manifest_file, BundleStore, Manifest};

/// A bundle version as MLflow shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    /// The bundle's version (MLflow numbers its model versions itself).
    pub version: u32,
    pub run_name: String,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub params: Vec<(String, String)>,
    /// Single-valued metrics.
    pub metrics: Vec<(String, f64)>,
    /// The CV log loss of each evaluation of the search, in the order they finished: the
    /// metric `cv_log_loss`, one step each.
    pub evaluations: Vec<f64>,
    pub tags: Vec<(String, String)>,
    pub artifacts: Vec<Artifact>,
    /// Registered as a version of the model (false for a bundle that was never published).
    pub register: bool,
}

/// A file to upload as the artifact `path` of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub path: String,
    pub file: PathBuf,
}

/// The tag of a model version naming its bundle version.
pub const BUNDLE_VERSION_TAG: &str = "bundle_version";

impl VersionRecord {
    /// The record of the bundle `manifest` describes, stored in `store`; `evaluations` are the
    /// CV log losses of its search, `started_ms` when its training began.
    pub fn of_bundle(
        manifest: &Manifest,
        store: &BundleStore,
        evaluations: &[f64],
        started_ms: i64,
    ) -> Self {
        let m = manifest;
        let mut params: Vec<(String, String)> = match serde_json::to_value(m.hyperparams) {
            Ok(serde_json::Value::Object(fields)) => fields
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            _ => Vec::new(),
        };
        let td = &m.training_data;
        params.extend(
            [
                ("best_rounds", m.cv.best_rounds.to_string()),
                ("cv_folds", m.cv.folds.to_string()),
                ("evaluations", m.cv.evaluations.to_string()),
                ("seed", m.cv.seed.to_string()),
                ("base_rows", td.base_rows.to_string()),
                ("stream_rows", td.stream_rows.to_string()),
                ("held_back_rows", td.held_back_rows.to_string()),
                ("shuffled_labels", td.shuffled_labels.to_string()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let mut metrics = vec![
            ("best_cv_log_loss".to_owned(), m.cv.log_loss),
            ("search_seconds".to_owned(), m.cv.search_seconds),
        ];
        if let Some(t) = &m.test_metrics {
            metrics.extend([
                ("test_log_loss".to_owned(), t.log_loss),
                ("test_roc_auc".to_owned(), t.roc_auc),
                ("test_accuracy".to_owned(), t.accuracy),
                ("test_f1".to_owned(), t.f1),
                ("test_rows".to_owned(), t.rows as f64),
            ]);
            metrics.extend(t.ece.map(|e| ("test_ece".to_owned(), e)));
            metrics.extend(t.brier.map(|b| ("test_brier".to_owned(), b)));
        }
        if let Some(c) = &m.calibration {
            metrics.extend([
                ("platt_a".to_owned(), c.platt.a),
                ("platt_b".to_owned(), c.platt.b),
                ("oof_log_loss_uncalibrated".to_owned(), c.log_loss_before),
                ("oof_log_loss".to_owned(), c.log_loss_after),
                ("oof_ece_uncalibrated".to_owned(), c.ece_before),
                ("oof_ece".to_owned(), c.ece_after),
            ]);
        }
        let mut tags = vec![
            (BUNDLE_VERSION_TAG.to_owned(), m.version.to_string()),
            ("bundle_sha256".to_owned(), m.bundle_sha256()),
            ("model_sha256".to_owned(), m.model_sha256.clone()),
            ("processor_sha256".to_owned(), m.processor_sha256.clone()),
            ("base_sha256".to_owned(), td.base_sha256.clone()),
        ];
        if let Some(p) = m.parent_version {
            tags.push(("parent_version".to_owned(), p.to_string()));
        }
        if let Some(t) = &m.trigger {
            tags.push((
                "trigger".to_owned(),
                format!("{}: {}", t.kind.as_label(), t.figures),
            ));
        }
        let v = m.version;
        let artifacts = vec![
            Artifact {
                path: format!("models/{}", m.model_file),
                file: store.models_dir().join(&m.model_file),
            },
            Artifact {
                path: format!("dataprocessors/{}", m.processor_file),
                file: store.processors_dir().join(&m.processor_file),
            },
            Artifact {
                path: format!("models/{}", manifest_file(v)),
                file: store.models_dir().join(manifest_file(v)),
            },
        ];
        VersionRecord {
            version: v,
            run_name: format!("v{v:04}"),
            started_ms,
            finished_ms: m.created_at.timestamp_millis(),
            params,
            metrics,
            evaluations: evaluations.to_vec(),
            tags,
            artifacts,
            register: true,
        }
    }

    /// Adds or replaces the tag `key`.
    pub fn tag(&mut self, key: &str, value: impl Into<String>) {
        self.tags.retain(|(k, _)| k != key);
        self.tags.push((key.to_owned(), value.into()));
    }

    /// The tags of its model version: what identifies the bundle.
    pub fn model_version_tags(&self) -> Vec<(String, String)> {
        self.tags
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    BUNDLE_VERSION_TAG | "bundle_sha256" | "model_sha256" | "processor_sha256"
                )
            })
            .cloned()
            .collect()
    }
}
