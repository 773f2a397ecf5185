//! Stratified k-fold cross-validation with early stopping on the mean validation log loss of
//! the folds, as LightGBM's `cv` does: the folds train in lockstep, one round each at a time.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use tokio_util::sync::CancellationToken;

use rayon::prelude::*;

use super::lgbm::{LgbmError, TrainSet, Trainer};
use super::TrainError;
use crate::features::N_FEATURES;
use crate::train::space::Hyperparams;

/// Rounds without improvement of the mean validation loss before a run stops.
pub const EARLY_STOPPING_ROUNDS: usize = 20;
/// Rounds over which a run's recent gain per round is measured, to judge whether it can still
/// reach a target.
const TREND_ROUNDS: usize = 10;

/// Transformed training rows: row-major features and 0/1 labels.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    pub features: Vec<f64>,
    pub labels: Vec<f32>,
}

impl Matrix {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    pub(super) fn row(&self, i: usize) -> &[f64] {
        &self.features[i * N_FEATURES..(i + 1) * N_FEATURES]
    }

    /// The rows whose fold is (`inside`) or is not (`!inside`) `fold`.
    pub(super) fn select(&self, folds: &[usize], fold: usize, inside: bool) -> Matrix {
        let mut out = Matrix::default();
        for (i, &f) in folds.iter().enumerate() {
            if (f == fold) == inside {
                out.features.extend_from_slice(self.row(i));
                out.labels.push(self.labels[i]);
            }
        }
        out
    }
}

/// Assigns each row a fold in `0..k` so that each fold keeps the class balance: the rows of
/// each class are shuffled (seeded) and dealt round-robin.
pub fn stratified_folds(labels: &[f32], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut folds = vec![0; labels.len()];
    for class in [0.0f32, 1.0] {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        idx.shuffle(&mut rng);
        for (n, i) in idx.into_iter().enumerate() {
            folds[i] = n % k;
        }
    }
    folds
}

/// Outcome of one cross-validation run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CvScore {
    /// Best mean validation log loss over the folds.
    pub logloss: f64,
    /// The round at which it was reached: the number of rounds the final model trains.
    pub rounds: usize,
    /// The run was given up before early stopping or its last round: it could not reach the
    /// target it was given (its `logloss` is the best it had reached then).
    pub abandoned: bool,
}

/// The LightGBM datasets of each fold, training and validation (sharing bin boundaries). None
/// of the searched parameters changes how a dataset is binned, so one set serves every
/// evaluation.
pub struct FoldSets {
    sets: Vec<(TrainSet, TrainSet)>,
}

impl FoldSets {
    /// The datasets of `data` split by `folds` (values in `0..k`).
    pub fn new(data: &Matrix, folds: &[usize], k: usize) -> Result<Self, TrainError> {
        let sets = (0..k)
            .map(|fold| {
                let train = data.select(folds, fold, false);
                let valid = data.select(folds, fold, true);
                let train_set = TrainSet::new(&train.features, &train.labels, None)?;
                let valid_set = TrainSet::new(&valid.features, &valid.labels, Some(&train_set))?;
                Ok((train_set, valid_set))
            })
            .collect::<Result<Vec<_>, TrainError>>()?;
        Ok(FoldSets { sets })
    }
}

/// Cross-validates `params` on the folds' datasets. Stops between two rounds once `cancel` is
/// cancelled. With a `target`, gives the run up as soon as it cannot reach it: when what its
/// recent gains project for the rounds left would not bring its best loss down to the target
/// (see [`cannot_reach`]).
pub fn cross_validate(
    folds: &FoldSets,
    params: &Hyperparams,
    seed: u64,
    cancel: &CancellationToken,
    target: Option<f64>,
) -> Result<CvScore, TrainError> {
    let lgbm_params = params.lightgbm_params(seed);
    let k = folds.sets.len();
    let mut trainers = folds
        .sets
        .iter()
        .map(|(train, valid)| Trainer::new(train, Some(valid), &lgbm_params))
        .collect::<Result<Vec<_>, _>>()?;

    let max_rounds = params.num_boost_round as usize;
    let mut best = CvScore {
        logloss: f64::INFINITY,
        rounds: 0,
        abandoned: false,
    };
    let mut history = Vec::with_capacity(max_rounds);
    for round in 1..=max_rounds {
        if cancel.is_cancelled() {
            return Err(TrainError::Cancelled);
        }
        // The folds' rounds run in parallel when a worker is free (the search's last
        // evaluations of a generation would otherwise leave a core idle); their losses are
        // summed in fold order, so the result does not depend on it.
        let rounds: Vec<Result<(bool, f64), LgbmError>> = trainers
            .par_iter_mut()
            .map(|t| Ok((t.update()?, t.valid_metric()?)))
            .collect();
        let mut sum = 0.0;
        let mut all_finished = true;
        for r in rounds {
            let (finished, loss) = r?;
            all_finished &= finished;
            sum += loss;
        }
        let mean = sum / k as f64;
        history.push(mean);
        if mean < best.logloss {
            best.logloss = mean;
            best.rounds = round;
        } else if round - best.rounds >= EARLY_STOPPING_ROUNDS {
            break;
        }
        if all_finished {
            break;
        }
        if let Some(target) = target {
            if cannot_reach(&history, max_rounds - round, best.logloss, target) {
                best.abandoned = true;
                break;
            }
        }
    }
    Ok(best)
}

/// Whether a run whose mean losses so far are `history`, best `best`, with `left` rounds to go,
/// cannot reach `target`. What it can still gain is its gain over the last [`TREND_ROUNDS`]
/// rounds kept up for every round left; and when that gain is smaller than over the
/// [`TREND_ROUNDS`] before (gains shrinking, as a boosting run's do), it shrinks by the same
/// ratio every [`TREND_ROUNDS`] rounds to come: a geometric series, which gives up the slow,
/// hopeless runs of a low learning rate hundreds of rounds earlier than the straight line.
fn cannot_reach(history: &[f64], left: usize, best: f64, target: f64) -> bool {
    let Some(&then) = history.iter().rev().nth(TREND_ROUNDS) else {
        return false;
    };
    let now = *history.last().expect("a round at least");
    let recent = (then - now).max(0.0);
    let mut reach = recent * left as f64 / TREND_ROUNDS as f64;
    if let Some(&before) = history.iter().rev().nth(2 * TREND_ROUNDS) {
        let earlier = before - then;
        if recent > 0.0 && earlier > recent {
            let ratio = recent / earlier;
            let windows = (left as f64 / TREND_ROUNDS as f64).ceil() as i32;
            let shrinking = recent * ratio * (1.0 - ratio.powi(windows)) / (1.0 - ratio);
            reach = reach.min(shrinking);
        }
    }
    best - reach > target
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_keep_the_class_balance_and_are_seeded() {
        let labels: Vec<f32> = (0..300)
            .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        let folds = stratified_folds(&labels, 3, 7);
        for f in 0..3 {
            let n = folds.iter().filter(|&&x| x == f).count();
            let pos = (0..300)
                .filter(|&i| folds[i] == f && labels[i] == 1.0)
                .count();
            assert_eq!(n, 100);
            assert_eq!(pos, 25);
        }
        assert_eq!(folds, stratified_folds(&labels, 3, 7));
        assert_ne!(folds, stratified_folds(&labels, 3, 8));
    }

    #[test]
    fn a_run_is_given_up_only_when_its_recent_gain_cannot_reach_the_target() {
        // Losses falling by 0.001 a round: 0.4 at round 11.
        let falling: Vec<f64> = (0..=10).map(|i| 0.41 - 0.001 * i as f64).collect();
        // 100 rounds left at 0.001 a round reach 0.3.
        assert!(!cannot_reach(&falling, 100, 0.40, 0.31));
        assert!(!cannot_reach(&falling, 100, 0.40, 0.30 + 1e-9));
        assert!(cannot_reach(&falling, 100, 0.40, 0.29));
        assert!(cannot_reach(&falling, 50, 0.40, 0.31));
        // Too few rounds to see a trend: never.
        assert!(!cannot_reach(&falling[..10], 0, 0.40, 0.1));
        // A loss going up gains nothing: only its best counts.
        let rising: Vec<f64> = falling.iter().rev().copied().collect();
        assert!(cannot_reach(&rising, 1000, 0.40, 0.399));
        assert!(!cannot_reach(&rising, 1000, 0.40, 0.40));
    }

    #[test]
    fn shrinking_gains_are_projected_as_they_shrink() {
        // 0.02 gained over rounds 1-11, then 0.01 over rounds 11-21: half as much every ten
        // rounds from now on is 0.005 + 0.0025 + ... < 0.01 more, however many rounds are left.
        let mut losses: Vec<f64> = (0..=10).map(|i| 0.42 - 0.002 * i as f64).collect();
        losses.extend((1..=10).map(|i| 0.40 - 0.001 * i as f64));
        assert!((losses[20] - 0.39).abs() < 1e-12);
        assert!(!cannot_reach(&losses, 1000, 0.39, 0.3801));
        assert!(cannot_reach(&losses, 1000, 0.39, 0.3799));
        // The straight line alone would have kept it going: 1000 rounds at 0.0001 a round.
        let straight = &losses[10..];
        assert!(!cannot_reach(straight, 1000, 0.39, 0.3));
        // Few rounds left: the series is cut short (two windows: 0.005 + 0.0025).
        assert!(!cannot_reach(&losses, 20, 0.39, 0.3826));
        assert!(cannot_reach(&losses, 20, 0.39, 0.3824));
        // Gains that grow are kept up, never shrunk.
        let mut growing: Vec<f64> = (0..=10).map(|i| 0.42 - 0.001 * i as f64).collect();
        growing.extend((1..=10).map(|i| 0.41 - 0.002 * i as f64));
        assert!(!cannot_reach(&growing, 10, 0.39, 0.3701));
        assert!(cannot_reach(&growing, 10, 0.39, 0.3699));
    }
}
