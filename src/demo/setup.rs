//! What the demo prepares before it streams: its input (adult.test rows, or a scenario's, as
//! JSON lines with a few malformed records spread in) and a deliberately weak version 1.

use std::io::Write;
use std::path::Path;

use super::DemoError;
use crate::bundle::assemble::bundle_files;
use crate::bundle::{BundleStore, Manifest, TrainingData};
use crate::data::{ensure_file, load_training_rows, read_labeled, CensusRow, Fetch, TEST_FILE};
use crate::initialize::InitError;
use crate::model::Scoring;
use crate::scenario::Scenario;
use crate::train::{fit, SearchConfig};

/// Malformed records mixed into the demo stream, one of each dead-letter reason.
const BAD_RECORDS: [&str; 4] = [
    "this is not JSON",
    r#"{"record": {"age": 40}}"#,
    r#"{"record": {"age": "forty", "workclass": "Private", "fnlwgt": 1, "education": "HS-grad", "education_num": 9, "marital_status": "Divorced", "occupation": "Sales", "relationship": "Unmarried", "race": "White", "sex": "Female", "capital_gain": 0, "capital_loss": 0, "hours_per_week": 40, "native_country": "Peru"}}"#,
    r#"{"record": {"age": -5, "workclass": "Private", "fnlwgt": 1, "education": "HS-grad", "education_num": 9, "marital_status": "Divorced", "occupation": "Sales", "relationship": "Unmarried", "race": "White", "sex": "Female", "capital_gain": 0, "capital_loss": 0, "hours_per_week": 40, "native_country": "Peru"}}"#,
];

/// Writes the demo's input: adult.test rows (or a scenario's fresh rows) as JSON lines with the
/// bad records spread in.
pub(super) fn demo_input(
    data_dir: &Path,
    rows: usize,
    scenario: Option<Scenario>,
    out: &Path,
) -> Result<(), DemoError> {
    let mut next: Box<dyn FnMut() -> (CensusRow, bool)> = match scenario {
        Some(s) => {
            let mut made = crate::scenario::from_data(data_dir, &Fetch::default(), None, s)?;
            Box::new(move || {
                let m = made.next_row();
                (m.row, m.label)
            })
        }
        None => {
            let test = read_labeled(&ensure_file(data_dir, TEST_FILE, &Fetch::default())?)?;
            let mut cycle = test.into_iter().cycle();
            Box::new(move || {
                let r = cycle.next().expect("adult.test has rows");
                (r.row, r.label)
            })
        }
    };
    let io_err = |source| DemoError::Io {
        path: out.to_path_buf(),
        source,
    };
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).map_err(io_err)?);
    let every = (rows / (BAD_RECORDS.len() + 1)).max(1);
    let mut bad = BAD_RECORDS.iter();
    for i in 0..rows {
        if i > 0 && i % every == 0 {
            if let Some(b) = bad.next() {
                writeln!(f, "{b}").map_err(io_err)?;
            }
        }
        let (row, label) = next();
        let line = serde_json::json!({
            "income_bracket": crate::data::label_text(label),
            "record": row,
        });
        writeln!(f, "{line}").map_err(io_err)?;
    }
    f.flush().map_err(io_err)
}

/// Version 1 trained on the first `rows` rows of adult.data only: a deliberately weak champion,
/// so that the first retrain is clearly better and the gate has something to promote.
pub(super) fn weak_bootstrap(
    store: &BundleStore,
    data_dir: &Path,
    rows: usize,
    search: &SearchConfig,
    scoring: Scoring,
) -> Result<Manifest, DemoError> {
    let (train, sha256) = load_training_rows(data_dir, &Fetch::default())?;
    let test = read_labeled(&ensure_file(data_dir, TEST_FILE, &Fetch::default())?)?;
    let rows = rows.clamp(search.folds.get() * 10, train.len());
    let trained = fit(&train[..rows], Some(&test), search, scoring).map_err(InitError::from)?;
    let files = bundle_files(
        trained,
        search,
        None,
        TrainingData::adult_data(&sha256, rows),
    );
    Ok(store.save(files, true).map_err(InitError::from)?)
}
