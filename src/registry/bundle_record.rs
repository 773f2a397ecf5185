//! A bundle record's payload: checked whole (a bundle of this build, for the version its key
//! names, files matching its manifest) before a reader counts the version, and loaded only when
//! a reader serves it.

use crate::bundle::{Bundle, BundleError, BundleFiles, Manifest};
use crate::model::Scoring;
use crate::stream::messages::ModelMessage;

/// Why a bundle record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefusedBundle {
    #[error("not a model message")]
    NotAModelMessage(#[source] serde_json::Error),
    #[error("the processor is not base64")]
    NotBase64(#[source] base64::DecodeError),
    #[error("record of v{key} holds the bundle of v{inside}")]
    WrongVersion { key: u32, inside: u32 },
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

impl RefusedBundle {
    /// A short name for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RefusedBundle::NotAModelMessage(_) => "not_a_model_message",
            RefusedBundle::NotBase64(_) => "not_base64",
            RefusedBundle::WrongVersion { .. } => "wrong_version",
            RefusedBundle::Bundle(BundleError::Integrity { .. }) => "integrity",
            RefusedBundle::Bundle(BundleError::Processor { .. }) => "processor",
            RefusedBundle::Bundle(BundleError::Model { .. }) => "model",
            RefusedBundle::Bundle(BundleError::Manifest { .. }) => "manifest",
            RefusedBundle::Bundle(_) => "other",
        }
    }
}

/// The files of the bundle record of `version`, verified against their manifest (nothing
/// loaded).
pub fn bundle_files(version: u32, payload: &[u8]) -> Result<BundleFiles, RefusedBundle> {
    let msg: ModelMessage =
        serde_json::from_slice(payload).map_err(RefusedBundle::NotAModelMessage)?;
    if msg.manifest.version != version {
        return Err(RefusedBundle::WrongVersion {
            key: version,
            inside: msg.manifest.version,
        });
    }
    let files = msg.into_files().map_err(RefusedBundle::NotBase64)?;
    files.verify()?;
    Ok(files)
}

/// The manifest of the bundle record of `version`, its files verified.
pub fn checked_manifest(version: u32, payload: &[u8]) -> Result<Manifest, RefusedBundle> {
    bundle_files(version, payload).map(|f| f.manifest)
}

/// Verifies and loads the bundle record of `version`, its model scored as `scoring` says (CPU
/// work: call off the runtime).
pub fn load_bundle(
    version: u32,
    payload: &[u8],
    scoring: Scoring,
) -> Result<Bundle, RefusedBundle> {
    Ok(bundle_files(version, payload)?.load(scoring)?)
}
