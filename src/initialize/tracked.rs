//! Version 1 logged to MLflow: the search as a run, the bundle as a version of the registered
//! model, and the champion alias on it.

use crate::bundle::{BundleStore, Manifest};
use crate::tracking::{Tracker, VersionRecord, CHAMPION};

/// Queues `manifest`'s version, made from a search with these `log_losses` that started at
/// `started_ms`, for MLflow as the champion.
pub fn track(
    tracker: &Tracker,
    store: &BundleStore,
    manifest: &Manifest,
    log_losses: &[f64],
    started_ms: i64,
) {
    let mut record = VersionRecord::of_bundle(manifest, store, log_losses, started_ms);
    record.tag("made_by", "initialize");
    tracker.log_version(record);
    // It is the champion (models/CURRENT), and the registry's first records name it so.
    tracker.set_alias(CHAMPION, manifest.version);
}
