//! The figures behind a decision of the gate, as the registry records them beside the alias
//! they move and as the page and the logs show them.

use serde::{Deserialize, Serialize};

/// The figures behind a decision of the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Labeled requests scored by both models.
    pub n: u64,
    /// Mean of d = log loss(challenger) − log loss(champion) per request.
    pub mean_d: f64,
    /// Always-valid confidence interval for the mean of d.
    pub interval: [f64; 2],
    /// The test's statistic (log of the mixture likelihood ratio).
    pub statistic: f64,
    pub alpha: f64,
    pub delta: f64,
}

impl std::fmt::Display for Evidence {
    /// `n 400, mean d -0.0123, 95% interval [-0.0200, -0.0046]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n {}, mean d {:+.4}, {:.0}% interval [{:+.4}, {:+.4}]",
            self.n,
            self.mean_d,
            (1.0 - self.alpha) * 100.0,
            self.interval[0],
            self.interval[1]
        )
    }
}
