//! The processor's file format: a magic tag, a format version, then the bincode payload. An old
//! or foreign file gives a clear error, never garbage.

use super::FeatureProcessor;

const MAGIC: &[u8; 8] = b"CSFPROC\0";

/// Bump when the serialized layout of [`FeatureProcessor`] changes.
pub const PROCESSOR_FORMAT_VERSION: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ProcessorFileError {
    #[error("not a census-stream feature processor file (bad magic bytes)")]
    BadMagic,
    #[error("processor format version {found}; this build reads version {expected}")]
    Version { found: u32, expected: u32 },
    #[error("corrupted processor payload")]
    Decode(#[source] bincode::error::DecodeError),
    #[error("processor payload has {0} trailing bytes")]
    Trailing(usize),
    #[error(
        "feature schema mismatch: {found:?} numeric and categorical columns; expected \
         {expected:?}"
    )]
    Schema {
        found: [usize; 2],
        expected: [usize; 2],
    },
    #[error("a numeric scaler has an invalid range")]
    ScalerRange,
    #[error("the drift histograms do not match the features")]
    DriftShape,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

impl FeatureProcessor {
    /// Serializes the processor with its header.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&PROCESSOR_FORMAT_VERSION.to_le_bytes());
        let payload =
            bincode::serde::encode_to_vec(self, config()).expect("a processor always serializes");
        out.extend_from_slice(&payload);
        out
    }

    /// Reads a processor written by [`Self::to_bytes`], refusing anything else whole.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProcessorFileError> {
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or(ProcessorFileError::BadMagic)?;
        let (version, payload) = rest
            .split_first_chunk::<4>()
            .ok_or(ProcessorFileError::BadMagic)?;
        let found = u32::from_le_bytes(*version);
        if found != PROCESSOR_FORMAT_VERSION {
            return Err(ProcessorFileError::Version {
                found,
                expected: PROCESSOR_FORMAT_VERSION,
            });
        }
        let (processor, used): (FeatureProcessor, usize) =
            bincode::serde::decode_from_slice(payload, config())
                .map_err(ProcessorFileError::Decode)?;
        if used != payload.len() {
            return Err(ProcessorFileError::Trailing(payload.len() - used));
        }
        processor.check_shape()?;
        Ok(processor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::row;
    use super::*;

    fn processor() -> FeatureProcessor {
        FeatureProcessor::fit(&[
            row("Private", "Sales", "United-States", 20.0),
            row("?", "Tech-support", "Cuba", 50.0),
        ])
    }

    #[test]
    fn round_trip_gives_identical_features() {
        let p = processor();
        let bytes = p.to_bytes();
        let q = FeatureProcessor::from_bytes(&bytes).unwrap();
        let r = row("Private", "Tech-support", "Mars", 33.0);
        assert_eq!(p.transform(&r), q.transform(&r));
        assert_eq!(bytes, q.to_bytes(), "serialization is deterministic");
    }

    #[test]
    fn truncated_wrong_version_and_foreign_files_are_refused() {
        let bytes = processor().to_bytes();
        assert!(FeatureProcessor::from_bytes(&bytes[..bytes.len() - 3]).is_err());
        assert!(matches!(
            FeatureProcessor::from_bytes(b"hello world, not a processor"),
            Err(ProcessorFileError::BadMagic)
        ));
        let mut old = bytes.clone();
        old[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            FeatureProcessor::from_bytes(&old),
            Err(ProcessorFileError::Version { found: 0, .. })
        ));
        let mut longer = bytes;
        longer.push(0);
        assert!(matches!(
            FeatureProcessor::from_bytes(&longer),
            Err(ProcessorFileError::Trailing(1))
        ));
    }
}
