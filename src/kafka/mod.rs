//! Kafka plumbing shared by every component: client settings, topic administration, partition
//! assignment, the owned copy of a consumed message, and the embedded broker. Nothing here knows
//! what the messages mean.

mod admin;
mod assign;
mod context;
pub mod embedded;
mod lag;
mod message;
mod metadata;
mod probe;
mod settings;
mod subscription;
mod transactions;

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub use admin::{DLQ_MAX_MESSAGE_BYTES, KAFKA_DEFAULT_MAX_MESSAGE_BYTES, MODELS_SEGMENT_MS};
pub use assign::group_lag;
pub use context::{KafkaProducer, QuietRetries};
pub use embedded::{kafka_or_embedded, EmbeddedBroker};
pub use lag::{Ends, PartitionEnd};
pub use message::{next_offsets, InMessage};
pub use probe::membership_probe;
pub use settings::{check_extra_setting, KafkaSettings, QuietEof, Topics, MAX_MESSAGE_BYTES};
pub use subscription::Subscription;
pub use transactions::{is_fencing_error, Transactions, TXN_CALL_TIMEOUT};

/// A record the broker refused for what it is (too large, invalid): sending it again would fail
/// again. Where it was read (topic, partition, offset), and the broker's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRecord {
    pub source: (String, i32, i64),
    pub reason: String,
}

/// What can go wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("Kafka client error")]
    Client(#[from] KafkaError),
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error(
        "cannot create topic {topic} with {replicas} replicas: the cluster has {brokers} \
         broker(s) (--replication-factor)"
    )]
    TooFewBrokers {
        topic: String,
        replicas: i32,
        brokers: usize,
    },
    #[error("topics {topics:?} have no leader after {waited:?}")]
    NoLeader {
        topics: Vec<String>,
        waited: Duration,
    },
    #[error("topic {0} has no partitions (does it exist?)")]
    NoPartitions(String),
    #[error("delivery to {topic} failed")]
    Delivery {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the producer was dropped before {topic} acknowledged a record")]
    Canceled { topic: String },
    #[error("reading {topic} to its end made no progress for {waited:?}")]
    Stalled { topic: String, waited: Duration },
    #[error("a Kafka metadata request's thread failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("the broker refused {} records of a transaction for themselves", .0.len())]
    RefusedInTransaction(Vec<RefusedRecord>),
    #[error(
        "another producer with transactional id {0} took over (an instance with the same id \
         started): this one stops"
    )]
    Fenced(String),
    #[error(
        "the consumer hit a fatal error ({code}: {reason}); it can consume no more: restart \
         the service"
    )]
    FatalConsumer {
        code: RDKafkaErrorCode,
        reason: String,
    },
    #[error(
        "fatal error: the outputs of a batch were not acknowledged for {waited:?}, the last 20 s \
         with the broker answering: the producer is stuck (librdkafka can stay so after a \
         broker was fenced); restart the service (the batch's records are read again: nothing \
         is lost)"
    )]
    StuckProducer { waited: Duration },
    #[error(
        "fatal error: the consumer is stuck: {what}, the last 20 s with the broker answering \
         (librdkafka can stay so after a long broker outage); restart the service (its records \
         are read again from the last commit: nothing is lost)"
    )]
    StuckConsumer { what: String },
    #[error("{call} did not return within {waited:?}: abandoned")]
    TransactionCallStuck {
        call: &'static str,
        waited: Duration,
    },
    #[error(
        "fatal error: {n} abandoned transaction calls have not returned (librdkafka can stay \
         so after a broker was lost), each holding a producer; restart the service (its \
         records are read again from the last commit: nothing is lost)"
    )]
    AbandonedCalls { n: usize },
}
