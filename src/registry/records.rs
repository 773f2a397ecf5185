//! The records of `census.models`: one immutable bundle record per version, keyed
//! `bundle/vNNNN`; alias records keyed `alias/champion` and `alias/challenger` that say which
//! version plays which part, since when, why, and on what evidence; the operator's pin (`pin`);
//! and operators' commands (`command/<id>`), each answered under its own key by whoever applied
//! it. The topic is compacted: the newest record of each key is what stays.

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
    /// The content of the version named ([`crate::bundle::Manifest::bundle_sha256`]): a
    /// reader serves only a bundle record with this content, so a record that replaced the
    /// version's bundle later (and that compaction kept) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_sha256: Option<String>,
    /// Who asked, for a change an operator's command made (`user@host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_by: Option<String>,
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
            bundle_sha256: None,
            asked_by: None,
        }
    }
}

/// The operator's pin (key `pin`): while it names a version, nothing but an operator's command
/// changes the champion: the gate's promotions and rollbacks are held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinRecord {
    /// `None`: unpinned.
    pub version: Option<u32>,
    pub reason: String,
    pub asked_by: String,
    pub set_at_ms: i64,
}

impl PinRecord {
    pub const KEY: &'static str = "pin";
}

/// What an operator asks of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Make `version` the champion.
    Promote { version: u32 },
    /// Make the champion's previous version the champion again; with `pin`, pin it there.
    Rollback {
        #[serde(default)]
        pin: bool,
    },
    /// Make `version` the champion (if it is not) and pin it.
    Pin { version: u32 },
    /// Let the gate decide again.
    Unpin,
}

impl std::fmt::Display for Action {
    /// As typed: `promote 3`, `rollback --pin`, `pin 3`, `unpin`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Promote { version } => write!(f, "promote {version}"),
            Action::Rollback { pin: false } => f.write_str("rollback"),
            Action::Rollback { pin: true } => f.write_str("rollback --pin"),
            Action::Pin { version } => write!(f, "pin {version}"),
            Action::Unpin => f.write_str("unpin"),
        }
    }
}

impl Action {
    /// `promote`, `rollback`, `pin` or `unpin`.
    pub fn as_label(&self) -> &'static str {
        match self {
            Action::Promote { .. } => "promote",
            Action::Rollback { .. } => "rollback",
            Action::Pin { .. } => "pin",
            Action::Unpin => "unpin",
        }
    }
}

/// The answer to a command, written under the command's key by whoever applied or refused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub applied: bool,
    /// What was done, or why not.
    pub message: String,
    /// Who answered: the retrainer (its instance) or the command line itself.
    pub answered_by: String,
    pub at_ms: i64,
}

/// An operator's command (key `command/<id>`): written by `registry promote|rollback|pin|unpin`
/// when a retrainer runs, applied by the retrainer (the registry's one writer), and answered
/// under the same key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub id: String,
    #[serde(flatten)]
    pub action: Action,
    pub reason: String,
    pub asked_by: String,
    pub asked_at_ms: i64,
    /// A command not answered by then is refused as expired: whoever asked has stopped waiting.
    pub expires_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
}

impl CommandRecord {
    pub fn key(&self) -> String {
        format!("{COMMAND_PREFIX}{}", self.id)
    }
}

const COMMAND_PREFIX: &str = "command/";

/// The largest record a reader accepts; a larger one is ignored unread.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

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
    Pin(PinRecord),
    Command(CommandRecord),
    /// A tombstone on a bundle's key: the version is retired, its bundle gone.
    Retired {
        version: u32,
    },
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
    #[error("record `{key}` has {bytes} bytes, over the {MAX_RECORD_BYTES} a reader accepts")]
    TooLarge { key: String, bytes: usize },
    #[error("record `{key}` is not valid")]
    BadRecord {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("command record `{key}` carries the id `{id}`")]
    CommandMismatch { key: String, id: String },
}

impl RecordError {
    /// A short name for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::NoKey => "no_key",
            RecordError::UnknownKey(_) => "unknown_key",
            RecordError::BadAlias { .. } | RecordError::AliasMismatch { .. } => "bad_alias",
            RecordError::Empty(_) => "empty",
            RecordError::VersionOutOfRange(_) => "version_out_of_range",
            RecordError::TooLarge { .. } => "too_large",
            RecordError::BadRecord { .. } | RecordError::CommandMismatch { .. } => "bad_record",
        }
    }
}

/// Reads one record of the topic.
pub fn parse(key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<Record, RecordError> {
    let key = String::from_utf8_lossy(key.ok_or(RecordError::NoKey)?).into_owned();
    let Some(payload) = payload.filter(|p| !p.is_empty()) else {
        return match bundle_version(&key)? {
            Some(version) => Ok(Record::Retired { version }),
            None => Err(RecordError::Empty(key)),
        };
    };
    if payload.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge {
            key,
            bytes: payload.len(),
        });
    }
    let json = |key: &str| {
        let key = key.to_owned();
        move |source| RecordError::BadRecord { key, source }
    };
    if key == PinRecord::KEY {
        return Ok(Record::Pin(
            serde_json::from_slice(payload).map_err(json(&key))?,
        ));
    }
    if let Some(id) = key.strip_prefix(COMMAND_PREFIX) {
        let command: CommandRecord = serde_json::from_slice(payload).map_err(json(&key))?;
        if command.id != id {
            return Err(RecordError::CommandMismatch {
                id: command.id,
                key,
            });
        }
        return Ok(Record::Command(command));
    }
    if let Some(version) = bundle_version(&key)? {
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

/// The version a bundle record's key names (none for another key).
fn bundle_version(key: &str) -> Result<Option<u32>, RecordError> {
    let Some(v) = key.strip_prefix("bundle/v") else {
        return Ok(None);
    };
    let version: u32 = v
        .parse()
        .map_err(|_| RecordError::UnknownKey(key.to_owned()))?;
    if version == 0 || version > crate::bundle::MAX_VERSION {
        return Err(RecordError::VersionOutOfRange(key.to_owned()));
    }
    Ok(Some(version))
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
