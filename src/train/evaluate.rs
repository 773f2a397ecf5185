//! Test-set metrics of a binary classifier: ROC AUC, accuracy and F1 from smartcore, and the
//! binary log loss (which smartcore does not have), and the summary of a cross-validated
//! search. Plain data: training computes them, a bundle's manifest records them.

use serde::{Deserialize, Serialize};

/// Metrics of probabilities against 0/1 labels, with a 0.5 threshold for the hard ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub rows: usize,
    pub roc_auc: f64,
    pub log_loss: f64,
    pub accuracy: f64,
    pub f1: f64,
    /// Expected calibration error over ten bins of the probability (none in manifests written
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ece: Option<f64>,
    /// Brier score: the mean squared error of the probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brier: Option<f64>,
}

/// What a cross-validated search found, as a manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvSummary {
    pub folds: usize,
    pub log_loss: f64,
    pub best_rounds: usize,
    pub evaluations: usize,
    pub seed: u64,
    pub search_seconds: f64,
}

/// Mean binary log loss, with probabilities clipped away from 0 and 1 as LightGBM does.
pub fn log_loss(labels: &[f32], probs: &[f64]) -> f64 {
    let sum: f64 = labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| row_log_loss(y > 0.5, p))
        .sum();
    sum / labels.len() as f64
}

/// One row's log loss: `p` the probability of the positive class, clipped as in [`log_loss`].
pub fn row_log_loss(positive: bool, p: f64) -> f64 {
    const EPS: f64 = 1e-15;
    let p = p.clamp(EPS, 1.0 - EPS);
    if positive {
        -p.ln()
    } else {
        -(1.0 - p).ln()
    }
}

impl Metrics {
    pub fn compute(labels: &[f32], probs: &[f64]) -> Metrics {
        assert_eq!(labels.len(), probs.len(), "one probability per label");
        let y_true: Vec<f64> = labels.iter().map(|&y| f64::from(y)).collect();
        let y_prob: Vec<f64> = probs.to_vec();
        let y_hard: Vec<f64> = probs
            .iter()
            .map(|&p| if p >= 0.5 { 1.0 } else { 0.0 })
            .collect();
        let true_int: Vec<i32> = labels.iter().map(|&y| y as i32).collect();
        let hard_int: Vec<i32> = y_hard.iter().map(|&y| y as i32).collect();
        let positive: Vec<bool> = labels.iter().map(|&y| y > 0.5).collect();
        let calibration = crate::lifecycle::calibration::calibration(probs, &positive).view();
        // A model that predicts no positive (one trained on shuffled labels) has no precision:
        // its F1 is 0, as scikit-learn's `zero_division=0` says; a score that ranks nothing
        // (one class, or every probability the same) has the AUC of chance. Never NaN: a
        // manifest is JSON, which has no NaN (it would be written as null and never read back).
        let or = |x: f64, default: f64| if x.is_finite() { x } else { default };
        Metrics {
            rows: labels.len(),
            roc_auc: or(smartcore::metrics::roc_auc_score(&y_true, &y_prob), 0.5),
            log_loss: log_loss(labels, probs),
            accuracy: or(smartcore::metrics::accuracy(&true_int, &hard_int), 0.0),
            f1: or(smartcore::metrics::f1(&y_true, &y_hard, 1.0), 0.0),
            ece: calibration.as_ref().map(|c| c.ece),
            brier: calibration.as_ref().map(|c| c.brier),
        }
    }

    /// A small table for the terminal.
    pub fn table(&self) -> String {
        format!(
            "metric     value\n\
             ---------  -------\n\
             ROC AUC    {:.4}\n\
             log loss   {:.4}\n\
             accuracy   {:.4}\n\
             F1         {:.4}\n\
             ECE        {}\n\
             Brier      {}\n\
             rows       {}",
            self.roc_auc,
            self.log_loss,
            self.accuracy,
            self.f1,
            self.ece.map_or("–".into(), |e| format!("{e:.4}")),
            self.brier.map_or("–".into(), |b| format!("{b:.4}")),
            self.rows
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_that_predicts_no_positive_has_finite_metrics_that_round_trip() {
        let m = Metrics::compute(&[0.0, 1.0, 0.0, 1.0], &[0.2, 0.2, 0.2, 0.2]);
        assert_eq!((m.f1, m.roc_auc, m.accuracy), (0.0, 0.5, 0.5));
        let json = serde_json::to_string(&m).unwrap();
        let back: Metrics = serde_json::from_str(&json).expect("no null where a number goes");
        assert_eq!((back.f1, back.roc_auc, back.rows), (0.0, 0.5, 4));
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        let labels = [0.0, 0.0, 1.0, 1.0];
        let probs = [0.1, 0.4, 0.35, 0.8];
        let m = Metrics::compute(&labels, &probs);
        // sklearn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) == 0.75
        assert!((m.roc_auc - 0.75).abs() < 1e-12, "{}", m.roc_auc);
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        // precision 1/1, recall 1/2 -> F1 2/3
        assert!((m.f1 - 2.0 / 3.0).abs() < 1e-12, "{}", m.f1);
        let expected = -(0.9f64.ln() + 0.6f64.ln() + 0.35f64.ln() + 0.8f64.ln()) / 4.0;
        assert!((m.log_loss - expected).abs() < 1e-12);
        // Brier: mean of 0.01, 0.16, 0.4225, 0.04; ECE: bins 1 (0.1, no), 3 (0.35, yes),
        // 4 (0.4, no), 8 (0.8, yes): gaps 0.1, 0.65, 0.4, 0.2, each a quarter.
        assert!((m.brier.unwrap() - (0.01 + 0.16 + 0.4225 + 0.04) / 4.0).abs() < 1e-12);
        assert!((m.ece.unwrap() - (0.1 + 0.65 + 0.4 + 0.2) / 4.0).abs() < 1e-12);
    }
}
