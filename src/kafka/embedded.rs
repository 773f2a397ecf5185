//! An embedded Kafka broker: librdkafka's mock cluster, a real Kafka-protocol server in this
//! process, reachable over TCP. For the demo and the fast tests; it has no CreateTopics API, so
//! the topics are created through the mock API.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::{BrokerError, KafkaSettings, Topics};

pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster with the four topics.
    pub fn start(topics: &Topics, partitions: i32) -> Result<Self, BrokerError> {
        let cluster = MockCluster::new(1)?;
        for (topic, n) in [
            (&topics.requests, partitions),
            (&topics.predictions, partitions),
            (&topics.labels, partitions),
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
        s.describes_configs = false;
        s.transactional_offsets = false;
        s
    }
}

/// The Kafka to use: with `embedded`, a new embedded broker holding `settings`' topics (its
/// address replaces `settings.brokers`; the broker is returned so that the caller keeps it
/// alive); otherwise the brokers of `settings`, their missing topics created.
pub async fn kafka_or_embedded(
    settings: KafkaSettings,
    embedded: bool,
) -> Result<(Option<EmbeddedBroker>, KafkaSettings), BrokerError> {
    if embedded {
        let broker = EmbeddedBroker::start(&settings.topics, settings.partitions)?;
        tracing::info!("embedded Kafka broker at {}", broker.bootstrap_servers());
        let mut s = broker.settings(&settings.topics, settings.partitions);
        s.extra = settings.extra;
        s.consumer_extra.extend(settings.consumer_extra);
        Ok((Some(broker), s))
    } else {
        settings.ensure_topics().await?;
        Ok((None, settings))
    }
}
