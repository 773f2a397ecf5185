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
use crate::bundle::{Bundle, BundleError, BundleFiles};
use crate::kafka::{BrokerError, KafkaSettings};

/// Why a bundle could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the model text of v{version} is not UTF-8")]
    NotUtf8 {
        version: u32,
        #[source]
        source: std::str::Utf8Error,
    },
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Why a `census.models` record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefusedBundle {
    #[error("not a model message")]
    NotAModelMessage(#[source] serde_json::Error),
    #[error("the processor is not base64")]
    NotBase64(#[source] base64::DecodeError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

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
) -> Result<(), PublishError> {
    let msg = ModelMessage::from_files(files).map_err(|source| PublishError::NotUtf8 {
        version: files.manifest.version,
        source,
    })?;
    let payload = serde_json::to_vec(&msg).expect("model message serializes");
    producer
        .send(
            FutureRecord::to(topic).key(MODEL_KEY).payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(source, _)| BrokerError::Delivery {
            topic: topic.to_owned(),
            source,
        })?;
    tracing::info!(
        "published bundle v{} on {topic} ({} bytes before compression)",
        files.manifest.version,
        payload.len()
    );
    Ok(())
}

/// Verifies and loads a `census.models` payload (CPU work: call off the runtime).
pub fn load_model_message(payload: &[u8]) -> Result<Bundle, RefusedBundle> {
    let msg: ModelMessage =
        serde_json::from_slice(payload).map_err(RefusedBundle::NotAModelMessage)?;
    let files = msg.into_files().map_err(RefusedBundle::NotBase64)?;
    Ok(files.load()?)
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
) -> Result<(), BrokerError> {
    let consumer: StreamConsumer = settings.reader()?;
    settings
        .assign_all(&consumer, &settings.topics.models, false)
        .await?;
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
                "{who}: refused a bundle from {}: {}; keeping v{}",
                settings.topics.models,
                crate::error_chain(&reason),
                current_version(&current).map_or("none".into(), |v| v.to_string())
            ),
        }
    }
}
