//! The reference: the concept the scenario rows follow. A LightGBM model of the census with
//! fixed parameters, trained on adult.data (the rows v1 learns from, so that with no drift the
//! stream follows the census as a model of it knows it), its log-odds then scaled and shifted
//! (Platt's two parameters, fitted by Nelder–Mead on adult.test's log loss) so that its
//! probabilities are calibrated on rows it did not see. A scenario draws each row's label from
//! the reference's probability: a row's label is a fresh coin, not a fact to remember, and the
//! best any model can do on the stream is known (the mean of `max(p, 1 − p)`).
//!
//! A concept drift takes the marriage gap out: married people (`Married-civ-spouse`) have
//! higher log-odds than the others by `gap` on average over adult.test; at drift `d` their
//! log-odds lose `d · gap · (1 − s)` and the others' gain `d · gap · s` (`s` the married share),
//! so that the average stays and, at `d = 1`, the two groups' average odds are the same.

use crate::data::{CensusRow, LabeledRow};
use crate::features::FeatureProcessor;
use crate::model::{Model, Scoring};
use crate::train::calibrate::{logit, Platt};
use crate::train::space::Hyperparams;
use crate::train::{matrix, train_final, TrainError};

/// The reference's parameters: a sound model of the census, not a searched one.
const PARAMS: Hyperparams = Hyperparams {
    learning_rate: 0.08,
    num_boost_round: 200,
    num_leaves: 31,
    min_child_weight: 1.0,
    colsample_bytree: 0.8,
    subsample: 0.8,
    reg_alpha: 0.0,
    reg_lambda: 1.0,
};

fn married(row: &CensusRow) -> bool {
    row.marital_status == "Married-civ-spouse"
}

pub struct Reference {
    processor: FeatureProcessor,
    model: Model,
    /// Platt's scale and shift of the model's log-odds.
    scale: f64,
    shift: f64,
    /// Mean calibrated log-odds of married people minus the others', on the calibration rows.
    gap: f64,
    /// Share of married people on the calibration rows.
    married_share: f64,
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reference")
            .field("scale", &self.scale)
            .field("shift", &self.shift)
            .field("gap", &self.gap)
            .finish_non_exhaustive()
    }
}

impl Reference {
    /// Trains on `train`, then calibrates on `calibrate` (rows the training did not see).
    pub fn fit(train: &[LabeledRow], calibrate: &[LabeledRow]) -> Result<Self, TrainError> {
        assert!(!train.is_empty() && !calibrate.is_empty(), "rows to fit on");
        let processor = FeatureProcessor::fit(train.iter().map(|r| &r.row));
        let data = matrix(&processor, train);
        let rounds = PARAMS.num_boost_round as usize;
        let text = train_final(&data, &PARAMS, rounds, 1)?;
        let model = Model::from_text(&text, Scoring::default())?;
        let mut reference = Reference {
            processor,
            model,
            scale: 1.0,
            shift: 0.0,
            gap: 0.0,
            married_share: 0.0,
        };
        let scored: Vec<(f64, bool)> = calibrate
            .iter()
            .map(|r| (reference.model_logit(&r.row), r.label))
            .collect();
        let platt = Platt::fit(&scored);
        (reference.scale, reference.shift) = (platt.a, platt.b);
        let logit =
            |r: &LabeledRow| reference.scale * reference.model_logit(&r.row) + reference.shift;
        let mean = |rows: &[&LabeledRow]| {
            rows.iter().map(|r| logit(r)).sum::<f64>() / rows.len().max(1) as f64
        };
        let (m, others): (Vec<&LabeledRow>, Vec<&LabeledRow>) =
            calibrate.iter().partition(|r| married(&r.row));
        reference.gap = mean(&m) - mean(&others);
        reference.married_share = m.len() as f64 / calibrate.len() as f64;
        Ok(reference)
    }

    /// The model's own log-odds of `>50K` for `row`.
    fn model_logit(&self, row: &CensusRow) -> f64 {
        let p = self
            .model
            .predict(&self.processor.transform(row))
            .expect("a row of the processor's width scores")[0];
        logit(p)
    }

    /// The calibrated probability of `>50K` for `row` with `faded` (0 to 1) of the marriage gap
    /// taken out.
    pub fn probability_faded(&self, row: &CensusRow, faded: f64) -> f64 {
        let toward = if married(row) {
            -(1.0 - self.married_share)
        } else {
            self.married_share
        };
        sigmoid(self.scale * self.model_logit(row) + self.shift + faded * self.gap * toward)
    }

    /// The calibrated probability of `>50K` for `row`.
    pub fn probability(&self, row: &CensusRow) -> f64 {
        self.probability_faded(row, 0.0)
    }

    /// The marriage gap in log-odds: what a full concept drift takes out.
    pub fn marriage_gap(&self) -> f64 {
        self.gap
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, OnceLock};

    use super::*;
    use crate::data::{load_adult, AdultData, Fetch};
    use crate::train::calibrate::log_loss;

    pub(crate) fn adult() -> &'static AdultData {
        static ADULT: OnceLock<AdultData> = OnceLock::new();
        ADULT.get_or_init(|| {
            load_adult(std::path::Path::new("data"), &Fetch::Never)
                .expect("data/adult.data and data/adult.test (scripts/test.sh puts them there)")
        })
    }

    /// One reference for every test (training takes seconds).
    pub(crate) fn reference() -> Arc<Reference> {
        static REFERENCE: OnceLock<Arc<Reference>> = OnceLock::new();
        REFERENCE
            .get_or_init(|| Arc::new(Reference::fit(&adult().train, &adult().test).expect("fits")))
            .clone()
    }

    fn mean(v: impl Iterator<Item = f64>) -> f64 {
        let (s, n) = v.fold((0.0, 0), |(s, n), x| (s + x, n + 1));
        s / n as f64
    }

    #[test]
    fn the_reference_is_calibrated_and_as_good_as_v1_on_rows_it_did_not_see() {
        let (reference, test) = (&*reference(), &adult().test);
        let p: Vec<f64> = test.iter().map(|r| reference.probability(&r.row)).collect();
        let accuracy = mean(
            test.iter()
                .zip(&p)
                .map(|(r, &p)| f64::from(u8::from((p >= 0.5) == r.label))),
        );
        let positives = mean(test.iter().map(|r| f64::from(u8::from(r.label))));
        assert!((0.86..0.89).contains(&accuracy), "accuracy {accuracy}");
        assert!((mean(p.iter().copied()) - positives).abs() < 0.01);
        let loss = mean(test.iter().zip(&p).map(|(r, &p)| log_loss(p, r.label)));
        assert!(loss < 0.30, "log loss {loss}");
    }

    #[test]
    fn a_full_fade_gives_married_and_unmarried_the_same_average_odds() {
        let (reference, test) = (&*reference(), &adult().test);
        assert!(
            reference.marriage_gap() > 1.0,
            "{}",
            reference.marriage_gap()
        );
        let logit = |r: &LabeledRow, faded: f64| {
            let p = reference.probability_faded(&r.row, faded);
            (p / (1.0 - p)).ln()
        };
        let gap = |faded: f64| {
            let m = mean(
                test.iter()
                    .filter(|r| married(&r.row))
                    .map(|r| logit(r, faded)),
            );
            let o = mean(
                test.iter()
                    .filter(|r| !married(&r.row))
                    .map(|r| logit(r, faded)),
            );
            m - o
        };
        assert!((gap(0.0) - reference.marriage_gap()).abs() < 1e-9);
        assert!(gap(1.0).abs() < 1e-9, "{}", gap(1.0));
        assert!((gap(0.5) - reference.marriage_gap() / 2.0).abs() < 1e-9);
        // The average log-odds stay.
        let all = |faded: f64| mean(test.iter().map(|r| logit(r, faded)));
        assert!((all(1.0) - all(0.0)).abs() < 1e-9);
    }
}
