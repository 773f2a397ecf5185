//! The Adult data set: the row type, the UCI file reader, and the download of missing files.

mod download;
mod schema;
mod uci;

use std::path::{Path, PathBuf};

pub use download::{download, known_sha256, UCI_BASE_URL};
pub use schema::{
    check_category, check_numeric, label_text, parse_label, CensusRow, ImpossibleValue, LabeledRow,
    COLUMNS, MAX_CATEGORY_BYTES,
};
pub use uci::{parse_uci_line, read_labeled};

/// The training file of the Adult data set.
pub const TRAIN_FILE: &str = "adult.data";
/// The test file: what `initialize` evaluates on, and what the producer streams by default.
pub const TEST_FILE: &str = "adult.test";

/// Errors reading the data set. Each names the file, and the line and field where it applies.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "{path} is missing ({reason}). Put the UCI Adult file there (from {UCI_BASE_URL}) \
         or pass --data-dir with the folder that holds adult.data and adult.test"
    )]
    Missing { path: PathBuf, reason: String },
    #[error("{file}:{line}: field `{field}`: {reason}")]
    Malformed {
        file: PathBuf,
        line: usize,
        field: String,
        reason: String,
    },
    #[error("{0}: cannot read CSV: {1}")]
    Csv(PathBuf, String),
    #[error("{0}: no data rows")]
    Empty(PathBuf),
    #[error("{0}")]
    Io(PathBuf, #[source] std::io::Error),
}

/// The training and test rows of the Adult data set.
pub struct AdultData {
    pub train: Vec<LabeledRow>,
    pub test: Vec<LabeledRow>,
    /// sha256 of adult.data, recorded in each manifest as the base data's identity.
    pub train_sha256: String,
}

/// How to get a file that is not in the data folder.
#[derive(Debug, Clone)]
pub enum Fetch {
    /// Download from this base URL (the UCI archive by default).
    From(String),
    /// Never download: a missing file is an error.
    Never,
}

impl Default for Fetch {
    fn default() -> Self {
        Fetch::From(UCI_BASE_URL.to_owned())
    }
}

/// Makes sure `dir/file` exists, downloading it if allowed.
pub fn ensure_file(dir: &Path, file: &str, fetch: &Fetch) -> Result<PathBuf, DataError> {
    let path = dir.join(file);
    if path.is_file() {
        return Ok(path);
    }
    match fetch {
        Fetch::Never => Err(DataError::Missing {
            path,
            reason: "not found, and downloading is off".into(),
        }),
        Fetch::From(base) => {
            std::fs::create_dir_all(dir).map_err(|e| DataError::Io(dir.to_path_buf(), e))?;
            tracing::info!("{} not found: downloading it from {base}", path.display());
            download(base, file, &path)?;
            Ok(path)
        }
    }
}

/// Loads adult.data and adult.test from `dir`, fetching missing files as `fetch` allows.
pub fn load_adult(dir: &Path, fetch: &Fetch) -> Result<AdultData, DataError> {
    let (train, train_sha256) = load_training_rows(dir, fetch)?;
    Ok(AdultData {
        train,
        test: read_labeled(&ensure_file(dir, TEST_FILE, fetch)?)?,
        train_sha256,
    })
}

/// The rows of adult.data and the file's sha256 (its identity in every manifest).
pub fn load_training_rows(
    dir: &Path,
    fetch: &Fetch,
) -> Result<(Vec<LabeledRow>, String), DataError> {
    let path = ensure_file(dir, TRAIN_FILE, fetch)?;
    let bytes = std::fs::read(&path).map_err(|e| DataError::Io(path.clone(), e))?;
    Ok((
        read_labeled(&path)?,
        crate::util::atomic_file::sha256_hex(&bytes),
    ))
}
