//! The JSON messages of the four topics. README's "Topics" section documents them for users.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::bundle::{BundleFiles, Manifest};
use crate::data::CensusRow;

/// `census.requests`: one census row to score. Keyed by `request_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub request_id: String,
    /// When the producer sent it, milliseconds since the Unix epoch.
    pub sent_at_ms: i64,
    /// The true label (`<=50K` / `>50K`) when known; labeled rows feed the retrainer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub income_bracket: Option<String>,
    pub record: CensusRow,
}

/// `census.labels`: the true label of a request, sent apart from it (later, or for some requests
/// only). Keyed by `request_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub request_id: String,
    /// `<=50K` or `>50K`.
    pub income_bracket: String,
    /// When the label became known, milliseconds since the Unix epoch.
    pub labeled_at_ms: i64,
}

/// `census.predictions`: one per request. Keyed by `request_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub request_id: String,
    /// Probability of `>50K`.
    pub probability: f64,
    /// `>50K` when `probability >= 0.5`, else `<=50K`.
    pub predicted: String,
    /// The request's true label, echoed when it had one.
    pub income_bracket: Option<String>,
    /// The champion's version: the model that made this prediction.
    pub model_version: u32,
    pub bundle_sha256: String,
    /// The challenger scored in shadow, when there is one: its version and probability. Never
    /// the served prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenger_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenger_probability: Option<f64>,
    pub sent_at_ms: i64,
    pub predicted_at_ms: i64,
    /// Where the request was read: partition and offset in `census.requests`.
    pub partition: i32,
    pub offset: i64,
    /// Why the champion scored it so, for an explained prediction (`--explain`): every feature
    /// that moved its log-odds, largest contribution first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// The same for the challenger in shadow, on the same explained predictions: how the two
    /// lean on the features differently shows before any promotion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenger_reasons: Vec<Reason>,
}

/// One feature's part in a prediction: its TreeSHAP contribution to the log-odds of `>50K` of
/// the probability served (positive: towards `>50K`; the contributions of every feature and the
/// model's expected value sum to those log-odds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub feature: String,
    /// The request's value of it, as the request wrote it.
    pub value: String,
    pub contribution: f64,
}

/// A bundle record of `census.models` (see `registry::records`): a whole bundle, so that a
/// predictor anywhere needs only the broker. Compressed by the producer (lz4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMessage {
    pub manifest: Manifest,
    /// LightGBM's text model.
    pub model_text: String,
    /// The processor file, base64.
    pub processor_base64: String,
}

impl ModelMessage {
    pub fn from_files(files: &BundleFiles) -> Result<Self, std::str::Utf8Error> {
        Ok(ModelMessage {
            manifest: files.manifest.clone(),
            model_text: std::str::from_utf8(&files.model_text)?.to_owned(),
            processor_base64: base64::engine::general_purpose::STANDARD.encode(&files.processor),
        })
    }

    pub fn into_files(self) -> Result<BundleFiles, base64::DecodeError> {
        Ok(BundleFiles {
            processor: base64::engine::general_purpose::STANDARD.decode(&self.processor_base64)?,
            model_text: self.model_text.into_bytes(),
            manifest: self.manifest,
        })
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
