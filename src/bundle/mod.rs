//! The bundle: a model and the exact processor it was trained with, versioned as one unit and
//! content-addressed by the sha256s in its manifest. A bundle is verified whole before use: a
//! truncated, tampered or foreign file is refused, never half-loaded.

pub mod assemble;
mod manifest;
mod store;

use std::path::PathBuf;

pub use manifest::{
    manifest_file, model_file, processor_file, CvSummary, Manifest, TrainingData, MANIFEST_FORMAT,
    MAX_VERSION,
};
pub use store::BundleStore;

use crate::features::{feature_names, FeatureProcessor, ProcessorFileError};
use crate::model::{Model, ModelError, Scoring};
use crate::util::atomic_file::sha256_hex;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{file}: sha256 is {actual}, the manifest says {expected}: the file is truncated or altered")]
    Integrity {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file}: not a valid processor file")]
    Processor {
        file: String,
        #[source]
        source: ProcessorFileError,
    },
    #[error("{file}: not a valid model")]
    Model {
        file: String,
        #[source]
        source: ModelError,
    },
    #[error("{file}: invalid manifest: {reason}")]
    Manifest { file: String, reason: String },
    #[error("{file}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: version {version} is stored here with other files than the registry's; move the \
         local folders aside (they are a cache of the registry)",
        file.display()
    )]
    Conflict { file: PathBuf, version: u32 },
    #[error("no bundle in {0}: run `initialize` first")]
    NoCurrent(PathBuf),
}

/// The raw files of a bundle: what is stored on disk and shipped on `census.models`.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleFiles {
    pub manifest: Manifest,
    pub model_text: Vec<u8>,
    pub processor: Vec<u8>,
}

/// A verified, loaded bundle ready to score.
pub struct Bundle {
    pub manifest: Manifest,
    pub processor: FeatureProcessor,
    pub model: Model,
}

impl BundleFiles {
    /// Makes these the files of `version`: its number, file names and both sha256s.
    pub fn stamp(&mut self, version: u32) {
        let m = &mut self.manifest;
        m.version = version;
        m.model_file = model_file(version);
        m.processor_file = processor_file(version);
        m.model_sha256 = sha256_hex(&self.model_text);
        m.processor_sha256 = sha256_hex(&self.processor);
    }

    /// Verifies both files against the manifest and loads them, the model scored as `scoring`
    /// says.
    pub fn load(&self, scoring: Scoring) -> Result<Bundle, BundleError> {
        self.load_named(
            &self.manifest.model_file,
            &self.manifest.processor_file,
            scoring,
        )
    }

    /// The manifest checked and the processor verified and loaded, without the model (for
    /// readers that need the processor only, such as the dashboard's drift).
    pub fn load_processor(&self) -> Result<FeatureProcessor, BundleError> {
        self.check_manifest()?;
        self.processor_named(&self.manifest.processor_file)
    }

    /// The manifest checked and both files verified against it, nothing loaded: whether these
    /// are a bundle of this build, whole and unaltered.
    pub fn verify(&self) -> Result<(), BundleError> {
        self.check_manifest()?;
        verify(
            &self.manifest.model_file,
            &self.manifest.model_sha256,
            &self.model_text,
        )?;
        verify(
            &self.manifest.processor_file,
            &self.manifest.processor_sha256,
            &self.processor,
        )
    }

    /// The manifest's version, format and feature schema are this build's.
    fn check_manifest(&self) -> Result<(), BundleError> {
        let m = &self.manifest;
        if m.version == 0 || m.version > MAX_VERSION {
            return Err(BundleError::Manifest {
                file: manifest_file(m.version),
                reason: format!("version {} is outside 1..={MAX_VERSION}", m.version),
            });
        }
        if m.format != MANIFEST_FORMAT {
            return Err(BundleError::Manifest {
                file: manifest_file(m.version),
                reason: format!("format {} (this build reads {MANIFEST_FORMAT})", m.format),
            });
        }
        if m.feature_names != feature_names() {
            return Err(BundleError::Manifest {
                file: manifest_file(m.version),
                reason: format!(
                    "feature schema {:?} differs from this build's",
                    m.feature_names
                ),
            });
        }
        Ok(())
    }

    /// The processor file verified against the manifest and loaded.
    fn processor_named(&self, processor_name: &str) -> Result<FeatureProcessor, BundleError> {
        verify(
            processor_name,
            &self.manifest.processor_sha256,
            &self.processor,
        )?;
        FeatureProcessor::from_bytes(&self.processor).map_err(|source| BundleError::Processor {
            file: processor_name.to_owned(),
            source,
        })
    }

    /// [`Self::load`], naming the files as `model_name` and `processor_name` in errors.
    pub(crate) fn load_named(
        &self,
        model_name: &str,
        processor_name: &str,
        scoring: Scoring,
    ) -> Result<Bundle, BundleError> {
        self.check_manifest()?;
        verify(model_name, &self.manifest.model_sha256, &self.model_text)?;
        let processor = self.processor_named(processor_name)?;
        let text = std::str::from_utf8(&self.model_text).map_err(|e| BundleError::Model {
            file: model_name.to_owned(),
            source: ModelError::NotUtf8(e),
        })?;
        let model = Model::from_text(text, scoring).map_err(|source| BundleError::Model {
            file: model_name.to_owned(),
            source,
        })?;
        Ok(Bundle {
            manifest: self.manifest.clone(),
            processor,
            model,
        })
    }
}

fn verify(file: &str, expected: &str, bytes: &[u8]) -> Result<(), BundleError> {
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(BundleError::Integrity {
            file: file.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(())
}

impl Bundle {
    /// Probabilities of `>50K` for `rows`, through the bundle's processor and model.
    pub fn predict<'a>(
        &self,
        rows: impl ExactSizeIterator<Item = &'a crate::data::CensusRow>,
    ) -> Result<Vec<f64>, ModelError> {
        let features = self.processor.transform_batch(rows);
        self.model.predict(&features)
    }
}
