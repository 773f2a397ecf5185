//! The streaming side: messages, Kafka plumbing, and the components built on them.

pub mod batch;
pub mod decode;
pub mod embedded;
pub mod kafka;
pub mod messages;
pub mod models;
pub mod rowlog;

use rdkafka::error::KafkaError;

pub use kafka::{KafkaSettings, Topics, MAX_MESSAGE_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("{0}")]
    Setup(String),
    #[error("delivery to {topic} failed: {reason}")]
    Delivery { topic: String, reason: String },
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("scoring failed: {0}")]
    Model(#[from] crate::model::ModelError),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("worker thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}
