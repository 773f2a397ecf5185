//! The Adult data set: the row type, the UCI file reader, and the download of missing files.

mod download;
mod schema;
mod uci;

use std::path::{Path, PathBuf};

pub use download::{download, known_sha256, UCI_BASE_URL};
pub use schema::{check_numeric, label_text, parse_label, CensusRow, LabeledRow, COLUMNS};
pub use uci::read_labeled;

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
    #[error("{0}: {1}")]
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
    let train_path = ensure_file(dir, "adult.data", fetch)?;
    let test_path = ensure_file(dir, "adult.test", fetch)?;
    let train_bytes =
        std::fs::read(&train_path).map_err(|e| DataError::Io(train_path.clone(), e))?;
    Ok(AdultData {
        train: read_labeled(&train_path)?,
        test: read_labeled(&test_path)?,
        train_sha256: crate::atomic::sha256_hex(&train_bytes),
    })
}
