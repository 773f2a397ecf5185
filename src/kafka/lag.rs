//! A consumer's lag: the records of its partitions not yet read, kept in a gauge, and each
//! look's offsets per partition for whoever follows the input's progress (the label join's
//! clock).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the lag is measured (a request to the broker per partition).
const EVERY: Duration = Duration::from_secs(5);

const TIMEOUT: Duration = Duration::from_secs(2);

/// What one look at the broker found on the partitions a consumer owned then.
#[derive(Debug, Clone, PartialEq)]
pub struct Ends {
    /// When the look began: its positions were read then, its end offsets after.
    pub at_ms: i64,
    pub partitions: Vec<PartitionEnd>,
}

/// A partition's next record to read and its end.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionEnd {
    pub topic: String,
    pub partition: i32,
    /// The consumer's position; before its first read, the group's committed offset (or the
    /// partition's start when it has none).
    pub next: i64,
    /// The offset the next record appended will have (the high watermark).
    pub end: i64,
    /// `next` is the position after records the consumer delivered (else the committed offset
    /// or the start: none delivered yet).
    pub delivered: bool,
}

impl Ends {
    /// Records not yet read, over all the partitions.
    pub fn lag(&self) -> i64 {
        self.partitions
            .iter()
            .map(|p| (p.end - p.next).max(0))
            .sum()
    }
}

/// Keeps `gauge` at `consumer`'s lag over the partitions it owns until `stop`, or until the
/// consumer is dropped: the watcher holds it weakly, so that it never keeps a consumer (and its
/// group membership) alive after its service is gone. Each look is also sent on `looks`.
pub fn watch_lag(
    consumer: &Arc<StreamConsumer>,
    gauge: Gauge,
    looks: watch::Sender<Option<Ends>>,
    stop: CancellationToken,
) {
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
            match tokio::task::spawn_blocking(move || ends(&c)).await {
                Ok(Ok(ends)) => {
                    gauge.set(ends.lag());
                    looks.send_replace(Some(ends));
                }
                Ok(Err(e)) => tracing::debug!("measuring the consumer lag: {e}"),
                Err(_) => return,
            }
        }
    });
}

/// Each assigned partition's next offset to read and end offset. A partition not read yet
/// counts from its committed offset, or from its start when it has none.
fn ends(consumer: &StreamConsumer) -> KafkaResult<Ends> {
    let at_ms = chrono::Utc::now().timestamp_millis();
    let positions = consumer.position()?;
    let mut unread = TopicPartitionList::new();
    let mut partitions = Vec::new();
    for e in positions.elements() {
        let (low, high) = consumer.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
        match e.offset() {
            Offset::Offset(n) => partitions.push(PartitionEnd {
                topic: e.topic().to_owned(),
                partition: e.partition(),
                next: n,
                end: high,
                delivered: true,
            }),
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
            partitions.push(PartitionEnd {
                topic: e.topic().to_owned(),
                partition: e.partition(),
                next: from,
                end: high,
                delivered: false,
            });
        }
    }
    Ok(Ends { at_ms, partitions })
}
