//! Quality estimated from the served probabilities alone, before any label comes
//! (confidence-based performance estimation, as NannyML's CBPE does): a calibrated probability p
//! of `>50K` is right with probability max(p, 1 − p), and its expected log loss is its entropy.
//! Sound only as far as the scores are calibrated, and blind to concept drift — the labels'
//! relation to the features changing leaves the probabilities, and so the estimate, as they
//! were: the realised figures, once labels come, are the check.

use super::gate::{log_loss, EPS as CLIP};

/// Running sums of an estimate over served predictions.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub predictions: u64,
    pub confidence_sum: f64,
    pub entropy_sum: f64,
}

impl Estimate {
    /// Adds a served probability of `>50K`.
    pub fn add(&mut self, p: f64) {
        let p = p.clamp(CLIP, 1.0 - CLIP);
        self.predictions += 1;
        self.confidence_sum += p.max(1.0 - p);
        self.entropy_sum += -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
    }

    pub fn plus(&mut self, o: &Estimate) {
        self.predictions += o.predictions;
        self.confidence_sum += o.confidence_sum;
        self.entropy_sum += o.entropy_sum;
    }

    /// Estimated accuracy (none on no predictions).
    pub fn accuracy(&self) -> Option<f64> {
        (self.predictions > 0).then(|| self.confidence_sum / self.predictions as f64)
    }

    /// Estimated mean log loss (none on no predictions).
    pub fn log_loss(&self) -> Option<f64> {
        (self.predictions > 0).then(|| self.entropy_sum / self.predictions as f64)
    }
}

/// One window of predictions: the estimate and, beside it, what its labels showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub n: usize,
    pub estimated_accuracy: f64,
    pub realised_accuracy: f64,
    pub estimated_log_loss: f64,
    pub realised_log_loss: f64,
}

/// The estimate against the truth over consecutive windows of `size` predictions (a last,
/// shorter window included).
pub fn windows(probabilities: &[f64], labels: &[bool], size: usize) -> Vec<Window> {
    probabilities
        .chunks(size.max(1))
        .zip(labels.chunks(size.max(1)))
        .map(|(ps, ls)| {
            let mut e = Estimate::default();
            let (mut right, mut loss) = (0usize, 0.0);
            for (&p, &l) in ps.iter().zip(ls) {
                e.add(p);
                right += usize::from((p >= 0.5) == l);
                loss += log_loss(p, l);
            }
            Window {
                n: ps.len(),
                estimated_accuracy: e.accuracy().unwrap_or(f64::NAN),
                realised_accuracy: right as f64 / ps.len() as f64,
                estimated_log_loss: e.log_loss().unwrap_or(f64::NAN),
                realised_log_loss: loss / ps.len() as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_scores_are_estimated_right_and_no_predictions_give_no_figure() {
        assert_eq!(Estimate::default().accuracy(), None);
        // Probabilities 0.9 and 0.2, right as often as they say: 90 % and 80 %.
        let mut ps = Vec::new();
        let mut ls = Vec::new();
        for i in 0..1000 {
            ps.push(0.9);
            ls.push(i % 10 != 0);
            ps.push(0.2);
            ls.push(i % 5 == 0);
        }
        let w = windows(&ps, &ls, 2000);
        assert_eq!(w.len(), 1);
        assert!((w[0].estimated_accuracy - 0.85).abs() < 1e-12);
        assert!((w[0].realised_accuracy - 0.85).abs() < 1e-12);
        assert!((w[0].estimated_log_loss - w[0].realised_log_loss).abs() < 1e-9);
        // Concept drift: the same scores, labels flipped for half of the 0.9s. The estimate
        // cannot see it; the realised accuracy falls.
        for (i, l) in ls.iter_mut().enumerate() {
            if i % 4 == 0 {
                *l = !*l;
            }
        }
        let drifted = windows(&ps, &ls, 2000)[0];
        assert_eq!(drifted.estimated_accuracy, w[0].estimated_accuracy);
        // A quarter of the labels flipped: 0.85 falls to 0.70, the estimate stays at 0.85.
        assert!(
            (drifted.realised_accuracy - 0.70).abs() < 1e-12,
            "{drifted:?}"
        );
    }
}
