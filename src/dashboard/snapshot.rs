//! What the page is sent: the board as of one moment, as JSON. Numbers the page shows are
//! computed here, once, so that the page only draws.

use std::collections::BTreeMap;

use serde::Serialize;

/// A moment of the registry's story.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Moment {
    pub at_ms: i64,
    /// `trained`, `champion`, `challenger`, `decided`.
    pub kind: &'static str,
    pub version: Option<u32>,
    pub text: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub predictions: u64,
    pub dead_letters: u64,
    /// Predictions waiting for their label (within the label window).
    pub labels_pending: u64,
}

/// Per second over the last minutes, oldest first; `t` in ms since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Series {
    pub t: Vec<i64>,
    pub requests: Vec<u64>,
    pub predictions: Vec<u64>,
    pub dead_letters: Vec<u64>,
    pub p50_ms: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tally {
    pub labeled: u64,
    pub accuracy: f64,
    pub log_loss: f64,
}

/// Cumulative figures at the end of a step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    pub t: i64,
    pub accuracy: f64,
    pub log_loss: f64,
    /// Observations it rests on: labels (realised), predictions (estimated).
    pub n: u64,
}

/// One window (a minute) of a version's served predictions: the quality estimated from their
/// probabilities, and the realised quality on the labels that have come for them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowView {
    /// The window's end.
    pub t: i64,
    pub predictions: u64,
    pub estimated_accuracy: f64,
    pub estimated_log_loss: f64,
    pub realised: Option<Tally>,
}

/// Quality estimated from the served probabilities alone (see `board::Estimate`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EstimateView {
    pub predictions: u64,
    pub accuracy: f64,
    pub log_loss: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionView {
    pub version: u32,
    /// `champion`, `challenger` or `retired`.
    pub role: &'static str,
    pub created_at_ms: Option<i64>,
    pub cv_log_loss: Option<f64>,
    pub test_auc: Option<f64>,
    /// Its manifest's test metrics: on adult.test's rows it was not trained on (their number
    /// in `rows`), with its calibration there.
    pub test: Option<crate::train::evaluate::Metrics>,
    /// Predictions it served.
    pub predictions: u64,
    /// Its labeled predictions, served and scored in shadow.
    pub served: Option<Tally>,
    /// Of those served, the rows whose features came for the first time (no version can have
    /// trained on them): where a repeated input cannot inflate the figure.
    pub new_rows: Option<Tally>,
    pub shadow: Option<Tally>,
    pub served_series: Vec<Step>,
    pub shadow_series: Vec<Step>,
    /// Estimated from its served probabilities, before labels: cumulative, and over time.
    pub estimated: Option<EstimateView>,
    pub estimated_series: Vec<Step>,
    /// Per minute of its served predictions: estimated, and realised on the labels come so far.
    pub windows: Vec<WindowView>,
    /// Its served predictions' calibration on their labels: reliability bins, ECE, Brier.
    pub calibration: Option<crate::lifecycle::calibration::CalibrationView>,
    /// Its feature importance, from the predictions it served with their reasons.
    pub importance: Option<ImportanceView>,
    /// Its served predictions' figures per group of sex, race, sex × race and age, with their
    /// gaps, on their labels, over rows whose features came for the first time (no version
    /// can have trained on them).
    pub groups: Option<Vec<crate::lifecycle::groups::AttributeView>>,
}

/// A version's global feature importance: each feature's mean absolute contribution to the
/// log-odds over the `explained` predictions it served with their reasons, largest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportanceView {
    pub explained: u64,
    pub features: Vec<(String, f64)>,
    /// For the champion and the challenger: the same minute by minute (of the predictions'
    /// time), up to the last hour, oldest first.
    pub minutes: Vec<MinuteImportance>,
}

/// A version's importance over one minute's explained predictions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinuteImportance {
    /// The end of the minute (ms since the epoch).
    pub t: i64,
    pub explained: u64,
    /// Each feature's mean |contribution| in the minute, in the order of the version's
    /// `features`.
    pub means: Vec<f64>,
    /// How far the minute's attribution lies from the version's whole: the total variation
    /// distance between each feature's share of the importance in the two (0 to 1).
    pub shift: f64,
}

/// A prediction served with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explained {
    pub request_id: String,
    pub probability: f64,
    pub model_version: u32,
    pub at_ms: i64,
    /// Its largest reasons, largest first.
    pub reasons: Vec<crate::stream::messages::Reason>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AliasView {
    pub version: Option<u32>,
    pub set_at_ms: i64,
    pub reason: String,
    pub probation: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateView {
    pub challenger: u32,
    pub champion: u32,
    pub probation: bool,
    pub labels: u64,
    pub min_labels: u64,
    pub max_labels: u64,
    pub mean_d: f64,
    pub interval: Option<[f64; 2]>,
    pub delta: f64,
    pub alpha: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftView {
    /// The champion whose training data the requests are compared with.
    pub version: u32,
    pub rows: u64,
    /// A whole window (else the window filling now).
    pub complete: bool,
    /// The retrainer's drift trigger, if on.
    pub threshold: Option<f64>,
    pub features: Vec<(String, f64)>,
}

/// A dead letter as listed: when, why, its error, and where its record was read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatestDeadLetter {
    pub at_ms: i64,
    pub reason: String,
    pub error: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latest {
    pub request_id: String,
    pub probability: f64,
    pub predicted: String,
    pub truth: Option<String>,
    pub model_version: u32,
    pub challenger_version: Option<u32>,
    pub challenger_probability: Option<f64>,
    pub latency_ms: f64,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub now_ms: i64,
    /// The stream's records shown were written from then on (`None`: all of them).
    pub since_ms: Option<i64>,
    pub totals: Totals,
    pub requests_per_s: f64,
    pub predictions_per_s: f64,
    /// Request sent to prediction made, over the last 10 s.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests the predictors' group has not committed yet.
    pub lag: Option<i64>,
    pub series: Series,
    pub versions: Vec<VersionView>,
    /// Older versions the board no longer keeps figures of (it keeps the newest
    /// [`super::board::VERSIONS_KEPT`] and those in use).
    pub versions_forgotten: u64,
    pub versions_kept: usize,
    pub champion: Option<AliasView>,
    pub challenger: Option<AliasView>,
    pub gate: Option<GateView>,
    /// Newest first.
    pub timeline: Vec<Moment>,
    pub dead_letters: BTreeMap<String, u64>,
    /// The latest dead letters, newest first.
    pub latest_dead_letters: Vec<LatestDeadLetter>,
    pub drift: Option<DriftView>,
    /// Newest first.
    pub latest: Vec<Latest>,
    /// The latest predictions served with their reasons, newest first.
    pub latest_explained: Vec<Explained>,
}
