//! Topic administration: which topics exist, creating the missing ones with their settings,
//! and waiting until every partition has a leader. Metadata requests block, so they run on
//! tokio's blocking threads.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use super::{BrokerError, KafkaSettings, MAX_MESSAGE_BYTES};

/// Kafka's default `max.message.bytes`, assumed for a topic whose setting cannot be read.
pub const KAFKA_DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// `max.message.bytes` of the dead-letter topic when it is created: a request up to Kafka's
/// default limit fits whole, with its headers.
pub const DLQ_MAX_MESSAGE_BYTES: usize = 2 << 20;
/// `segment.ms` of the models topic: its segment rolls this often (when written), so that the
/// log cleaner can compact away replaced and retired bundles; with Kafka's default (7 days,
/// or 1 GiB) superseded bundles would stay on disk for a week.
pub const MODELS_SEGMENT_MS: u64 = 10 * 60 * 1000;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// A topic as the cluster's metadata describes it.
struct TopicState {
    name: String,
    /// Every partition has a leader and no error.
    ready: bool,
}

impl KafkaSettings {
    /// The topics of the cluster, read without asking for any one topic (which could
    /// auto-create it).
    async fn topic_states(&self) -> Result<Vec<TopicState>, BrokerError> {
        let probe: BaseConsumer = self.client(&[]).create()?;
        tokio::task::spawn_blocking(move || {
            let md = probe.fetch_metadata(None, METADATA_TIMEOUT)?;
            Ok(md
                .topics()
                .iter()
                .map(|t| TopicState {
                    name: t.name().to_owned(),
                    ready: t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions()
                            .iter()
                            .all(|p| p.leader() >= 0 && p.error().is_none()),
                })
                .collect())
        })
        .await?
    }

    /// Names of the topics on the cluster.
    pub async fn existing_topics(&self) -> Result<Vec<String>, BrokerError> {
        Ok(self
            .topic_states()
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect())
    }

    /// Each topic's `max.message.bytes`, in order. A topic whose configuration cannot be read
    /// counts as Kafka's default, with a warning (without one on the embedded broker, which has
    /// no DescribeConfigs).
    pub async fn max_message_bytes(&self, topics: &[&str]) -> Vec<usize> {
        if !self.describes_configs {
            return vec![KAFKA_DEFAULT_MAX_MESSAGE_BYTES; topics.len()];
        }
        let read = async {
            let admin: AdminClient<DefaultClientContext> = self.client(&[]).create()?;
            let specs: Vec<_> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
            let opts = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
            let results = admin.describe_configs(specs.iter(), &opts).await?;
            Ok::<_, BrokerError>(
                results
                    .into_iter()
                    .map(|r| {
                        let value = r.ok()?.get("max.message.bytes")?.value.clone()?;
                        value.parse::<usize>().ok()
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let found = read.await.unwrap_or_else(|e| {
            tracing::warn!("reading the topics' max.message.bytes: {e}");
            Vec::new()
        });
        topics
            .iter()
            .enumerate()
            .map(|(i, topic)| {
                found.get(i).copied().flatten().unwrap_or_else(|| {
                    tracing::warn!(
                        "{topic}: max.message.bytes unknown; assuming Kafka's default \
                         {KAFKA_DEFAULT_MAX_MESSAGE_BYTES}"
                    );
                    KAFKA_DEFAULT_MAX_MESSAGE_BYTES
                })
            })
            .collect()
    }

    /// Creates whichever of the four topics is missing: requests and predictions with
    /// `partitions` partitions, the dead letters allowed 2 MiB records, models compacted and
    /// allowed to hold 64 MiB bundles (plus room for the record batch's own header) with a
    /// segment rolled every 10 minutes (so that compaction removes old bundles), and waits
    /// for their leaders.
    pub async fn ensure_topics(&self) -> Result<(), BrokerError> {
        let existing = self.existing_topics().await?;
        let t = &self.topics;
        let big = (MAX_MESSAGE_BYTES + (1 << 20)).to_string();
        let dlq_max = DLQ_MAX_MESSAGE_BYTES.to_string();
        let models_segment_ms = MODELS_SEGMENT_MS.to_string();
        let wanted = [
            NewTopic::new(&t.requests, self.partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&t.predictions, self.partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&t.labels, self.partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&t.dlq, 1, TopicReplication::Fixed(1)).set("max.message.bytes", &dlq_max),
            NewTopic::new(&t.models, 1, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact")
                .set("segment.ms", &models_segment_ms)
                .set("max.message.bytes", &big),
        ];
        let missing: Vec<NewTopic> = wanted
            .into_iter()
            .filter(|n| !existing.iter().any(|e| e == n.name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self.client(&[]).create()?;
        let results = admin
            .create_topics(missing.iter(), &AdminOptions::new())
            .await?;
        for r in results {
            match r {
                Ok(name) => tracing::info!("created topic {name}"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(BrokerError::CreateTopic { topic, code }),
            }
        }
        let names: Vec<String> = missing.iter().map(|n| n.name.to_owned()).collect();
        self.wait_for_leaders(&names, LEADER_WAIT).await
    }

    /// Waits until every partition of `topics` has a leader: a topic just created answers
    /// "not leader" to offset requests for a moment.
    async fn wait_for_leaders(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<(), BrokerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let states = self.topic_states().await?;
            let ready = topics
                .iter()
                .all(|name| states.iter().any(|t| &t.name == name && t.ready));
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BrokerError::NoLeader {
                    topics: topics.to_vec(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
