//! A trained LightGBM model ready to score: lightgbm3's `Booster` loaded from the model text,
//! checked against the feature schema.

use lightgbm3::Booster;

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

/// A loaded model.
pub struct Model {
    booster: Booster,
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
        let model = Model { booster };
        let canary = model.predict(&[0.0; N_FEATURES])?;
        match canary.as_slice() {
            [p] if (0.0..=1.0).contains(p) => Ok(model),
            [p, ..] => Err(ModelError::NotAProbability(*p)),
            [] => Err(ModelError::NotAProbability(f64::NAN)),
        }
    }

    /// Probabilities of `>50K` for row-major features (`N_FEATURES` values a row).
    pub fn predict(&self, features: &[f64]) -> Result<Vec<f64>, ModelError> {
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
