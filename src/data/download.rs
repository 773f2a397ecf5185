//! Fetches the Adult files from the UCI archive when they are not in the data folder, checking
//! them against the published files' sha256 before they are kept.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::DataError;
use crate::util::atomic_file::write_atomic;

/// Where the UCI archive keeps the Adult files.
pub const UCI_BASE_URL: &str = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/";

/// sha256 of the UCI originals, so that a truncated or altered download is refused.
pub fn known_sha256(file: &str) -> Option<&'static str> {
    match file {
        "adult.data" => Some("5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"),
        "adult.test" => Some("a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05"),
        _ => None,
    }
}

/// Downloads `file` from `base_url` into `dest`, verifying its sha256.
pub fn download(base_url: &str, file: &str, dest: &Path) -> Result<(), DataError> {
    let url = format!("{base_url}{file}");
    let fail = |reason: String| DataError::Missing {
        path: dest.to_path_buf(),
        reason: format!("downloading {url} failed: {reason}"),
    };
    let mut response = ureq::get(&url).call().map_err(|e| fail(e.to_string()))?;
    let bytes = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(expected) = known_sha256(file) {
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != expected {
            return Err(fail(format!(
                "sha256 {actual} differs from UCI's {expected}"
            )));
        }
    }
    write_atomic(dest, &bytes).map_err(|e| DataError::Io(dest.to_path_buf(), e))
}
