//! An embedded Kafka broker: librdkafka's mock cluster, a real Kafka-protocol server in this
//! process, reachable over TCP. For the demo and the fast tests; it has no CreateTopics API, so
//! the topics are created through the mock API.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::kafka::{KafkaSettings, Topics};
use super::StreamError;

pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster with the four topics.
    pub fn start(topics: &Topics, partitions: i32) -> Result<Self, StreamError> {
        let cluster = MockCluster::new(1)?;
        for (topic, n) in [
            (&topics.requests, partitions),
            (&topics.predictions, partitions),
            (&topics.dlq, 1),
            (&topics.models, 1),
        ] {
            cluster.create_topic(topic, n, 1)?;
        }
        Ok(EmbeddedBroker { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Client settings for this broker. Session timeouts are short so that a stopped consumer's
    /// partitions move quickly to the others.
    pub fn settings(&self, topics: &Topics, partitions: i32) -> KafkaSettings {
        let mut s = KafkaSettings::new(self.bootstrap_servers());
        s.topics = topics.clone();
        s.partitions = partitions;
        s.consumer_extra
            .insert("session.timeout.ms".into(), "6000".into());
        s.consumer_extra
            .insert("heartbeat.interval.ms".into(), "500".into());
        s
    }
}

/// The Kafka to use: the brokers given (their missing topics created), or else a new embedded
/// broker, returned too so that the caller keeps it alive.
pub async fn kafka_or_embedded(
    brokers: Option<&str>,
    partitions: i32,
) -> Result<(Option<EmbeddedBroker>, KafkaSettings), StreamError> {
    let topics = Topics::default();
    match brokers {
        None => {
            let broker = EmbeddedBroker::start(&topics, partitions)?;
            tracing::info!("embedded Kafka broker at {}", broker.bootstrap_servers());
            let settings = broker.settings(&topics, partitions);
            Ok((Some(broker), settings))
        }
        Some(b) => {
            let mut s = KafkaSettings::new(b);
            s.partitions = partitions;
            s.ensure_topics().await?;
            Ok((None, s))
        }
    }
}
