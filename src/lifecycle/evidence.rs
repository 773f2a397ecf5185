//! The figures behind a decision of the gate, as the registry records them beside the alias
//! they move and as the page and the logs show them.

use serde::{Deserialize, Serialize};

use super::fairness::GapEvidence;

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
    /// The fairness condition's figures: the gap between groups of most concern (see
    /// [`super::fairness`]); absent where no fairness test ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fairness: Option<Box<GapEvidence>>,
}

impl std::fmt::Display for Evidence {
    /// `n 400, mean d -0.0123, 95% interval [-0.0200, -0.0046]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n {}, mean d {:+.4}, {:.0}% interval [{}, {}]",
            self.n,
            self.mean_d,
            (1.0 - self.alpha) * 100.0,
            bound(self.interval[0]),
            bound(self.interval[1])
        )?;
        match &self.fairness {
            Some(gap) => write!(f, "; {gap}"),
            None => Ok(()),
        }
    }
}

/// A bound of the interval: `-∞` or `+∞` where it is unbounded (no labels yet: the largest
/// float, or past any log loss a model could have).
fn bound(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.abs() >= 1e6 {
        if x < 0.0 { "-∞" } else { "+∞" }.into()
    } else {
        format!("{x:+.4}")
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn an_unbounded_interval_reads_as_infinities() {
        let mut e = Evidence {
            n: 0,
            mean_d: 0.0,
            interval: [-f64::MAX, f64::MAX],
            statistic: 0.0,
            alpha: 0.05,
            delta: 0.01,
            fairness: None,
        };
        assert_eq!(e.to_string(), "n 0, mean d +0.0000, 95% interval [-∞, +∞]");
        e.interval = [-0.02, 0.0046];
        assert!(e.to_string().ends_with("[-0.0200, +0.0046]"), "{e}");
    }
}
