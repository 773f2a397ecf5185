//! The owned copy of a consumed message, and the offsets to commit once a batch is done.

use std::collections::BTreeMap;

use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

/// An owned copy of a consumed message, so that a batch outlives the consumer's borrow.
#[derive(Debug, Clone, PartialEq)]
pub struct InMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// The record's timestamp (its producer's create time, or the broker's append time when
    /// the topic says so), in ms since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl InMessage {
    pub fn from_borrowed(m: &BorrowedMessage<'_>) -> Self {
        InMessage {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
        }
    }
}

/// The offsets to commit after `batch` is done: per partition, one past the highest offset.
pub fn next_offsets(batch: &[InMessage]) -> Result<TopicPartitionList, KafkaError> {
    let mut highest: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = highest.entry((&m.topic, m.partition)).or_insert(m.offset);
        *e = (*e).max(m.offset);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in highest {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1))?;
    }
    Ok(tpl)
}
