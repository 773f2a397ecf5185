//! A trained LightGBM model ready to score: lightgbm3's `Booster` loaded from the model text,
//! checked against the feature schema. With `set_scorer(Scorer::Native)`, the same trees are
//! also laid out for native scoring ([`trees`]), which scores once it has given LightGBM's
//! probabilities bit for bit on a canary set (LightGBM's own predict scores by default: the
//! native walk is faster for single rows but not yet for batches, see BENCHMARKS.md).

mod trees;

use std::sync::atomic::{AtomicBool, Ordering};

use lightgbm3::Booster;
use rand::{Rng, SeedableRng};

pub use trees::{Trees, TreesError};

use crate::features::{feature_names, N_FEATURES};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot load the LightGBM model")]
    Load(#[source] lightgbm3::Error),
    #[error("the LightGBM model text is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    #[error("model expects features {found:?}, this build produces {expected:?}")]
    Schema {
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("LightGBM prediction failed")]
    Predict(#[source] lightgbm3::Error),
    #[error("the model text holds a NUL byte at {0}")]
    NulByte(usize),
    #[error("the model has {0} classes; a binary model has 1")]
    Classes(i32),
    #[error("the model has no trees")]
    NoTrees,
    #[error("the model answers {0} for a row of zeros: not a probability")]
    NotAProbability(f64),
}

/// Which implementation scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scorer {
    /// The trees walked natively, where they matched LightGBM on the canary set.
    Native,
    /// LightGBM's own predict.
    LightGbm,
}

static NATIVE: AtomicBool = AtomicBool::new(false);

/// Chooses the scorer of every model loaded from now on (the default is LightGBM).
pub fn set_scorer(scorer: Scorer) {
    NATIVE.store(scorer == Scorer::Native, Ordering::Relaxed);
}

/// Rows of the canary set the native walk of each model must score exactly as LightGBM does.
const CANARY_ROWS: usize = 512;

/// A seeded set of rows that reaches every kind of branch: values inside and outside the
/// scaled range, zeros and near-zeros, NaN, negative and huge numbers, small category codes
/// and codes beyond any category.
pub fn canary_rows(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * N_FEATURES)
        .map(|_| match rng.random_range(0..12) {
            0 => 0.0,
            1 => f64::NAN,
            2 => -1.0,
            3 => 1e-40,
            4 => 1e12,
            5 => -3.5,
            6 | 7 => rng.random_range(0..48) as f64,
            _ => rng.random_range(-0.2..1.2),
        })
        .collect()
}

/// A loaded model.
pub struct Model {
    booster: Booster,
    /// The trees laid out for the native walk, when it scores as LightGBM does.
    trees: Option<Trees>,
}

// SAFETY: a LightGBM booster is a heap object behind a handle that any thread may use; its
// C API guards prediction with an internal shared lock (c_api.cpp `Booster::Predict*` take a
// shared lock on the booster's mutex), so concurrent `predict` calls through `&Model` are safe.
// `Model` exposes no method that mutates the booster.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

impl Model {
    /// Parses LightGBM's text format and checks that it is a binary model of this build's
    /// features with at least one tree, which answers a probability for a row of zeros.
    pub fn from_text(text: &str) -> Result<Self, ModelError> {
        // lightgbm3 hands the text to C as a C string: a NUL byte would panic there.
        if let Some(at) = text.bytes().position(|b| b == 0) {
            return Err(ModelError::NulByte(at));
        }
        let booster = Booster::from_string(text).map_err(ModelError::Load)?;
        let found = booster.feature_name().map_err(ModelError::Load)?;
        let expected = feature_names();
        if found != expected || booster.num_features() as usize != N_FEATURES {
            return Err(ModelError::Schema { found, expected });
        }
        if booster.num_classes() != 1 {
            return Err(ModelError::Classes(booster.num_classes()));
        }
        if booster.num_iterations() < 1 {
            return Err(ModelError::NoTrees);
        }
        let mut model = Model {
            booster,
            trees: None,
        };
        if NATIVE.load(Ordering::Relaxed) {
            model.trees = model.native_trees(text);
        }
        let canary = model.predict(&[0.0; N_FEATURES])?;
        match canary.as_slice() {
            [p] if (0.0..=1.0).contains(p) => Ok(model),
            [p, ..] => Err(ModelError::NotAProbability(*p)),
            [] => Err(ModelError::NotAProbability(f64::NAN)),
        }
    }

    /// The trees laid out for the native walk, if they parse and score the canary set as
    /// LightGBM does; else `None`, and LightGBM scores (logged).
    fn native_trees(&self, text: &str) -> Option<Trees> {
        let trees = match Trees::from_text(text) {
            Ok(t) if t.n_features() == N_FEATURES => t,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!("scoring with LightGBM: {e}");
                return None;
            }
        };
        let rows = canary_rows(CANARY_ROWS, 0x5eed);
        let native = trees.predict(&rows);
        let reference = self.predict_lightgbm(&rows).ok()?;
        let differs = native
            .iter()
            .zip(&reference)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        match differs {
            None => Some(trees),
            Some(i) => {
                tracing::error!(
                    "the native walk gives {} where LightGBM gives {} (canary row {i}): \
                     scoring with LightGBM",
                    native[i],
                    reference[i]
                );
                None
            }
        }
    }

    /// Which implementation scores this model.
    pub fn scorer(&self) -> Scorer {
        if self.trees.is_some() {
            Scorer::Native
        } else {
            Scorer::LightGbm
        }
    }

    /// Probabilities of `>50K` for row-major features (`N_FEATURES` values a row).
    pub fn predict(&self, features: &[f64]) -> Result<Vec<f64>, ModelError> {
        match &self.trees {
            Some(t) => Ok(t.predict(features)),
            None => self.predict_lightgbm(features),
        }
    }

    /// The same with LightGBM's own predict, whatever the scorer.
    pub fn predict_lightgbm(&self, features: &[f64]) -> Result<Vec<f64>, ModelError> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        self.booster
            .predict(features, N_FEATURES as i32, true)
            .map_err(ModelError::Predict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Model>();
    }
}
