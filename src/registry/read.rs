//! Reading the whole registry once, to its current end: what the retrainer does before anything
//! else.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::Offset;

use super::records::parse;
use super::state::Registry;
use crate::kafka::{BrokerError, KafkaSettings};

/// How long the read waits for a record before it takes the topic's end as reached (the last
/// offsets of a topic written in transactions are commit markers, never delivered).
const IDLE: Duration = Duration::from_millis(500);

/// The registry as the topic holds it now.
pub async fn read_registry(settings: &KafkaSettings) -> Result<Registry, BrokerError> {
    let topic = &settings.topics.models;
    let ends = settings.end_offsets(topic).await?;
    let consumer: StreamConsumer = settings.reader()?;
    settings.assign_all(&consumer, topic, false).await?;
    let mut registry = Registry::default();
    let started = Instant::now();
    let mut idle = 0;
    while !reached(&consumer, topic, &ends)? && idle < 2 {
        match tokio::time::timeout(IDLE, consumer.recv()).await {
            Ok(Ok(m)) => {
                idle = 0;
                match parse(m.key(), m.payload()) {
                    Ok(record) => registry.apply(record),
                    Err(e) => tracing::warn!(
                        "{topic} offset {}: skipped: {}",
                        m.offset(),
                        crate::error_chain(&e)
                    ),
                }
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => idle += 1,
        }
    }
    tracing::info!(
        "read {topic} in {:.1} s: versions {:?}, champion {:?}, challenger {:?}",
        started.elapsed().as_secs_f64(),
        registry.versions().collect::<Vec<_>>(),
        registry.version_of(super::Alias::Champion),
        registry.version_of(super::Alias::Challenger),
    );
    Ok(registry)
}

/// Whether `consumer` has read every partition up to its end offset.
fn reached(
    consumer: &StreamConsumer,
    topic: &str,
    ends: &[(i32, i64)],
) -> Result<bool, BrokerError> {
    let positions = consumer.position()?;
    Ok(ends.iter().all(|&(p, end)| {
        end == 0
            || matches!(
                positions.find_partition(topic, p).map(|e| e.offset()),
                Some(Offset::Offset(o)) if o >= end
            )
    }))
}
