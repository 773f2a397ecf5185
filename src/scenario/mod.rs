//! Scenarios: streams of fresh census rows with a dialled drift, for runs longer than
//! adult.test (whose 16,281 rows are all the fresh rows there are) and for drift demos.
//!
//! A made row is a pool row (adult.test's by default) with its numbers jittered, never the
//! exact copy of a UCI row, and its label is drawn from a [`Reference`] model's calibrated
//! probability, so that no model can memorise a row's label and the best score possible on the
//! stream is known ([`Ceiling`]). The drift (covariate, label or concept) grows along the stream
//! to the chosen strength ([`Kind`]).

mod generate;
mod reference;

pub use generate::{Ceiling, Generator, Kind, Made, Scenario};
pub use reference::Reference;

use std::path::Path;
use std::sync::Arc;

use crate::data::{load_adult, CensusRow, DataError, Fetch};
use crate::train::TrainError;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("training the scenario's reference model failed")]
    Reference(#[from] TrainError),
}

/// A generator for `scenario` from the data folder: the reference fitted on adult.data and
/// calibrated on adult.test, the pool adult.test's rows (or `pool`'s when given), and no made
/// row a copy of any row of either file.
pub fn from_data(
    dir: &Path,
    fetch: &Fetch,
    pool: Option<Vec<CensusRow>>,
    scenario: Scenario,
) -> Result<Generator, ScenarioError> {
    let adult = load_adult(dir, fetch)?;
    let reference = Reference::fit(&adult.train, &adult.test)?;
    let test: Vec<CensusRow> = adult.test.into_iter().map(|r| r.row).collect();
    let mut known: Vec<CensusRow> = adult.train.into_iter().map(|r| r.row).collect();
    let pool = match pool {
        Some(p) => {
            known.extend(test);
            p
        }
        None => test,
    };
    Ok(Generator::new(pool, &known, Arc::new(reference), scenario))
}
