//! Kafka plumbing shared by the components: topic names, client settings, topic creation, and
//! the owned copy of a consumed message.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

use super::StreamError;

/// Largest message the components produce or fetch (a bundle on `census.models`).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Topic names (all overridable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub requests: String,
    pub predictions: String,
    pub dlq: String,
    pub models: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            requests: "census.requests".into(),
            predictions: "census.predictions".into(),
            dlq: "census.dlq".into(),
            models: "census.models".into(),
        }
    }
}

/// How to reach Kafka, and the topics.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topics: Topics,
    /// Partitions of `census.requests` and `census.predictions` when they are created.
    pub partitions: i32,
    /// Extra librdkafka settings for every client.
    pub extra: BTreeMap<String, String>,
    /// Extra librdkafka settings for consumers only (e.g. a shorter `session.timeout.ms`).
    pub consumer_extra: BTreeMap<String, String>,
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            topics: Topics::default(),
            partitions: 6,
            extra: BTreeMap::new(),
            consumer_extra: BTreeMap::new(),
        }
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// An idempotent producer: every message acknowledged by all in-sync replicas, no duplicates
    /// from retries.
    pub fn producer(&self) -> Result<FutureProducer, StreamError> {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string());
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        Ok(c.create()?)
    }

    /// The producer of `census.models`: bundles are large text, compressed with lz4.
    pub fn model_producer(&self) -> Result<FutureProducer, StreamError> {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string());
        Ok(c.create()?)
    }

    /// A consumer with manual offset commits, starting from the earliest offset when its group
    /// has none.
    pub fn consumer(&self, group: &str) -> Result<StreamConsumer, StreamError> {
        let mut c = self.base();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // The broker answers a fetch as soon as data arrives, in principle; measured on
            // Kafka 4.1 it sometimes holds it the whole wait (500 ms by default), which set the
            // p99 latency. Asking again every 10 ms costs an idle consumer 100 small requests/s.
            .set("fetch.wait.max.ms", "10")
            .set(
                "fetch.max.bytes",
                (MAX_MESSAGE_BYTES + (1 << 20)).to_string(),
            )
            .set(
                "max.partition.fetch.bytes",
                (MAX_MESSAGE_BYTES + (1 << 20)).to_string(),
            );
        for (k, v) in self.extra.iter().chain(&self.consumer_extra) {
            c.set(k, v);
        }
        Ok(c.create()?)
    }

    /// A consumer outside any group's partition assignment, for reading a whole topic (each
    /// instance its own reader): the caller assigns partitions itself.
    pub fn reader(&self) -> Result<StreamConsumer, StreamError> {
        let group = format!("census-reader-{:016x}", rand::random::<u64>());
        self.consumer(&group)
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>, StreamError> {
        Ok(self.base().create()?)
    }

    /// Creates whichever of the four topics is missing: requests and predictions with
    /// `partitions` partitions, models compacted and allowed to hold 64 MiB bundles (plus room
    /// for the record batch's own header).
    pub async fn ensure_topics(&self) -> Result<(), StreamError> {
        let existing = self.existing_topics()?;
        let t = &self.topics;
        let big = (MAX_MESSAGE_BYTES + (1 << 20)).to_string();
        let wanted = [
            NewTopic::new(&t.requests, self.partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&t.predictions, self.partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&t.dlq, 1, TopicReplication::Fixed(1)),
            NewTopic::new(&t.models, 1, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact")
                .set("max.message.bytes", &big),
        ];
        let missing: Vec<NewTopic> = wanted
            .into_iter()
            .filter(|n| !existing.iter().any(|e| e == n.name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let results = self
            .admin()?
            .create_topics(missing.iter(), &AdminOptions::new())
            .await?;
        for r in results {
            match r {
                Ok(name) => tracing::info!("created topic {name}"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(StreamError::Setup(format!(
                        "cannot create topic {name}: {code}"
                    )))
                }
            }
        }
        let names: Vec<&str> = missing.iter().map(|n| n.name).collect();
        self.wait_for_leaders(&names, Duration::from_secs(30)).await
    }

    /// Waits until every partition of `topics` has a leader: a topic just created answers
    /// "not leader" to offset requests for a moment.
    async fn wait_for_leaders(
        &self,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<(), StreamError> {
        let probe: BaseConsumer = self.base().create()?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let md = probe.fetch_metadata(None, Duration::from_secs(10))?;
            let ready = topics.iter().all(|name| {
                md.topics().iter().any(|t| {
                    t.name() == *name
                        && t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions()
                            .iter()
                            .all(|p| p.leader() >= 0 && p.error().is_none())
                })
            });
            if ready {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(StreamError::Setup(format!(
                    "topics {topics:?} have no leader after {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Names of the topics on the cluster (without asking for any one topic, which could
    /// auto-create it).
    pub fn existing_topics(&self) -> Result<Vec<String>, StreamError> {
        let probe: BaseConsumer = self.base().create()?;
        let md = probe.fetch_metadata(None, Duration::from_secs(10))?;
        Ok(md.topics().iter().map(|t| t.name().to_owned()).collect())
    }

    /// Assigns `consumer` every partition of `topic`, from `offset` (Beginning or End), and
    /// returns the partition count. End offsets are resolved now, so that nothing produced
    /// after this call is missed.
    pub fn assign_all(
        &self,
        consumer: &StreamConsumer,
        topic: &str,
        from_end: bool,
    ) -> Result<usize, StreamError> {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(StreamError::Setup(format!(
                "topic {topic} has no partitions"
            )));
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            let offset = if from_end {
                Offset::Offset(high_watermark(consumer, topic, p)?)
            } else {
                Offset::Beginning
            };
            tpl.add_partition_offset(topic, p, offset)?;
        }
        consumer.assign(&tpl)?;
        Ok(partitions.len())
    }
}

/// The high watermark of a partition, retried for a few seconds while the partition has no
/// leader yet (a topic created a moment ago, or a leader election).
fn high_watermark(
    consumer: &StreamConsumer,
    topic: &str,
    partition: i32,
) -> Result<i64, StreamError> {
    let mut wait = Duration::from_millis(50);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok((_, high)) => return Ok(high),
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::NotLeaderForPartition
                            | RDKafkaErrorCode::LeaderNotAvailable
                            | RDKafkaErrorCode::UnknownTopicOrPartition
                    )
                ) && std::time::Instant::now() < deadline =>
            {
                tracing::debug!("{topic}/{partition}: {e}; retrying");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// An owned copy of a consumed message, so that a batch outlives the consumer's borrow.
#[derive(Debug, Clone)]
pub struct InMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

impl InMessage {
    pub fn from_borrowed(m: &BorrowedMessage<'_>) -> Self {
        InMessage {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
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
