//! The registry as the records of the topic fold into it: every version's bundle (still as
//! bytes), who is champion and challenger, the pin, and operators' commands. Every reader folds
//! the topic through [`Registry::read`], which ignores junk — a record that does not parse, a
//! bundle that is not one, a version far above the others, a second bundle for a version — with
//! a reason, so that no record can stop a reader or change what a version is.

use std::collections::BTreeMap;

use super::bundle_record::{checked_manifest, RefusedBundle};
#[cfg(test)]
use super::records::MAX_RECORD_BYTES;
use super::records::{parse, Alias, AliasRecord, CommandRecord, PinRecord, Record, RecordError};
use crate::bundle::Manifest;

/// How far above the highest version a new bundle's version may be. Versions are numbered one
/// after another; a record far above them is junk, and counting it would push the next version
/// out of range.
pub const MAX_VERSION_GAP: u32 = 1000;

/// Why a record of the topic was ignored.
#[derive(Debug, thiserror::Error)]
pub enum Ignored {
    #[error(transparent)]
    Unreadable(#[from] RecordError),
    #[error("bundle v{version} refused")]
    BadBundle {
        version: u32,
        #[source]
        source: RefusedBundle,
    },
    #[error(
        "a second bundle record for v{version} with other content ({new}; the first, {first}, \
         stands)"
    )]
    Replaced {
        version: u32,
        first: String,
        new: String,
    },
    #[error(
        "bundle v{version} is more than {MAX_VERSION_GAP} above the highest version, v{highest}"
    )]
    VersionGap { version: u32, highest: u32 },
    #[error("checking bundle v{version} failed: {reason}")]
    CheckFailed { version: u32, reason: String },
}

impl Ignored {
    /// A short name for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Ignored::Unreadable(e) => e.reason(),
            Ignored::BadBundle { source, .. } => source.reason(),
            Ignored::Replaced { .. } => "replaced_bundle",
            Ignored::VersionGap { .. } => "version_gap",
            Ignored::CheckFailed { .. } => "check_failed",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    /// Bundle records' bytes, of the versions a reader still keeps.
    bundles: BTreeMap<u32, Vec<u8>>,
    /// Every version accepted, with its content ([`crate::bundle::Manifest::bundle_sha256`]).
    contents: BTreeMap<u32, String>,
    champion: Option<AliasRecord>,
    challenger: Option<AliasRecord>,
    pin: Option<PinRecord>,
    /// Operators' commands by id, as last written (asked, then answered).
    commands: BTreeMap<String, CommandRecord>,
    /// Bundle records are passed over unchecked (a reader that wants the commands only).
    without_bundles: bool,
    /// Versions retired (a tombstone on their bundle's key): their bundle is gone; their
    /// number stays taken.
    retired: std::collections::BTreeSet<u32>,
}

impl Registry {
    /// A registry that passes over bundle records without checking them: for a reader that
    /// wants aliases, the pin and commands only, and should not parse and hash megabytes.
    pub fn without_bundles() -> Self {
        Registry {
            without_bundles: true,
            ..Registry::default()
        }
    }

    /// Reads one record of the topic into the registry, or says why it is ignored (the registry
    /// is then as it was).
    pub fn read(&mut self, key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<(), Ignored> {
        self.apply(parse(key, payload)?)
    }

    /// [`Self::read`], a bundle's check (parsing and hashing megabytes) on a blocking thread.
    pub async fn read_off_runtime(
        &mut self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Result<(), Ignored> {
        match parse(key, payload)? {
            Record::Bundle { .. } if self.without_bundles => Ok(()),
            Record::Bundle { version, payload } => {
                let (payload, checked) = tokio::task::spawn_blocking(move || {
                    let checked = checked_manifest(version, &payload);
                    (payload, checked)
                })
                .await
                .map_err(|e| Ignored::CheckFailed {
                    version,
                    reason: e.to_string(),
                })?;
                self.add_bundle(version, payload, checked)
            }
            record => self.apply(record),
        }
    }

    pub fn apply(&mut self, record: Record) -> Result<(), Ignored> {
        match record {
            Record::Bundle { .. } if self.without_bundles => {}
            Record::Bundle { version, payload } => {
                let checked = checked_manifest(version, &payload);
                return self.add_bundle(version, payload, checked);
            }
            Record::Alias(a) => match a.alias {
                Alias::Champion => self.champion = Some(a),
                Alias::Challenger => self.challenger = Some(a),
            },
            Record::Pin(p) => self.pin = Some(p),
            Record::Retired { version } => {
                self.bundles.remove(&version);
                self.retired.insert(version);
            }
            Record::Command(c) => {
                self.commands.insert(c.id.clone(), c);
            }
        }
        Ok(())
    }

    /// Adds the bundle record of `version`, checked as `checked` says, unless it is junk.
    fn add_bundle(
        &mut self,
        version: u32,
        payload: Vec<u8>,
        checked: Result<Manifest, RefusedBundle>,
    ) -> Result<(), Ignored> {
        let manifest = checked.map_err(|source| Ignored::BadBundle { version, source })?;
        if self.retired.contains(&version) {
            // Retired already: a bundle published again after its tombstone stays retired.
            return Ok(());
        }
        let content = manifest.bundle_sha256();
        if let Some(first) = self.contents.get(&version) {
            if *first != content {
                return Err(Ignored::Replaced {
                    version,
                    first: first.clone(),
                    new: content,
                });
            }
            // The same bundle again (a republished record): nothing changes.
            return Ok(());
        }
        if let Some(highest) = self.highest() {
            if version > highest.saturating_add(MAX_VERSION_GAP) {
                return Err(Ignored::VersionGap { version, highest });
            }
        }
        self.contents.insert(version, content);
        self.bundles.insert(version, payload);
        Ok(())
    }

    /// Drops the bytes of the bundles `keep` says no to (a follower keeps only what it may
    /// still be asked to serve). Their versions and contents stay known.
    pub fn retain_bundles(&mut self, keep: impl Fn(u32) -> bool) {
        self.bundles.retain(|&v, _| keep(v));
    }

    /// The highest version with a bundle on the topic (retired or not: its number is taken).
    pub fn highest(&self) -> Option<u32> {
        let retired = self.retired.last().copied();
        self.contents.keys().next_back().copied().max(retired)
    }

    /// Whether `version` was retired.
    pub fn is_retired(&self, version: u32) -> bool {
        self.retired.contains(&version)
    }

    /// Every version with a bundle on the topic, not retired.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.contents
            .keys()
            .copied()
            .filter(|v| !self.retired.contains(v))
    }

    /// The bundle record of `version`, if its bytes are kept.
    pub fn bundle(&self, version: u32) -> Option<&[u8]> {
        self.bundles.get(&version).map(Vec::as_slice)
    }

    /// The content of `version`'s bundle, if it has one (a retired version has none).
    pub fn content(&self, version: u32) -> Option<&str> {
        if self.retired.contains(&version) {
            return None;
        }
        self.contents.get(&version).map(String::as_str)
    }

    pub fn alias(&self, alias: Alias) -> Option<&AliasRecord> {
        match alias {
            Alias::Champion => self.champion.as_ref(),
            Alias::Challenger => self.challenger.as_ref(),
        }
    }

    /// The version playing `alias`, if any.
    pub fn version_of(&self, alias: Alias) -> Option<u32> {
        self.alias(alias).and_then(|a| a.version)
    }

    /// Whether the bundle this registry holds for the version `alias` names is the one the
    /// alias record means (`false` when the record names a content the version does not have).
    pub fn alias_content_matches(&self, alias: Alias) -> bool {
        let Some(record) = self.alias(alias) else {
            return true;
        };
        match (record.version, &record.bundle_sha256) {
            (Some(v), Some(want)) => self.content(v).is_none_or(|have| have == want),
            _ => true,
        }
    }

    /// The version pinned, if any.
    pub fn pinned(&self) -> Option<&PinRecord> {
        self.pin.as_ref().filter(|p| p.version.is_some())
    }

    pub fn pin(&self) -> Option<&PinRecord> {
        self.pin.as_ref()
    }

    /// Commands not answered yet.
    pub fn pending_commands(&self) -> impl Iterator<Item = &CommandRecord> {
        self.commands.values().filter(|c| c.answer.is_none())
    }

    pub fn command(&self, id: &str) -> Option<&CommandRecord> {
        self.commands.get(id)
    }

    /// Every command, oldest asked first.
    pub fn commands(&self) -> Vec<&CommandRecord> {
        let mut all: Vec<_> = self.commands.values().collect();
        all.sort_by_key(|c| c.asked_at_ms);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{BundleFiles, Manifest};
    use crate::registry::records::{bundle_key, bundle_payload};

    /// The record of a bundle of made-up files (they verify; they do not load) for `version`.
    fn bundle(version: u32, model: &str) -> (String, Vec<u8>) {
        let mut files = BundleFiles {
            manifest: Manifest::example(version),
            model_text: model.as_bytes().to_vec(),
            processor: b"processor".to_vec(),
        };
        files.stamp(version);
        (bundle_key(version), bundle_payload(&files).unwrap())
    }

    fn read(r: &mut Registry, (key, payload): &(String, Vec<u8>)) -> Result<(), Ignored> {
        r.read(Some(key.as_bytes()), Some(payload))
    }

    #[test]
    fn junk_records_are_ignored_with_a_reason_and_change_nothing() {
        let mut r = Registry::default();
        let v1 = bundle(1, "tree one");
        read(&mut r, &v1).unwrap();
        read(&mut r, &bundle(2, "tree two")).unwrap();
        let before = r.clone();

        let junk = |key: &str, payload: &[u8]| (key.to_owned(), payload.to_vec());
        let cases = [
            (
                junk("bundle/v999999999", b"any payload"),
                "not_a_model_message",
            ),
            (junk("alias/champion", b"{not json"), "bad_alias"),
            (junk("pin", b"[]"), "bad_record"),
            (junk("who/knows", b"{}"), "unknown_key"),
            (junk("bundle/v0", b"{}"), "version_out_of_range"),
            (bundle(999_999_999, "far away"), "version_gap"),
            (bundle(2, "another tree two"), "replaced_bundle"),
            // v3's record holding v4's bundle.
            (junk(&bundle_key(3), &bundle(4, "four").1), "wrong_version"),
        ];
        for (record, reason) in &cases {
            let e = read(&mut r, record).unwrap_err();
            assert_eq!(e.reason(), *reason, "{}: {e}", record.0);
            assert_eq!(r, before, "{} changed the registry", record.0);
        }
        let too_large = vec![b' '; MAX_RECORD_BYTES + 1];
        let e = r.read(Some(b"bundle/v0003"), Some(&too_large)).unwrap_err();
        assert_eq!(e.reason(), "too_large");
        assert_eq!(r.highest(), Some(2), "junk never counts as a version");

        // The same bundle again is no replacement.
        read(&mut r, &v1).unwrap();
        assert_eq!(r, before);
        // A tampered file: its sha256 no longer matches the manifest.
        let (key, mut payload) = bundle(3, "tree three");
        let at = payload.windows(5).position(|w| w == b"three").unwrap();
        payload[at] = b'T';
        let e = read(&mut r, &(key, payload)).unwrap_err();
        assert_eq!(e.reason(), "integrity");
        // The next version in line is taken.
        read(&mut r, &bundle(3, "tree three")).unwrap();
        assert_eq!(r.highest(), Some(3));
    }

    #[test]
    fn a_registry_without_bundles_passes_over_them_and_keeps_the_rest() {
        let mut r = Registry::without_bundles();
        read(&mut r, &bundle(1, "tree one")).unwrap();
        read(&mut r, &("bundle/v0002".to_owned(), b"junk".to_vec())).unwrap();
        assert_eq!((r.highest(), r.bundle(1)), (None, None));
        let command = CommandRecord::ask(crate::registry::Action::Unpin, "why", "ops@host", 1000);
        r.read(
            Some(command.key().as_bytes()),
            Some(&serde_json::to_vec(&command).unwrap()),
        )
        .unwrap();
        assert_eq!(r.pending_commands().count(), 1);
    }

    #[test]
    fn a_tombstone_retires_a_version_whose_number_stays_taken() {
        let mut r = Registry::default();
        for v in 1..=3 {
            read(&mut r, &bundle(v, &format!("tree {v}"))).unwrap();
        }
        for v in [1, 3] {
            r.read(Some(bundle_key(v).as_bytes()), None).unwrap();
        }
        assert_eq!(r.versions().collect::<Vec<_>>(), [2]);
        assert!(r.is_retired(3) && r.bundle(3).is_none() && r.content(3).is_none());
        assert_eq!(
            r.highest(),
            Some(3),
            "the number of a retired version stays taken"
        );
        // Its bundle published again stays retired; an empty value on another key is junk.
        read(&mut r, &bundle(3, "tree 3")).unwrap();
        assert!(r.bundle(3).is_none());
        let e = r.read(Some(b"alias/champion"), Some(b"")).unwrap_err();
        assert_eq!(e.reason(), "empty");
        // A reader that starts after the topic's compaction removed the bundle record sees the
        // tombstone only.
        let mut later = Registry::default();
        later.read(Some(bundle_key(3).as_bytes()), None).unwrap();
        read(&mut later, &bundle(4, "tree 4")).unwrap();
        assert_eq!((later.highest(), later.versions().count()), (Some(4), 1));
    }

    #[test]
    fn an_alias_naming_other_content_than_the_first_bundle_is_told_apart() {
        let mut r = Registry::default();
        let (key, payload) = bundle(1, "tree one");
        read(&mut r, &(key, payload.clone())).unwrap();
        let msg: crate::stream::messages::ModelMessage = serde_json::from_slice(&payload).unwrap();
        let mut champion = AliasRecord::new(Alias::Champion, Some(1), None, "bootstrap");
        champion.bundle_sha256 = Some(msg.manifest.bundle_sha256());
        r.apply(Record::Alias(champion.clone())).unwrap();
        assert!(r.alias_content_matches(Alias::Champion));
        champion.bundle_sha256 = Some("ff".repeat(32));
        r.apply(Record::Alias(champion)).unwrap();
        assert!(!r.alias_content_matches(Alias::Champion));
    }
}
