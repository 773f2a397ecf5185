//! How far probabilities can be taken at their word: labeled predictions in ten equal-width
//! bins of the predicted probability, the share of `>50K` among each bin's labels beside its
//! mean probability (a reliability diagram), the expected calibration error (the bins' gaps
//! weighted by their counts) and the Brier score (mean squared error of the probability).

use serde::Serialize;

/// Bins of the reliability diagram.
pub const BINS: usize = 10;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Bin {
    n: u64,
    p_sum: f64,
    positives: u64,
}

/// Running sums of a version's labeled predictions.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Calibration {
    bins: [Bin; BINS],
    brier_sum: f64,
}

/// One bin as shown: its range, labels, mean probability and observed share of `>50K`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BinView {
    pub lo: f64,
    pub hi: f64,
    pub n: u64,
    pub mean_p: f64,
    pub observed: f64,
}

/// The figures of a calibration, and the labels they rest on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationView {
    pub labels: u64,
    /// Expected calibration error over the ten bins.
    pub ece: f64,
    pub brier: f64,
    /// The bins with labels, lowest first.
    pub bins: Vec<BinView>,
}

impl Calibration {
    /// Adds a labeled prediction: probability `p` of `>50K`, and whether it was.
    pub fn add(&mut self, p: f64, label: bool) {
        let p = if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let i = ((p * BINS as f64) as usize).min(BINS - 1);
        let b = &mut self.bins[i];
        b.n += 1;
        b.p_sum += p;
        b.positives += u64::from(label);
        let y = if label { 1.0 } else { 0.0 };
        self.brier_sum += (p - y) * (p - y);
    }

    pub fn plus(&mut self, o: &Calibration) {
        for (b, x) in self.bins.iter_mut().zip(&o.bins) {
            b.n += x.n;
            b.p_sum += x.p_sum;
            b.positives += x.positives;
        }
        self.brier_sum += o.brier_sum;
    }

    pub fn labels(&self) -> u64 {
        self.bins.iter().map(|b| b.n).sum()
    }

    /// The figures (none on no labels).
    pub fn view(&self) -> Option<CalibrationView> {
        let n = self.labels();
        if n == 0 {
            return None;
        }
        let bins: Vec<BinView> = self
            .bins
            .iter()
            .enumerate()
            .filter(|(_, b)| b.n > 0)
            .map(|(i, b)| BinView {
                lo: i as f64 / BINS as f64,
                hi: (i + 1) as f64 / BINS as f64,
                n: b.n,
                mean_p: b.p_sum / b.n as f64,
                observed: b.positives as f64 / b.n as f64,
            })
            .collect();
        let ece = bins
            .iter()
            .map(|b| b.n as f64 / n as f64 * (b.mean_p - b.observed).abs())
            .sum();
        Some(CalibrationView {
            labels: n,
            ece,
            brier: self.brier_sum / n as f64,
            bins,
        })
    }
}

/// The calibration of `probabilities` against `labels`.
pub fn calibration(probabilities: &[f64], labels: &[bool]) -> Calibration {
    let mut c = Calibration::default();
    for (&p, &l) in probabilities.iter().zip(labels) {
        c.add(p, l);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calibrated_model_has_no_gap_and_an_overconfident_one_does() {
        assert_eq!(Calibration::default().view(), None);
        // 0.25 right a quarter of the time, 0.85 right 85 % of the time: calibrated.
        let mut c = Calibration::default();
        for i in 0..400 {
            c.add(0.25, i % 4 == 0);
        }
        for i in 0..100 {
            c.add(0.85, i % 20 < 17);
        }
        let v = c.view().unwrap();
        assert_eq!(v.labels, 500);
        assert!(v.ece < 1e-12, "{v:?}");
        assert_eq!(v.bins.len(), 2);
        assert_eq!((v.bins[0].lo, v.bins[0].n), (0.2, 400));
        let brier = (400.0 * 0.1875 + 100.0 * 0.1275) / 500.0;
        assert!((v.brier - brier).abs() < 1e-12);
        // Saying 0.95 where the truth is 0.85: a gap of 0.10 on all of its labels.
        let mut over = Calibration::default();
        for i in 0..100 {
            over.add(0.95, i % 20 < 17);
        }
        assert!((over.view().unwrap().ece - 0.10).abs() < 1e-9);
        // Sums add up.
        let mut both = c;
        both.plus(&over);
        assert_eq!(both.labels(), 600);
        // p = 1 falls in the last bin.
        let mut edge = Calibration::default();
        edge.add(1.0, true);
        assert_eq!(edge.view().unwrap().bins[0].lo, 0.9);
    }
}
