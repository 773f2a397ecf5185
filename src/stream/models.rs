//! Model distribution on `census.models`: publishing a bundle, and following the topic to keep
//! the newest verified bundle in an [`ArcSwapOption`] that scorers read between batches.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::messages::{ModelMessage, MODEL_KEY};
use super::{KafkaSettings, StreamError};
use crate::bundle::{Bundle, BundleFiles};

/// The bundle in use, swapped whole.
pub type CurrentBundle = Arc<ArcSwapOption<Bundle>>;

/// The version of the bundle in use, if any.
pub fn current_version(current: &CurrentBundle) -> Option<u32> {
    current.load().as_ref().map(|b| b.manifest.version)
}

/// Publishes a bundle on the models topic.
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    files: &BundleFiles,
) -> Result<(), StreamError> {
    let msg = ModelMessage::from_files(files)
        .map_err(|e| StreamError::Setup(format!("model text is not UTF-8: {e}")))?;
    let payload = serde_json::to_vec(&msg).expect("model message serializes");
    producer
        .send(
            FutureRecord::to(topic).key(MODEL_KEY).payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| StreamError::Delivery {
            topic: topic.to_owned(),
            reason: e.to_string(),
        })?;
    tracing::info!(
        "published bundle v{} on {topic} ({} bytes before compression)",
        files.manifest.version,
        payload.len()
    );
    Ok(())
}

/// Verifies and loads a `census.models` payload (CPU work: call off the runtime).
pub fn load_model_message(payload: &[u8]) -> Result<Bundle, String> {
    let msg: ModelMessage =
        serde_json::from_slice(payload).map_err(|e| format!("not a model message: {e}"))?;
    let files = msg
        .into_files()
        .map_err(|e| format!("processor is not base64: {e}"))?;
    files.load().map_err(|e| e.to_string())
}

/// Installs `bundle` if it is newer than the one in use; returns whether it did.
pub fn install(current: &CurrentBundle, bundle: Bundle, who: &str) -> bool {
    let version = bundle.manifest.version;
    if current_version(current).is_some_and(|v| v >= version) {
        return false;
    }
    current.store(Some(Arc::new(bundle)));
    tracing::info!("{who}: model v{version} loaded");
    true
}

/// Follows the models topic from its beginning until `shutdown`, installing every newer valid
/// bundle and announcing its version on `loaded`. A bad bundle is refused and logged; the
/// current one stays.
pub async fn follow(
    settings: KafkaSettings,
    current: CurrentBundle,
    loaded: watch::Sender<Option<u32>>,
    who: String,
    shutdown: CancellationToken,
) -> Result<(), StreamError> {
    let consumer: StreamConsumer = settings.reader()?;
    settings.assign_all(&consumer, &settings.topics.models, false)?;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = consumer.recv() => m,
        };
        let payload = match msg {
            Ok(m) => m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            Err(e) => {
                tracing::warn!("{who}: models topic: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        match tokio::task::spawn_blocking(move || load_model_message(&payload)).await? {
            Ok(bundle) => {
                if install(&current, bundle, &who) {
                    loaded.send_replace(current_version(&current));
                }
            }
            Err(reason) => tracing::warn!(
                "{who}: refused a bundle from {}: {reason}; keeping v{}",
                settings.topics.models,
                current_version(&current).map_or("none".into(), |v| v.to_string())
            ),
        }
    }
}
