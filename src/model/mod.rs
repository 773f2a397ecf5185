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
    /// Parses LightGBM's text format and checks the feature names.
    pub fn from_text(text: &str) -> Result<Self, ModelError> {
        let booster = Booster::from_string(text).map_err(ModelError::Load)?;
        let found = booster.feature_name().map_err(ModelError::Load)?;
        let expected = feature_names();
        if found != expected || booster.num_features() as usize != N_FEATURES {
            return Err(ModelError::Schema { found, expected });
        }
        Ok(Model { booster })
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
