//! The retrainer's start against the registry: the topic is the truth, the local folders a
//! cache. Bundles on the topic that the cache lacks are written into it; when the topic names no
//! champion yet (a new deployment), the local current bundle is published as the champion.

use super::RetrainerError;
use crate::bundle::{BundleFiles, BundleStore};
use crate::model::Scoring;
use crate::registry::{load_bundle, Alias, AliasRecord, Publisher, Registry};
use crate::stream::messages::ModelMessage;

/// Brings the local cache up to the registry and returns the champion's files (each bundle
/// loaded as `scoring` says before it is cached or published).
pub async fn sync(
    store: &BundleStore,
    registry: &Registry,
    publisher: &Publisher,
    scoring: Scoring,
) -> Result<BundleFiles, RetrainerError> {
    let missing: Vec<(u32, Vec<u8>)> = {
        let local = store.versions()?;
        registry
            .versions()
            .filter(|v| !local.contains(v))
            .filter_map(|v| registry.bundle(v).map(|p| (v, p.to_vec())))
            .collect()
    };
    let s = store.clone();
    let written = tokio::task::spawn_blocking(move || -> Result<Vec<u32>, RetrainerError> {
        let mut written = Vec::new();
        for (v, payload) in missing {
            // A bundle that does not load is left out of the cache (the follower refuses it
            // too); the registry still numbers around it.
            if let Err(e) = load_bundle(v, &payload, scoring) {
                tracing::error!(
                    "registry bundle v{v} is refused: {}",
                    crate::error_chain(&e)
                );
                continue;
            }
            let msg: ModelMessage =
                serde_json::from_slice(&payload).expect("a bundle that loads is a model message");
            let files = msg.into_files().expect("a bundle that loads decodes");
            s.put(&files, scoring)?;
            written.push(v);
        }
        Ok(written)
    })
    .await??;
    if !written.is_empty() {
        tracing::info!("retrainer: cached versions {written:?} from the registry");
    }

    let champion = match registry.version_of(Alias::Champion) {
        Some(v) => v,
        None => {
            let v = store.current_version()?;
            let s = store.clone();
            let files = tokio::task::spawn_blocking(move || s.read_files(v)).await??;
            files.load(scoring)?;
            let on_topic = registry.bundle(v).is_some();
            publisher
                .publish(
                    (!on_topic).then_some(&files),
                    &[AliasRecord {
                        bundle_sha256: Some(files.manifest.bundle_sha256()),
                        ..AliasRecord::new(
                            Alias::Champion,
                            Some(v),
                            None,
                            "bootstrap: the local store's current version",
                        )
                    }],
                )
                .await?;
            v
        }
    };
    let s = store.clone();
    let files = tokio::task::spawn_blocking(move || -> Result<_, RetrainerError> {
        let files = s.read_files(champion)?;
        files.load(scoring)?;
        s.promote(champion)?;
        Ok(files)
    })
    .await??;
    Ok(files)
}
