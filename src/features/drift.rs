//! How far recent requests have drifted from the training data, feature by feature: the
//! population stability index (PSI) of their histogram against the training histogram, whose
//! bins are frozen when the processor is fitted and travel with it.
//!
//! Bins are over the model's features (scaled numerics, categorical codes): ten quantile bins
//! for a numeric feature; for a categorical one a bin per code that holds at least 1 % of the
//! training rows and one bin for all the rarer codes (hundreds of sparse bins would make PSI
//! mostly sampling noise: its expectation without drift is about bins / window).
//! PSI = Σ (q − p) · ln(q / p) over the bins, p the training share and q the recent share (both
//! floored at 1e-4); 0.1 is commonly read as a moderate shift and 0.25 as a large one.

use serde::{Deserialize, Serialize};

use super::{NUMERIC, N_FEATURES};

/// Shares below this count as this (an empty bin would make PSI infinite).
const FLOOR: f64 = 1e-4;
const NUMERIC_BINS: usize = 10;
/// A categorical code with a smaller training share shares the "rare" bin.
const RARE: f64 = 0.01;

/// One feature's training histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBins {
    /// Upper edges of the bins but the last (numeric features); empty for categorical ones.
    edges: Vec<f64>,
    /// The bin of each code (categorical features); codes past the end go to the last bin.
    codes: Vec<u16>,
    /// Share of training rows in each bin.
    shares: Vec<f64>,
}

impl FeatureBins {
    fn bin(&self, value: f64) -> usize {
        if self.codes.is_empty() {
            self.edges.partition_point(|&e| e < value)
        } else {
            let code = value.max(0.0) as usize;
            self.codes
                .get(code)
                .map_or(self.shares.len() - 1, |&b| b as usize)
        }
    }
}

/// The training histograms of every feature, in model column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReference {
    features: Vec<FeatureBins>,
}

impl DriftReference {
    /// No histograms yet (a processor being fitted).
    pub(super) fn empty() -> Self {
        DriftReference {
            features: Vec::new(),
        }
    }

    /// Whether the histograms have the shape of features with these categorical cardinalities.
    pub(super) fn fits(&self, cardinalities: &[usize]) -> bool {
        self.features.len() == N_FEATURES
            && self.features.iter().enumerate().all(|(j, f)| {
                let shares_ok = f.shares.iter().all(|s| (0.0..=1.0).contains(s));
                if j < NUMERIC.len() {
                    shares_ok && f.codes.is_empty() && f.shares.len() == f.edges.len() + 1
                } else {
                    shares_ok
                        && f.edges.is_empty()
                        && f.codes.len() == cardinalities[j - NUMERIC.len()] + 1
                        && f.codes.iter().all(|&b| (b as usize) < f.shares.len())
                }
            })
    }

    /// Histograms of row-major `features` (`N_FEATURES` a row) whose categorical columns have
    /// `cardinalities[j]` known codes (plus the unknown code 0).
    pub fn fit(features: &[f64], cardinalities: &[usize]) -> Self {
        let rows = features.len() / N_FEATURES;
        assert!(rows > 0, "histograms of no rows");
        let column = |j: usize| features.iter().skip(j).step_by(N_FEATURES).copied();
        let mut out = Vec::with_capacity(N_FEATURES);
        for j in 0..N_FEATURES {
            let bins = if j < NUMERIC.len() {
                let mut v: Vec<f64> = column(j).collect();
                v.sort_by(f64::total_cmp);
                let mut edges: Vec<f64> = (1..NUMERIC_BINS)
                    .map(|k| v[(k * rows / NUMERIC_BINS).min(rows - 1)])
                    .collect();
                edges.dedup();
                FeatureBins {
                    shares: vec![0.0; edges.len() + 1],
                    edges,
                    codes: Vec::new(),
                }
            } else {
                let codes = cardinalities[j - NUMERIC.len()] + 1;
                let mut counts = vec![0usize; codes];
                for x in column(j) {
                    counts[(x.max(0.0) as usize).min(codes - 1)] += 1;
                }
                let mut next = 0u16;
                let frequent: Vec<Option<u16>> = counts
                    .iter()
                    .map(|&c| {
                        (c as f64 >= RARE * rows as f64).then(|| {
                            next += 1;
                            next - 1
                        })
                    })
                    .collect();
                let rare = next;
                FeatureBins {
                    edges: Vec::new(),
                    codes: frequent.iter().map(|b| b.unwrap_or(rare)).collect(),
                    shares: vec![0.0; rare as usize + 1],
                }
            };
            out.push(bins);
        }
        let mut reference = DriftReference { features: out };
        let mut window = DriftWindow::new(&reference);
        window.add(features);
        for (f, counts) in reference.features.iter_mut().zip(&window.counts) {
            for (share, &c) in f.shares.iter_mut().zip(counts) {
                *share = c as f64 / rows.max(1) as f64;
            }
        }
        reference
    }

    /// PSI of each feature for the requests counted in `window`.
    pub fn psi(&self, window: &DriftWindow) -> Vec<f64> {
        let n = window.rows.max(1) as f64;
        self.features
            .iter()
            .zip(&window.counts)
            .map(|(f, counts)| {
                f.shares
                    .iter()
                    .zip(counts)
                    .map(|(&p, &c)| {
                        let (p, q) = (p.max(FLOOR), (c as f64 / n).max(FLOOR));
                        (q - p) * (q / p).ln()
                    })
                    .sum()
            })
            .collect()
    }
}

/// Histograms of recent requests over a reference's bins.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftWindow {
    counts: Vec<Vec<u64>>,
    rows: u64,
    bins: Vec<FeatureBins>,
}

impl DriftWindow {
    pub fn new(reference: &DriftReference) -> Self {
        DriftWindow {
            counts: reference
                .features
                .iter()
                .map(|f| vec![0; f.shares.len()])
                .collect(),
            rows: 0,
            bins: reference.features.clone(),
        }
    }

    /// Counts row-major `features` (`N_FEATURES` a row).
    pub fn add(&mut self, features: &[f64]) {
        for row in features.chunks_exact(N_FEATURES) {
            for ((f, counts), &x) in self.bins.iter().zip(&mut self.counts).zip(row) {
                counts[f.bin(x)] += 1;
            }
            self.rows += 1;
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::row;
    use super::super::FeatureProcessor;
    use super::*;

    #[test]
    fn the_training_rows_do_not_drift_from_themselves_and_a_shift_is_measured() {
        let rows: Vec<_> = (0..400)
            .map(|i| {
                let workclass = if i % 3 == 0 { "Private" } else { "Local-gov" };
                row(workclass, "Sales", "Peru", 20.0 + (i % 50) as f64)
            })
            .collect();
        let p = FeatureProcessor::fit(rows.iter());
        let reference = p.drift_reference();
        let mut same = DriftWindow::new(reference);
        same.add(&p.transform_batch(rows.iter()));
        assert_eq!(same.rows(), 400);
        assert!(reference.psi(&same).iter().all(|&x| x < 1e-9));

        // Everyone is now 60 and works for the state: age and workclass drift, nothing else.
        let shifted: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.age = 60.0;
                r.workclass = "State-gov".into();
                r
            })
            .collect();
        let mut drifted = DriftWindow::new(reference);
        drifted.add(&p.transform_batch(shifted.iter()));
        let psi = reference.psi(&drifted);
        let (age, workclass) = (0, NUMERIC.len());
        assert!(psi[age] > 1.0 && psi[workclass] > 0.25, "{psi:?}");
        assert!(psi[1] < 1e-9, "fnlwgt did not move: {psi:?}");
    }
}
