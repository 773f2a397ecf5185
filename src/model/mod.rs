//! A trained LightGBM model ready to score: lightgbm3's `Booster` loaded from the model text,
//! checked against the feature schema. The same trees are compiled to machine code when the
//! model loads ([`compiled`], the default scorer) or laid out for a native walk ([`trees`]); either
//! scores only once it has given LightGBM's probabilities bit for bit on a canary set, and
//! LightGBM's own predict scores otherwise (or a strict load fails), or when chosen: each load
//! says how in a [`Scoring`].

mod compiled;
mod explain;
mod shap_tables;
mod trees;

use lightgbm3::Booster;
use rand::{Rng, SeedableRng};

pub use compiled::{CompileError, Compiled};
pub use shap_tables::ShapTables;
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
    #[error("the {scorer} trees do not score as LightGBM does (strict scoring): {detail}")]
    NotAsLightGbm {
        scorer: &'static str,
        detail: String,
    },
}

/// Which implementation scores. The command lines take its names (`--scorer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Scorer {
    /// The trees compiled to machine code as the bundle loads, where they matched LightGBM on
    /// the canary set.
    #[default]
    Compiled,
    /// The trees walked natively, where they matched LightGBM on the canary set.
    Native,
    /// LightGBM's own predict.
    #[value(name = "lightgbm")]
    LightGbm,
}

impl Scorer {
    pub fn name(self) -> &'static str {
        match self {
            Scorer::Compiled => "compiled",
            Scorer::Native => "native",
            Scorer::LightGbm => "lightgbm",
        }
    }
}

/// How every model a service loads scores: given to each load, never read from anywhere else.
/// The default: the compiled trees, not strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scoring {
    pub scorer: Scorer,
    /// A model whose compiled or walked trees do not score the canary set as LightGBM does fails
    /// to load, instead of being scored by LightGBM (tests, and whoever wants to know).
    pub strict: bool,
    /// The model explains its predictions ([`Model::contributions`]) once its TreeSHAP gave
    /// LightGBM's `predict_contrib` on the canary set within [`EXPLAIN_TOLERANCE`] (a strict load
    /// fails if not).
    pub explain: bool,
}

impl Scoring {
    /// The default scorer, loading strictly or not.
    pub fn strict(strict: bool) -> Self {
        Scoring {
            strict,
            ..Scoring::default()
        }
    }
}

/// The trees in a form faster than LightGBM's predict.
enum Fast {
    Compiled(Box<Compiled>),
    Native(Trees),
}

impl Fast {
    fn predict(&self, features: &[f64]) -> Vec<f64> {
        match self {
            Fast::Compiled(c) => c.predict(features),
            Fast::Native(t) => t.predict(features),
        }
    }
}

/// Rows of the canary set the native walk of each model must score exactly as LightGBM does.
const CANARY_ROWS: usize = 512;
/// Rows of the canary set its TreeSHAP must explain as LightGBM does (fewer: LightGBM's
/// `predict_contrib` costs about a millisecond a row).
const CANARY_EXPLAINED: usize = 64;
/// The most a contribution may differ from LightGBM's `predict_contrib` (the tables sum in
/// another order than LightGBM: they agree within rounding, not bit for bit).
pub const EXPLAIN_TOLERANCE: f64 = 1e-9;

/// A seeded set of rows that reaches every kind of branch: values inside and outside the
/// scaled range, zeros, negative zero and near-zeros, NaN, infinities, negative and huge
/// numbers, −0.5 (category 0), small category codes and codes up to 1,023 (into and past the
/// long bitsets of categorical splits).
pub fn canary_rows(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * N_FEATURES)
        .map(|_| match rng.random_range(0..16) {
            0 => 0.0,
            1 => f64::NAN,
            2 => -1.0,
            3 => 1e-40,
            4 => 1e12,
            5 => -3.5,
            6 | 7 => rng.random_range(0..48) as f64,
            // Codes past a bitset of one or two words, into and past the long ones.
            8 => rng.random_range(0..1024) as f64,
            9 => *[f64::INFINITY, f64::NEG_INFINITY, -0.0, -0.5, 1e-36, -1e-36]
                .get(rng.random_range(0..6))
                .expect("an index in range"),
            _ => rng.random_range(-0.2..1.2),
        })
        .collect()
}

/// How two answers differ: in length, or first at an index, to the bit.
enum Differ {
    Len,
    At(usize),
}

fn bit_difference(ours: &[f64], theirs: &[f64]) -> Option<Differ> {
    if ours.len() != theirs.len() {
        return Some(Differ::Len);
    }
    ours.iter()
        .zip(theirs)
        .position(|(a, b)| a.to_bits() != b.to_bits())
        .map(Differ::At)
}

/// Whether `tables` give `theirs` (LightGBM's contributions of the canary `rows`), each within
/// [`EXPLAIN_TOLERANCE`]; else where they differ.
fn explains_as(tables: &ShapTables, rows: &[f64], theirs: &[f64]) -> Result<(), String> {
    let ours = tables
        .contributions(rows)
        .ok_or("the model text has no node counts")?;
    if ours.len() != theirs.len() {
        return Err(format!(
            "TreeSHAP gives {} values where LightGBM gives {}",
            ours.len(),
            theirs.len()
        ));
    }
    // NaN is far from everything.
    let far = |(a, b): (&f64, &f64)| (a - b).abs() > EXPLAIN_TOLERANCE || (a - b).is_nan();
    match ours.iter().zip(theirs).position(far) {
        None => Ok(()),
        Some(i) => Err(format!(
            "TreeSHAP gives {} where LightGBM's predict_contrib gives {} (canary row {}, value {})",
            ours[i],
            theirs[i],
            i / (N_FEATURES + 1),
            i % (N_FEATURES + 1)
        )),
    }
}

/// A loaded model.
pub struct Model {
    booster: Booster,
    /// The trees compiled or laid out for the native walk, when they score as LightGBM does.
    fast: Option<Fast>,
    /// The TreeSHAP tables that explain, when asked for and they explain as LightGBM does.
    explainer: Option<ShapTables>,
}

// SAFETY: a LightGBM booster is a heap object behind a handle that any thread may use; its
// C API guards prediction with an internal shared lock (c_api.cpp `Booster::Predict*` take a
// shared lock on the booster's mutex), so concurrent `predict` calls through `&Model` are safe.
// `Model` exposes no method that mutates the booster.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

impl Model {
    /// Parses LightGBM's text format and checks that it is a binary model of this build's
    /// features with at least one tree, which answers a probability for a row of zeros; scored
    /// by `scoring.scorer` where it matches LightGBM on the canary set (else by LightGBM, or not
    /// loaded at all when `scoring.strict`).
    pub fn from_text(text: &str, scoring: Scoring) -> Result<Self, ModelError> {
        let scorer = scoring.scorer;
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
            fast: None,
            explainer: None,
        };
        // Parsed once, for the fast scorer and the explainer alike.
        let trees = (scorer != Scorer::LightGbm || scoring.explain)
            .then(|| Trees::from_text(text).map_err(|e| e.to_string()));
        if let (Some(trees), true) = (&trees, scorer != Scorer::LightGbm) {
            model.fast = match model.fast_scorer(trees, scorer) {
                Ok(fast) => Some(fast),
                Err(detail) if scoring.strict => {
                    return Err(ModelError::NotAsLightGbm {
                        scorer: scorer.name(),
                        detail,
                    })
                }
                Err(detail) => {
                    tracing::error!("scoring with LightGBM: {detail}");
                    None
                }
            };
        }
        if let (Some(trees), true) = (&trees, scoring.explain) {
            match model.explainer(trees) {
                Ok(tables) => model.explainer = Some(tables),
                Err(detail) if scoring.strict => {
                    return Err(ModelError::NotAsLightGbm {
                        scorer: "TreeSHAP",
                        detail,
                    })
                }
                Err(detail) => tracing::error!("predictions not explained: {detail}"),
            }
        }
        let canary = model.predict(&[0.0; N_FEATURES])?;
        match canary.as_slice() {
            [p] if (0.0..=1.0).contains(p) => Ok(model),
            [p, ..] => Err(ModelError::NotAProbability(*p)),
            [] => Err(ModelError::NotAProbability(f64::NAN)),
        }
    }

    /// The trees compiled (or laid out for the native walk), if they parse, compile and score
    /// the canary set as LightGBM does; else why not.
    fn fast_scorer(&self, trees: &Result<Trees, String>, scorer: Scorer) -> Result<Fast, String> {
        let trees = trees.as_ref().map_err(Clone::clone)?;
        if trees.n_features() != N_FEATURES {
            return Err(format!("{} features", trees.n_features()));
        }
        let fast = match scorer {
            Scorer::Native => Fast::Native(trees.clone()),
            _ => {
                let c =
                    Compiled::new(trees).map_err(|e| format!("compiling the trees failed: {e}"))?;
                tracing::debug!(
                    "{} trees compiled in {:.1} ms",
                    trees.n_trees(),
                    c.compile_time().as_secs_f64() * 1e3
                );
                Fast::Compiled(Box::new(c))
            }
        };
        let rows = canary_rows(CANARY_ROWS, 0x5eed);
        let answer = fast.predict(&rows);
        let reference = self
            .predict_lightgbm(&rows)
            .map_err(|e| crate::error_chain(&e))?;
        match bit_difference(&answer, &reference) {
            None => Ok(fast),
            Some(Differ::Len) => Err(format!(
                "they give {} probabilities for {} rows",
                answer.len(),
                reference.len()
            )),
            Some(Differ::At(i)) => Err(format!(
                "they give {} where LightGBM gives {} (canary row {i})",
                answer[i], reference[i]
            )),
        }
    }

    /// The TreeSHAP tables of the parsed trees, if they explain the canary set as LightGBM's
    /// `predict_contrib` does, within [`EXPLAIN_TOLERANCE`]; else the recursion alone (every
    /// tree left out of the tables), if it does; else why not.
    fn explainer(&self, trees: &Result<Trees, String>) -> Result<ShapTables, String> {
        let trees = trees.as_ref().map_err(Clone::clone)?;
        if !trees.explainable() {
            return Err("the model text has no node counts".into());
        }
        let rows = canary_rows(CANARY_EXPLAINED, 0xe4a1);
        let theirs = self
            .booster
            .predict_contrib(&rows, N_FEATURES as i32, true)
            .map_err(|e| crate::error_chain(&ModelError::Predict(e)))?;
        let tables = ShapTables::new(trees.clone(), shap_tables::BUDGET_BYTES);
        let Err(why) = explains_as(&tables, &rows, &theirs) else {
            return Ok(tables);
        };
        let recursion = ShapTables::new(trees.clone(), 0);
        match explains_as(&recursion, &rows, &theirs) {
            Ok(()) => {
                tracing::error!("TreeSHAP by the recursion, slower: the tables differ: {why}");
                Ok(recursion)
            }
            Err(_) => Err(why),
        }
    }

    /// Whether this model explains its predictions.
    pub fn explains(&self) -> bool {
        self.explainer.is_some()
    }

    /// Each feature's contribution to the raw score (log-odds) of each row of `features`, then
    /// the expected value: `N_FEATURES + 1` values a row, summing to its raw score, as
    /// LightGBM's `predict_contrib` gives them. None for a model loaded without `explain`, or
    /// whose TreeSHAP did not match LightGBM's.
    pub fn contributions(&self, features: &[f64]) -> Option<Vec<f64>> {
        self.explainer.as_ref()?.contributions(features)
    }

    /// The factor from the raw score (in which contributions are) to the log-odds of the
    /// probability served, for a model that explains.
    pub fn log_odds_scale(&self) -> Option<f64> {
        self.explainer.as_ref().map(|e| e.trees().log_odds_scale())
    }

    /// Which implementation scores this model.
    pub fn scorer(&self) -> Scorer {
        match self.fast {
            Some(Fast::Compiled(_)) => Scorer::Compiled,
            Some(Fast::Native(_)) => Scorer::Native,
            None => Scorer::LightGbm,
        }
    }

    /// Probabilities of `>50K` for row-major features (`N_FEATURES` values a row).
    pub fn predict(&self, features: &[f64]) -> Result<Vec<f64>, ModelError> {
        match &self.fast {
            Some(f) => Ok(f.predict(features)),
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
