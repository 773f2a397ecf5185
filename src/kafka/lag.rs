//! A consumer's lag: the records of its partitions not yet read, kept in a gauge.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// How often the lag is measured (a request to the broker per partition).
const EVERY: Duration = Duration::from_secs(5);

const TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps `gauge` at `consumer`'s lag over the partitions it owns until `stop`, or until the
/// consumer is dropped: the watcher holds it weakly, so that it never keeps a consumer (and its
/// group membership) alive after its service is gone.
pub fn watch_lag(consumer: &Arc<StreamConsumer>, gauge: Gauge, stop: CancellationToken) {
    let consumer = Arc::downgrade(consumer);
    tokio::spawn(async move {
        let mut first = true;
        loop {
            // The first look once the consumer has had a moment to join its group.
            let wait = if first { Duration::from_secs(1) } else { EVERY };
            first = false;
            tokio::select! {
                _ = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let Some(c) = consumer.upgrade() else {
                return;
            };
            match tokio::task::spawn_blocking(move || lag(&c)).await {
                Ok(Ok(n)) => {
                    gauge.set(n);
                }
                Ok(Err(e)) => tracing::debug!("measuring the consumer lag: {e}"),
                Err(_) => return,
            }
        }
    });
}

/// The end offset minus the position, summed over the assigned partitions. A partition not read
/// yet counts from its committed offset, or from its start when it has none.
fn lag(consumer: &StreamConsumer) -> KafkaResult<i64> {
    let positions = consumer.position()?;
    let mut unread = TopicPartitionList::new();
    let mut total = 0;
    for e in positions.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
        match e.offset() {
            Offset::Offset(n) => total += (high - n).max(0),
            _ => {
                unread.add_partition_offset(e.topic(), e.partition(), Offset::Offset(low))?;
            }
        }
    }
    if unread.count() > 0 {
        let committed = consumer.committed_offsets(unread.clone(), TIMEOUT)?;
        for e in unread.elements() {
            let (_, high) = consumer.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
            let from = match committed
                .find_partition(e.topic(), e.partition())
                .map(|c| c.offset())
            {
                Some(Offset::Offset(n)) => n,
                _ => match e.offset() {
                    Offset::Offset(low) => low,
                    _ => 0,
                },
            };
            total += (high - from).max(0);
        }
    }
    Ok(total)
}
