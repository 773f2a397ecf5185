//! How to reach Kafka: bootstrap servers, topic names, and the client configurations of the
//! components. Each client starts from its own defaults; the user's `--kafka-config` settings
//! come last and win.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{ConsumerContext, DefaultConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

use super::context::{KafkaProducer, QuietRetries};
use super::BrokerError;
use crate::defaults;

/// Largest message the components produce or fetch (a bundle on `census.models`).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The client settings the delivery guarantees rest on, with the only values a user may give
/// them, and the settings a component sets itself. `--kafka-config` refuses anything else for
/// them: `acks=0` would let an acknowledged prediction be lost, `enable.auto.commit=true` would
/// commit offsets before their outputs are acknowledged.
const GUARDED: [(&str, &[&str]); 9] = [
    ("acks", &["all", "-1"]),
    ("request.required.acks", &["all", "-1"]),
    ("enable.idempotence", &["true"]),
    ("enable.auto.commit", &["false"]),
    ("enable.auto.offset.store", &["false"]),
    ("isolation.level", &["read_committed"]),
    ("bootstrap.servers", &[]),
    ("group.id", &[]),
    ("transactional.id", &[]),
];

/// Checks a user's extra client setting against [`GUARDED`].
pub fn check_extra_setting(key: &str, value: &str) -> Result<(), String> {
    let Some((_, allowed)) = GUARDED.iter().find(|(k, _)| *k == key) else {
        return Ok(());
    };
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(match key {
        "bootstrap.servers" => "set the brokers with --brokers".to_owned(),
        "group.id" => "set the consumer group with --group".to_owned(),
        "transactional.id" => "each component sets its own transactional id".to_owned(),
        _ => format!(
            "{key}={value} would break the delivery guarantees (at-least-once, nothing \
             committed before it is answered); allowed: {}",
            allowed.join(", ")
        ),
    })
}

/// Topic names (all overridable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub requests: String,
    pub predictions: String,
    pub dlq: String,
    /// Labels sent apart from their requests, keyed by `request_id`.
    pub labels: String,
    pub models: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            requests: defaults::REQUESTS_TOPIC.into(),
            predictions: defaults::PREDICTIONS_TOPIC.into(),
            dlq: defaults::DLQ_TOPIC.into(),
            labels: defaults::LABELS_TOPIC.into(),
            models: defaults::MODELS_TOPIC.into(),
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
    /// Replicas of each topic when it is created; `None`: as many as the cluster has brokers,
    /// at most [`defaults::MAX_REPLICATION_FACTOR`].
    pub replication_factor: Option<i32>,
    /// Extra librdkafka settings for every client (the user's `--kafka-config`).
    pub extra: BTreeMap<String, String>,
    /// Extra librdkafka settings for consumers only (e.g. a shorter `session.timeout.ms`).
    pub consumer_extra: BTreeMap<String, String>,
    /// Extra librdkafka settings for the producers of requests, predictions and dead letters
    /// only (e.g. the producer's `message.timeout.ms`, which consumers would warn about).
    pub producer_extra: BTreeMap<String, String>,
    /// Whether the cluster answers DescribeConfigs (the embedded broker does not: asking it
    /// only waits for a timeout).
    pub describes_configs: bool,
    /// Whether the cluster commits a consumer group's offsets with a transaction (the embedded
    /// broker accepts them and forgets them, and shows aborted records: no exactly-once there).
    pub transactional_offsets: bool,
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            topics: Topics::default(),
            partitions: defaults::PARTITIONS,
            replication_factor: None,
            extra: BTreeMap::new(),
            consumer_extra: BTreeMap::new(),
            producer_extra: BTreeMap::new(),
            describes_configs: true,
            transactional_offsets: true,
        }
    }

    /// A client configuration: the bootstrap servers, then `defaults`, then the user's extras.
    pub(super) fn client(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }

    /// An idempotent producer: every message acknowledged by all in-sync replicas, no duplicates
    /// from retries, sent at once (no linger: latency matters more than batching here).
    pub fn producer(&self) -> Result<KafkaProducer, BrokerError> {
        self.idempotent_producer(MAX_MESSAGE_BYTES, None, None)
    }

    /// An idempotent producer as [`Self::producer`] for topics with these `max.message.bytes`
    /// limits: its batches stay within the smallest, so small records batched together never
    /// exceed a topic's limit, and a record over the largest fails at once, locally.
    pub fn producer_within(&self, limits: &[usize]) -> Result<KafkaProducer, BrokerError> {
        self.producer_for(limits, None)
    }

    /// A producer as [`Self::producer_within`] that writes in transactions as
    /// `transactional_id` (see [`super::Transactions`]). A transaction left open by a killed
    /// process blocks `read_committed` readers of its partitions until the broker aborts it:
    /// [`defaults::TRANSACTION_TIMEOUT`] bounds that wait.
    pub fn transactional_producer_within(
        &self,
        limits: &[usize],
        transactional_id: &str,
    ) -> Result<KafkaProducer, BrokerError> {
        self.producer_for(limits, Some(transactional_id))
    }

    fn producer_for(
        &self,
        limits: &[usize],
        transactional_id: Option<&str>,
    ) -> Result<KafkaProducer, BrokerError> {
        match (limits.iter().min(), limits.iter().max()) {
            // Room for the record batch's own header in each produce request.
            (Some(&smallest), Some(&largest)) => self.idempotent_producer(
                largest.max(1000),
                Some(smallest.saturating_sub(128).clamp(1, 1_000_000)),
                transactional_id,
            ),
            _ => self.idempotent_producer(MAX_MESSAGE_BYTES, None, transactional_id),
        }
    }

    fn idempotent_producer(
        &self,
        max_message: usize,
        batch: Option<usize>,
        transactional_id: Option<&str>,
    ) -> Result<KafkaProducer, BrokerError> {
        let max = max_message.to_string();
        let batch = batch.map(|b| b.to_string());
        let txn_timeout = defaults::TRANSACTION_TIMEOUT.as_millis().to_string();
        let mut settings = vec![
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "0"),
            ("message.max.bytes", max.as_str()),
        ];
        if let Some(b) = &batch {
            settings.push(("batch.size", b.as_str()));
        }
        if let Some(id) = transactional_id {
            settings.push(("transactional.id", id));
            settings.push(("transaction.timeout.ms", txn_timeout.as_str()));
        }
        let mut c = self.client(&settings);
        for (k, v) in &self.producer_extra {
            c.set(k, v);
        }
        Ok(c.create_with_context(QuietRetries)?)
    }

    /// The producer of `census.models`: bundles are large text, compressed with lz4. With a
    /// `transactional_id` it writes in transactions (see `registry::Publisher`).
    pub fn model_producer(
        &self,
        transactional_id: Option<&str>,
    ) -> Result<KafkaProducer, BrokerError> {
        let max = MAX_MESSAGE_BYTES.to_string();
        let mut c = self.client(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.type", "lz4"),
            ("message.max.bytes", &max),
        ]);
        if let Some(id) = transactional_id {
            c.set("transactional.id", id);
        }
        Ok(c.create_with_context(QuietRetries)?)
    }

    /// A consumer with manual offset commits, starting from the earliest offset when its group
    /// has none.
    pub fn consumer(&self, group: &str) -> Result<StreamConsumer, BrokerError> {
        self.member(group, None)
    }

    /// A consumer of `group` as [`Self::consumer`]; with an `instance_id`, a static member
    /// (KIP-345): restarted with the same id within the session timeout, it takes its partitions
    /// back at once, without a rebalance.
    pub fn member(
        &self,
        group: &str,
        instance_id: Option<&str>,
    ) -> Result<StreamConsumer, BrokerError> {
        self.member_with(group, instance_id, DefaultConsumerContext)
    }

    /// [`Self::member`] with a client context of the caller's.
    pub fn member_with<C: ConsumerContext + 'static>(
        &self,
        group: &str,
        instance_id: Option<&str>,
        context: C,
    ) -> Result<StreamConsumer<C>, BrokerError> {
        let fetch_max = (MAX_MESSAGE_BYTES + (1 << 20)).to_string();
        let session = defaults::SESSION_TIMEOUT.as_millis().to_string();
        let heartbeat = defaults::HEARTBEAT_INTERVAL.as_millis().to_string();
        let mut c = self.client(&[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            // The broker answers a fetch as soon as data arrives, in principle; measured on
            // Kafka 4.1 it sometimes holds it the whole wait (500 ms by default), which set the
            // p99 latency. Asking again every 10 ms costs an idle consumer 100 small requests/s.
            ("fetch.wait.max.ms", "10"),
            ("fetch.max.bytes", &fetch_max),
            ("max.partition.fetch.bytes", &fetch_max),
            ("session.timeout.ms", &session),
            ("heartbeat.interval.ms", &heartbeat),
        ]);
        if let Some(id) = instance_id {
            c.set("group.instance.id", id);
        }
        for (k, v) in &self.consumer_extra {
            c.set(k, v);
        }
        Ok(c.create_with_context(context)?)
    }

    /// A consumer outside any group's partition assignment, for reading a whole topic (each
    /// instance its own reader): the caller assigns partitions itself.
    pub fn reader(&self) -> Result<StreamConsumer, BrokerError> {
        let group = format!("census-reader-{:016x}", rand::random::<u64>());
        self.consumer(&group)
    }

    /// A [`Self::reader`] that also reports reaching the end of each partition
    /// (`KafkaError::PartitionEOF` from `recv`), without logging it as an error.
    pub fn reader_with_eof(&self) -> Result<StreamConsumer<QuietEof>, BrokerError> {
        let group = format!("census-reader-{:016x}", rand::random::<u64>());
        let mut settings = self.clone();
        settings
            .consumer_extra
            .insert("enable.partition.eof".into(), "true".into());
        settings.member_with(&group, None, QuietEof)
    }
}

/// A consumer context that takes end-of-partition events quietly: with `enable.partition.eof`
/// they also reach the client's error callback, which rdkafka's default context logs as errors.
pub struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for QuietEof {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_settings_win_over_every_clients_defaults() {
        let mut s = KafkaSettings::new("b:1");
        s.extra.insert("linger.ms".into(), "5".into());
        s.extra.insert("compression.type".into(), "zstd".into());
        let c = s.client(&[("linger.ms", "0"), ("compression.type", "lz4")]);
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("compression.type"), Some("zstd"));
        assert_eq!(c.get("bootstrap.servers"), Some("b:1"));
    }

    #[test]
    fn settings_the_guarantees_rest_on_are_refused_unless_harmless() {
        assert!(check_extra_setting("acks", "0").is_err());
        assert!(check_extra_setting("acks", "1").is_err());
        assert!(check_extra_setting("acks", "all").is_ok());
        assert!(check_extra_setting("enable.idempotence", "false").is_err());
        assert!(check_extra_setting("enable.auto.commit", "true").is_err());
        assert!(check_extra_setting("isolation.level", "read_uncommitted").is_err());
        assert!(check_extra_setting("group.id", "x").is_err());
        assert!(check_extra_setting("security.protocol", "SASL_SSL").is_ok());
    }
}
