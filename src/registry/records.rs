//! The records of `census.models`: one immutable bundle record per version, keyed
//! `bundle/vNNNN`, and alias records keyed `alias/champion` and `alias/challenger` that say which
//! version plays which part, since when, why, and on what evidence. The topic is compacted: the
//! newest record of each key is what stays.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bundle::BundleFiles;
use crate::lifecycle::Evidence;
use crate::stream::messages::ModelMessage;

/// The part a version plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Alias {
    /// Serves every prediction.
    Champion,
    /// Scored in shadow beside the champion while the gate decides.
    Challenger,
}

impl Alias {
    pub const fn as_str(self) -> &'static str {
        match self {
            Alias::Champion => "champion",
            Alias::Challenger => "challenger",
        }
    }

    pub fn key(self) -> String {
        format!("alias/{}", self.as_str())
    }
}

/// Who plays a part now, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub alias: Alias,
    /// `None`: nobody (a challenger that was decided on).
    pub version: Option<u32>,
    /// The version that had the part before.
    pub previous: Option<u32>,
    pub set_at_ms: i64,
    /// Why, in words: "bootstrap", "retrain", "promoted by the gate", "promote command: …".
    pub reason: String,
    pub evidence: Option<Evidence>,
    /// For a challenger: per `topic/partition`, the offsets from which labeled requests count
    /// for the gate (after its training cut-off, or after the promotion it is on probation for).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub from_offsets: BTreeMap<String, i64>,
    /// For a challenger: the former champion, shadowed after a promotion; the gate rolls back to
    /// it if it proves better.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probation: bool,
}

impl AliasRecord {
    pub fn new(alias: Alias, version: Option<u32>, previous: Option<u32>, reason: &str) -> Self {
        AliasRecord {
            alias,
            version,
            previous,
            set_at_ms: crate::stream::messages::now_ms(),
            reason: reason.to_owned(),
            evidence: None,
            from_offsets: BTreeMap::new(),
            probation: false,
        }
    }
}

/// The key of a version's bundle record.
pub fn bundle_key(version: u32) -> String {
    format!("bundle/v{version:04}")
}

/// A record of the topic, as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A bundle, still as bytes: it is verified and loaded only when needed.
    Bundle {
        version: u32,
        payload: Vec<u8>,
    },
    Alias(AliasRecord),
}

/// Why a record of the topic is not understood.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("a record without a key")]
    NoKey,
    #[error("a record with key `{0}`, which this build does not know")]
    UnknownKey(String),
    #[error("alias record `{key}` is not valid")]
    BadAlias {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("alias record `{key}` says it is for {found:?}")]
    AliasMismatch { key: String, found: Alias },
    #[error("record `{0}` has no payload")]
    Empty(String),
    #[error("record `{0}` names a version outside 1..={max}", max = crate::bundle::MAX_VERSION)]
    VersionOutOfRange(String),
}

/// Reads one record of the topic.
pub fn parse(key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<Record, RecordError> {
    let key = String::from_utf8_lossy(key.ok_or(RecordError::NoKey)?).into_owned();
    let payload = payload
        .filter(|p| !p.is_empty())
        .ok_or_else(|| RecordError::Empty(key.clone()))?;
    if let Some(v) = key.strip_prefix("bundle/v") {
        let version: u32 = v
            .parse()
            .map_err(|_| RecordError::UnknownKey(key.clone()))?;
        if version == 0 || version > crate::bundle::MAX_VERSION {
            return Err(RecordError::VersionOutOfRange(key));
        }
        return Ok(Record::Bundle {
            version,
            payload: payload.to_vec(),
        });
    }
    for alias in [Alias::Champion, Alias::Challenger] {
        if key == alias.key() {
            let record: AliasRecord =
                serde_json::from_slice(payload).map_err(|source| RecordError::BadAlias {
                    key: key.clone(),
                    source,
                })?;
            if record.alias != alias {
                return Err(RecordError::AliasMismatch {
                    key,
                    found: record.alias,
                });
            }
            return Ok(Record::Alias(record));
        }
    }
    Err(RecordError::UnknownKey(key))
}

/// A bundle record's payload.
pub fn bundle_payload(files: &BundleFiles) -> Result<Vec<u8>, std::str::Utf8Error> {
    let msg = ModelMessage::from_files(files)?;
    Ok(serde_json::to_vec(&msg).expect("model message serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_their_keys() {
        let a = AliasRecord::new(Alias::Champion, Some(3), Some(2), "promoted");
        let bytes = serde_json::to_vec(&a).unwrap();
        let key = Alias::Champion.key();
        assert_eq!(
            parse(Some(key.as_bytes()), Some(&bytes)).unwrap(),
            Record::Alias(a.clone())
        );
        // An alias record under the other alias's key is refused.
        let other = Alias::Challenger.key();
        assert!(parse(Some(other.as_bytes()), Some(&bytes)).is_err());
        assert_eq!(
            parse(Some(bundle_key(12).as_bytes()), Some(b"{}")).unwrap(),
            Record::Bundle {
                version: 12,
                payload: b"{}".to_vec()
            }
        );
        assert!(matches!(
            parse(Some(b"bundle"), Some(b"{}")),
            Err(RecordError::UnknownKey(_))
        ));
        assert!(matches!(parse(None, Some(b"{}")), Err(RecordError::NoKey)));
        let max = bundle_key(u32::MAX);
        assert!(matches!(
            parse(Some(max.as_bytes()), Some(b"{}")),
            Err(RecordError::VersionOutOfRange(_))
        ));
    }
}
