//! The registry as the records of the topic fold into it: every version's bundle (still as
//! bytes) and who is champion and challenger.

use std::collections::BTreeMap;

use super::records::{Alias, AliasRecord, Record};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    bundles: BTreeMap<u32, Vec<u8>>,
    champion: Option<AliasRecord>,
    challenger: Option<AliasRecord>,
}

impl Registry {
    pub fn apply(&mut self, record: Record) {
        match record {
            Record::Bundle { version, payload } => {
                self.bundles.insert(version, payload);
            }
            Record::Alias(a) => match a.alias {
                Alias::Champion => self.champion = Some(a),
                Alias::Challenger => self.challenger = Some(a),
            },
        }
    }

    /// Drops the bytes of the bundles `keep` says no to (a follower keeps only what it may
    /// still be asked to serve).
    pub fn retain_bundles(&mut self, keep: impl Fn(u32) -> bool) {
        self.bundles.retain(|&v, _| keep(v));
    }

    /// The highest version with a bundle on the topic.
    pub fn highest(&self) -> Option<u32> {
        self.bundles.keys().next_back().copied()
    }

    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.bundles.keys().copied()
    }

    pub fn bundle(&self, version: u32) -> Option<&[u8]> {
        self.bundles.get(&version).map(Vec::as_slice)
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
}
