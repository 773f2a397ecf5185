//! What the load test measured, and its text.

use std::time::Duration;

use crate::predictor::PredictorStats;
use crate::producer::Summary;

/// What the load test measured.
#[derive(Debug)]
pub struct LoadReport {
    pub summary: Summary,
    pub predictors: Vec<PredictorStats>,
    pub warmup: Duration,
}

impl LoadReport {
    pub fn text(&self) -> String {
        let mut s = self.summary.report();
        if !self.predictors.is_empty() {
            let batches: u64 = self.predictors.iter().map(|p| p.batches).sum();
            let scored: u64 = self.predictors.iter().map(|p| p.predicted).sum();
            s += &format!(
                "predictors here: {}, {} batches, {:.1} records a batch\n",
                self.predictors.len(),
                batches,
                scored as f64 / batches.max(1) as f64
            );
        }
        s
    }
}
