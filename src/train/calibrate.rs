//! Calibration in training: Platt's scaling of the model's log-odds, fitted on out-of-fold
//! predictions (each training row scored by a model of the searched parameters that did not
//! see it), then folded into the model text itself, so that every scorer (LightGBM, the native
//! walk, the compiled trees) gives the calibrated probability and the model file's sha256 covers
//! it.
//!
//! LightGBM's binary output is `sigmoid(s · raw)` with `s` the objective's `sigmoid:` parameter.
//! Platt's `sigmoid(a · s · raw + b)` is the same output with `s' = a · s` and `b / s'` added to
//! every leaf of the first tree (the raw score is the sum of one leaf of each tree).

use argmin::core::{CostFunction, Error as ArgminError, Executor};
use argmin::solver::neldermead::NelderMead;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cv::Matrix;
use super::{train_final, TrainError};
use crate::features::N_FEATURES;
use crate::lifecycle::calibration::calibration;
use crate::model::{Model, Scorer, Scoring};

/// LightGBM's own predict, for the fold models that live only to score their held-out rows.
const LIGHTGBM: Scoring = Scoring {
    scorer: Scorer::LightGbm,
    strict: false,
    explain: false,
};
use crate::train::space::Hyperparams;

/// Platt's scale and shift of log-odds: `p = sigmoid(a · logit + b)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The log-odds of `p`, clipped away from 0 and 1.
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}

/// Binary log loss of probability `p` for `label`, clipped as the metrics clip.
pub fn log_loss(p: f64, label: bool) -> f64 {
    let p = p.clamp(1e-15, 1.0 - 1e-15);
    -if label { p.ln() } else { (1.0 - p).ln() }
}

/// The mean log loss of `sigmoid(a·logit + b)` over labelled log-odds.
struct PlattLoss<'a>(&'a [(f64, bool)]);

impl CostFunction for PlattLoss<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, ab: &Vec<f64>) -> Result<f64, ArgminError> {
        let total: f64 = self
            .0
            .iter()
            .map(|&(z, label)| log_loss(sigmoid(ab[0] * z + ab[1]), label))
            .sum();
        Ok(total / self.0.len() as f64)
    }
}

impl Platt {
    pub const IDENTITY: Platt = Platt { a: 1.0, b: 0.0 };

    /// The `(a, b)` minimising the log loss over labelled log-odds (Nelder–Mead; the loss is
    /// convex in both). The identity when there is nothing to fit.
    pub fn fit(scored: &[(f64, bool)]) -> Platt {
        if scored.is_empty() {
            return Platt::IDENTITY;
        }
        let simplex = vec![vec![1.0, 0.0], vec![0.5, 0.0], vec![1.0, 0.5]];
        let solver = NelderMead::new(simplex)
            .with_sd_tolerance(1e-7)
            .expect("a positive tolerance");
        let best = Executor::new(PlattLoss(scored), solver)
            .configure(|state| state.max_iters(500))
            .run()
            .ok()
            .and_then(|r| r.state.best_param)
            .unwrap_or_else(|| vec![1.0, 0.0]);
        Platt {
            a: best[0],
            b: best[1],
        }
    }

    /// The calibrated log-odds for the model's own `z`.
    pub fn apply_logit(&self, z: f64) -> f64 {
        self.a * z + self.b
    }

    /// The calibrated probability for the model's own `p`.
    pub fn apply(&self, p: f64) -> f64 {
        sigmoid(self.apply_logit(logit(p)))
    }

    /// LightGBM model text whose output is this calibration of `text`'s.
    pub fn fold_into(&self, text: &str) -> Result<String, CalibrateError> {
        if !(self.a.is_finite() && self.b.is_finite() && self.a > 0.0) {
            return Err(CalibrateError::Unusable(*self));
        }
        let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
        let objective = lines
            .iter()
            .position(|l| l.starts_with("objective=binary"))
            .ok_or(CalibrateError::Text("no binary objective line"))?;
        let mut sigmoid = None;
        let fields: Vec<String> = lines[objective]
            .split(' ')
            .map(
                |f| match f.strip_prefix("sigmoid:").map(str::parse::<f64>) {
                    Some(Ok(s)) => {
                        // Nine decimals: LightGBM's own parser reads them as the scorers here
                        // do (see `plain_decimal_as_lightgbm_reads_it`).
                        let text = format!("{:.9}", s * self.a);
                        sigmoid = text.parse::<f64>().ok();
                        format!("sigmoid:{text}")
                    }
                    _ => f.to_owned(),
                },
            )
            .collect();
        let scaled = sigmoid.ok_or(CalibrateError::Text("no sigmoid in the objective"))?;
        lines[objective] = fields.join(" ");
        let delta = self.b / scaled;

        let tree = lines
            .iter()
            .position(|l| l == "Tree=0")
            .ok_or(CalibrateError::Text("no first tree"))?;
        let leaves = (tree..lines.len())
            .take_while(|&i| !lines[i].is_empty() || i == tree)
            .find(|&i| lines[i].starts_with("leaf_value="))
            .ok_or(CalibrateError::Text("no leaf values in the first tree"))?;
        let old_len = lines[leaves].len();
        let values = lines[leaves]["leaf_value=".len()..]
            .split(' ')
            .map(|v| v.parse::<f64>().map(|v| (v + delta).to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| CalibrateError::Text("a leaf value that is not a number"))?;
        lines[leaves] = format!("leaf_value={}", values.join(" "));
        let grown = lines[leaves].len() as i64 - old_len as i64;

        // LightGBM finds each tree by the byte sizes listed in the header.
        if let Some(sizes) = lines.iter().position(|l| l.starts_with("tree_sizes=")) {
            let mut sizes_of: Vec<String> = lines[sizes]["tree_sizes=".len()..]
                .split(' ')
                .map(str::to_owned)
                .collect();
            let first: i64 = sizes_of
                .first()
                .and_then(|s| s.parse().ok())
                .ok_or(CalibrateError::Text("tree sizes that are not numbers"))?;
            sizes_of[0] = (first + grown).to_string();
            lines[sizes] = format!("tree_sizes={}", sizes_of.join(" "));
        }
        // The parameters block at the end says what the objective was trained with; it is
        // informative only, and now says the scale too.
        for line in lines.iter_mut().filter(|l| l.starts_with("[sigmoid: ")) {
            *line = format!("[sigmoid: {scaled}]");
        }
        Ok(lines.join("\n"))
    }
}

/// Why a calibration could not be folded into a model.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("Platt's fit gave a = {}, b = {}: not an increasing map", .0.a, .0.b)]
    Unusable(Platt),
    #[error("the model text has {0}")]
    Text(&'static str),
}

/// A model's calibration in training, as its manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub method: String,
    pub platt: Platt,
    /// Out-of-fold predictions it was fitted on (every training row once).
    pub rows: usize,
    /// Their log loss and expected calibration error (10 bins) before and after.
    pub log_loss_before: f64,
    pub log_loss_after: f64,
    pub ece_before: f64,
    pub ece_after: f64,
}

/// The probability of each row of `data` from a model of `params` trained `rounds` rounds on
/// the other folds (`folds[i]` in `0..k`), the folds trained in parallel.
pub fn out_of_fold(
    data: &Matrix,
    folds: &[usize],
    k: usize,
    params: &Hyperparams,
    rounds: usize,
    seed: u64,
) -> Result<Vec<f64>, TrainError> {
    // Per fold: the rows it holds out, and their probabilities.
    type Scored = (Vec<usize>, Vec<f64>);
    let per_fold: Vec<Result<Scored, TrainError>> = (0..k)
        .into_par_iter()
        .map(|fold| {
            let train = data.select(folds, fold, false);
            let held: Vec<usize> = (0..data.rows()).filter(|&i| folds[i] == fold).collect();
            let mut features = Vec::with_capacity(held.len() * N_FEATURES);
            for &i in &held {
                features.extend_from_slice(data.row(i));
            }
            let text = train_final(&train, params, rounds, seed)?;
            let model = Model::from_text(&text, LIGHTGBM)?;
            Ok((held, model.predict(&features)?))
        })
        .collect();
    let mut out = vec![f64::NAN; data.rows()];
    for r in per_fold {
        let (held, p) = r?;
        for (i, p) in held.into_iter().zip(p) {
            out[i] = p;
        }
    }
    Ok(out)
}

fn ece(probabilities: &[f64], labels: &[bool]) -> f64 {
    calibration(probabilities, labels)
        .view()
        .map_or(0.0, |v| v.ece)
}

/// Platt's scaling fitted on out-of-fold probabilities `oof` of rows labelled `labels`, and what
/// it does to them.
pub fn fit_platt(oof: &[f64], labels: &[f32]) -> Calibration {
    let truth: Vec<bool> = labels.iter().map(|&l| l > 0.5).collect();
    let scored: Vec<(f64, bool)> = oof.iter().map(|&p| logit(p)).zip(truth.clone()).collect();
    let platt = Platt::fit(&scored);
    let after: Vec<f64> = oof.iter().map(|&p| platt.apply(p)).collect();
    let mean_loss = |ps: &[f64]| {
        ps.iter()
            .zip(&truth)
            .map(|(&p, &t)| log_loss(p, t))
            .sum::<f64>()
            / ps.len().max(1) as f64
    };
    Calibration {
        method: "platt".to_owned(),
        platt,
        rows: oof.len(),
        log_loss_before: mean_loss(oof),
        log_loss_after: mean_loss(&after),
        ece_before: ece(oof, &truth),
        ece_after: ece(&after, &truth),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of a small model of made-up rows: `>50K` when the first feature is high.
    fn small_model() -> String {
        let rows = crate::model::canary_rows(400, 3);
        let labels: Vec<f32> = rows
            .chunks(N_FEATURES)
            .map(|r| f32::from(r[0].is_finite() && r[0] > 0.3))
            .collect();
        let data = Matrix {
            features: rows,
            labels,
        };
        let params = Hyperparams::from_point(&[0.1, 30.0, 7.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        train_final(&data, &params, 30, 1).unwrap()
    }

    #[test]
    fn platt_recovers_a_known_scale_and_shift() {
        // Labels drawn from sigmoid(2z − 1) at evenly spread z, as expected counts.
        let mut scored = Vec::new();
        for i in 0..400 {
            let z = -3.0 + 6.0 * i as f64 / 399.0;
            let p = sigmoid(2.0 * z - 1.0);
            let positives = (p * 50.0).round() as usize;
            scored.extend((0..50).map(|n| (z, n < positives)));
        }
        let fit = Platt::fit(&scored);
        assert!(
            (fit.a - 2.0).abs() < 0.05 && (fit.b + 1.0).abs() < 0.05,
            "{fit:?}"
        );
    }

    #[test]
    fn a_calibration_folded_into_the_text_scores_so_in_every_scorer() {
        let text = &small_model();
        let platt = Platt {
            a: 0.8123456789123,
            b: -0.3,
        };
        let folded = platt.fold_into(text).unwrap();
        let rows = crate::model::canary_rows(64, 7);
        let plain = Model::from_text(text, LIGHTGBM).unwrap();
        let expected: Vec<f64> = plain
            .predict(&rows)
            .unwrap()
            .into_iter()
            .map(|p| platt.apply(p))
            .collect();
        for scorer in [Scorer::LightGbm, Scorer::Native, Scorer::Compiled] {
            let strict = Scoring {
                scorer,
                strict: true,
                explain: false,
            };
            let model = Model::from_text(&folded, strict).unwrap();
            for (got, want) in model.predict(&rows).unwrap().iter().zip(&expected) {
                assert!(
                    (got - want).abs() < 1e-9,
                    "{scorer:?}: {got} against {want}"
                );
            }
        }
    }

    #[test]
    fn a_decreasing_or_broken_map_is_refused() {
        let text = &small_model();
        for platt in [
            Platt { a: -1.0, b: 0.0 },
            Platt {
                a: f64::NAN,
                b: 0.0,
            },
        ] {
            assert!(platt.fold_into(text).is_err());
        }
    }
}
