//! Reading the whole registry once, to its current end: what the retrainer does before anything
//! else.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::Offset;

use super::state::{Ignored, Registry};
use crate::kafka::{BrokerError, KafkaSettings};

/// How long the read waits for a record before it looks again at where it stands.
const IDLE: Duration = Duration::from_millis(500);
/// Offsets at the end of a partition that may be transaction markers, never delivered.
const MARKERS: i64 = 3;
/// How long the read may make no progress before it gives up.
const PATIENCE: Duration = Duration::from_secs(60);

/// The registry as the topic holds it now; each record it ignores is logged.
pub async fn read_registry(settings: &KafkaSettings) -> Result<Registry, BrokerError> {
    read_registry_with(settings, |_| {}).await
}

/// [`read_registry`], each record ignored also passed to `on_ignored`.
pub async fn read_registry_with(
    settings: &KafkaSettings,
    on_ignored: impl FnMut(&Ignored),
) -> Result<Registry, BrokerError> {
    let topic = &settings.topics.models;
    let consumer: StreamConsumer = settings.reader()?;
    let mut registry = Registry::default();
    let started = Instant::now();
    catch_up(settings, &consumer, &mut registry, on_ignored).await?;
    tracing::info!(
        "read {topic} in {:.1} s: versions {:?}, champion {:?}, challenger {:?}",
        started.elapsed().as_secs_f64(),
        registry.versions().collect::<Vec<_>>(),
        registry.version_of(super::Alias::Champion),
        registry.version_of(super::Alias::Challenger),
    );
    Ok(registry)
}

/// Assigns `consumer` the whole models topic from its beginning and applies every record up to
/// the topic's end as of now to `registry`; the consumer goes on from there. Each record ignored
/// is logged and passed to `on_ignored`.
pub(super) async fn catch_up(
    settings: &KafkaSettings,
    consumer: &StreamConsumer,
    registry: &mut Registry,
    mut on_ignored: impl FnMut(&Ignored),
) -> Result<(), BrokerError> {
    let topic = &settings.topics.models;
    let ends = settings.end_offsets(topic).await?;
    settings.assign_all(consumer, topic, false).await?;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (reached, near) = position_vs(consumer, topic, &ends)?;
        if reached {
            return Ok(());
        }
        match tokio::time::timeout(IDLE, consumer.recv()).await {
            Ok(Ok(m)) => {
                if let Err(e) = registry.read_off_runtime(m.key(), m.payload()).await {
                    warn_ignored(topic, m.offset(), &e);
                    on_ignored(&e);
                }
            }
            Ok(Err(e)) => return Err(e.into()),
            // Nothing more comes while the position is a few offsets short of the end: those
            // are transaction markers, never delivered.
            Err(_) if near => return Ok(()),
            Err(_) if Instant::now() > deadline => {
                return Err(BrokerError::Stalled {
                    topic: topic.clone(),
                    waited: PATIENCE,
                })
            }
            Err(_) => {}
        }
    }
}

/// Whether `consumer` has read every partition up to its end offset, and whether it is within
/// a few (marker) offsets of it everywhere.
fn position_vs(
    consumer: &StreamConsumer,
    topic: &str,
    ends: &[(i32, i64)],
) -> Result<(bool, bool), BrokerError> {
    let positions = consumer.position()?;
    let at = |p: i32| match positions.find_partition(topic, p).map(|e| e.offset()) {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    };
    let reached = ends
        .iter()
        .all(|&(p, end)| end == 0 || at(p).is_some_and(|o| o >= end));
    let near = ends
        .iter()
        .all(|&(p, end)| end == 0 || at(p).is_some_and(|o| o >= end - MARKERS));
    Ok((reached, near))
}

/// The warning for a record a reader ignores.
pub(super) fn warn_ignored(topic: &str, offset: i64, e: &Ignored) {
    tracing::warn!(
        "{topic} offset {offset}: record ignored ({}): {}",
        e.reason(),
        crate::error_chain(e)
    );
}
