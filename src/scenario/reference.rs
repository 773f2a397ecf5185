//! The reference: the concept the scenario rows follow. A naive Bayes model of the census,
//! counted on adult.data (every field one term, numbers in bins), its log-odds then scaled and
//! shifted (Platt's two parameters, fitted by Nelder–Mead on adult.test's log loss) so that its
//! probabilities are calibrated. A scenario draws each row's label from the reference's
//! probability: a row's label is a fresh coin, not a fact to remember, and the best any model
//! can do on the stream is known (the mean of `max(p, 1 − p)`).
//!
//! The reference is independent of every model the pipeline trains (another family, fitted
//! apart): no version gets the stream's concept for free.

use std::collections::HashMap;

use argmin::core::{CostFunction, Error as ArgminError, Executor};
use argmin::solver::neldermead::NelderMead;

use crate::data::{CensusRow, LabeledRow};

/// The reference's terms, in the order of [`Reference::terms`].
pub const TERMS: [&str; 12] = [
    "age",
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
];

/// Index of `marital_status` and `relationship` in [`TERMS`]: the terms a concept drift fades.
pub const MARRIAGE_TERMS: [usize; 2] = [3, 5];

const AGE_BINS: [f64; 11] = [20., 25., 30., 35., 40., 45., 50., 55., 60., 65., 70.];
const HOURS_BINS: [f64; 8] = [20., 30., 35., 40., 41., 45., 50., 60.];
const GAIN_BINS: [f64; 4] = [1., 3_000., 5_000., 7_000.];
const LOSS_BINS: [f64; 4] = [1., 1_500., 1_900., 2_300.];

/// A row's value of each term: a category's text, or a number's bin.
fn values(row: &CensusRow) -> [String; 12] {
    let bin = |v: f64, edges: &[f64]| format!("bin{}", edges.iter().filter(|&&e| v >= e).count());
    [
        bin(row.age, &AGE_BINS),
        row.workclass.clone(),
        row.education.clone(),
        row.marital_status.clone(),
        row.occupation.clone(),
        row.relationship.clone(),
        row.race.clone(),
        row.sex.clone(),
        bin(row.capital_gain, &GAIN_BINS),
        bin(row.capital_loss, &LOSS_BINS),
        bin(row.hours_per_week, &HOURS_BINS),
        row.native_country.clone(),
    ]
}

/// One term's log-likelihood ratios, `ln P(v | >50K) − ln P(v | <=50K)`, add-one smoothed; a
/// value never counted gets `unseen`.
#[derive(Debug, Clone)]
struct Term {
    ratio: HashMap<String, f64>,
    unseen: f64,
}

#[derive(Debug, Clone)]
pub struct Reference {
    prior: f64,
    terms: Vec<Term>,
    /// Platt's scale and shift of the raw log-odds.
    scale: f64,
    shift: f64,
}

impl Reference {
    /// Counts the terms on `train`, then calibrates on `calibrate` (rows the counts did not see).
    pub fn fit(train: &[LabeledRow], calibrate: &[LabeledRow]) -> Self {
        assert!(!train.is_empty() && !calibrate.is_empty(), "rows to fit on");
        let positives = train.iter().filter(|r| r.label).count() as f64;
        let negatives = train.len() as f64 - positives;
        let prior = ((positives + 1.0) / (negatives + 1.0)).ln();
        let mut counts: Vec<HashMap<String, [f64; 2]>> = vec![HashMap::new(); TERMS.len()];
        for r in train {
            for (c, v) in counts.iter_mut().zip(values(&r.row)) {
                c.entry(v).or_default()[usize::from(r.label)] += 1.0;
            }
        }
        let terms = counts
            .into_iter()
            .map(|c| {
                // One slot more than the values seen, for a value never seen.
                let k = c.len() as f64 + 1.0;
                let ratio_of = |n: [f64; 2]| {
                    ((n[1] + 1.0) / (positives + k)).ln() - ((n[0] + 1.0) / (negatives + k)).ln()
                };
                Term {
                    unseen: ratio_of([0.0, 0.0]),
                    ratio: c.into_iter().map(|(v, n)| (v, ratio_of(n))).collect(),
                }
            })
            .collect();
        let mut reference = Reference {
            prior,
            terms,
            scale: 1.0,
            shift: 0.0,
        };
        (reference.scale, reference.shift) = platt(&reference, calibrate);
        reference
    }

    /// Each term's contribution to the raw log-odds of `row`.
    pub fn terms(&self, row: &CensusRow) -> [f64; 12] {
        let values = values(row);
        std::array::from_fn(|i| {
            let t = &self.terms[i];
            t.ratio.get(&values[i]).copied().unwrap_or(t.unseen)
        })
    }

    /// The calibrated probability of `>50K` from raw log-odds.
    pub fn probability_of(&self, raw: f64) -> f64 {
        sigmoid(self.scale * raw + self.shift)
    }

    /// The raw (uncalibrated) log-odds of `row`, with `faded` of each term in `fade` taken out.
    pub fn raw(&self, row: &CensusRow, fade: &[usize], faded: f64) -> f64 {
        let terms = self.terms(row);
        let fading: f64 = fade.iter().map(|&i| terms[i]).sum();
        self.prior + terms.iter().sum::<f64>() - faded * fading
    }

    /// The calibrated probability of `>50K` for `row`.
    pub fn probability(&self, row: &CensusRow) -> f64 {
        self.probability_of(self.raw(row, &[], 0.0))
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Binary log loss of probability `p` for `label`, clipped as the metrics clip.
pub fn log_loss(p: f64, label: bool) -> f64 {
    let p = p.clamp(1e-15, 1.0 - 1e-15);
    -if label { p.ln() } else { (1.0 - p).ln() }
}

/// The log loss of `sigmoid(a·raw + b)` over labelled raw log-odds.
struct PlattLoss<'a>(&'a [(f64, bool)]);

impl CostFunction for PlattLoss<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, ab: &Vec<f64>) -> Result<f64, ArgminError> {
        let total: f64 = self
            .0
            .iter()
            .map(|&(raw, label)| log_loss(sigmoid(ab[0] * raw + ab[1]), label))
            .sum();
        Ok(total / self.0.len() as f64)
    }
}

/// Platt's `(a, b)` minimising the log loss of `reference` on `rows`.
fn platt(reference: &Reference, rows: &[LabeledRow]) -> (f64, f64) {
    let scored: Vec<(f64, bool)> = rows
        .iter()
        .map(|r| (reference.raw(&r.row, &[], 0.0), r.label))
        .collect();
    let simplex = vec![vec![1.0, 0.0], vec![0.5, 0.0], vec![1.0, 0.5]];
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(1e-7)
        .expect("a positive tolerance");
    let best = Executor::new(PlattLoss(&scored), solver)
        .configure(|state| state.max_iters(500))
        .run()
        .ok()
        .and_then(|r| r.state.best_param)
        .unwrap_or_else(|| vec![1.0, 0.0]);
    (best[0], best[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load_adult, Fetch};

    fn adult() -> Option<crate::data::AdultData> {
        load_adult(std::path::Path::new("data"), &Fetch::Never).ok()
    }

    #[test]
    fn the_reference_is_calibrated_and_as_good_as_a_simple_model_on_rows_it_did_not_count() {
        let Some(adult) = adult() else {
            panic!("data/adult.data and data/adult.test are needed (scripts/test.sh puts them)");
        };
        let reference = Reference::fit(&adult.train, &adult.test);
        let n = adult.test.len() as f64;
        let p: Vec<f64> = adult
            .test
            .iter()
            .map(|r| reference.probability(&r.row))
            .collect();
        let accuracy = adult
            .test
            .iter()
            .zip(&p)
            .filter(|(r, &p)| (p >= 0.5) == r.label)
            .count() as f64
            / n;
        let mean_p = p.iter().sum::<f64>() / n;
        let positives = adult.test.iter().filter(|r| r.label).count() as f64 / n;
        // Naive Bayes on the census scores about 0.83; calibrated, the mean probability is the
        // share of positives.
        assert!((0.80..0.88).contains(&accuracy), "accuracy {accuracy}");
        assert!((mean_p - positives).abs() < 0.01, "{mean_p} vs {positives}");
        // Platt's fit beats the raw naive Bayes (overconfident) on log loss.
        let raw_loss: f64 = adult
            .test
            .iter()
            .map(|r| log_loss(sigmoid(reference.raw(&r.row, &[], 0.0)), r.label))
            .sum::<f64>()
            / n;
        let loss: f64 = adult
            .test
            .iter()
            .zip(&p)
            .map(|(r, &p)| log_loss(p, r.label))
            .sum::<f64>()
            / n;
        assert!(loss < raw_loss, "{loss} vs raw {raw_loss}");
        assert!(
            reference.scale > 0.0 && reference.scale < 1.0,
            "{}",
            reference.scale
        );
    }

    #[test]
    fn fading_the_marriage_terms_takes_them_out_of_the_log_odds() {
        let Some(adult) = adult() else {
            panic!("data/adult.data is needed (scripts/test.sh puts it there)");
        };
        let reference = Reference::fit(&adult.train[..5000], &adult.train[5000..8000]);
        let row = &adult.train[0].row;
        let terms = reference.terms(row);
        let full = reference.raw(row, &[], 0.0);
        let faded = reference.raw(row, &MARRIAGE_TERMS, 1.0);
        assert!((full - faded - terms[3] - terms[5]).abs() < 1e-12);
        assert_eq!(reference.raw(row, &MARRIAGE_TERMS, 0.0), full);
    }
}
