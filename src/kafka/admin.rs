//! Topic administration: which topics exist, creating the missing ones with their settings,
//! and waiting until every partition has a leader. Metadata requests block, so they run on
//! tokio's blocking threads.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use super::{BrokerError, KafkaSettings, MAX_MESSAGE_BYTES};
use crate::defaults;

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

/// The cluster as its metadata describes it.
struct ClusterState {
    brokers: usize,
    topics: Vec<TopicState>,
}

impl KafkaSettings {
    /// The brokers and topics of the cluster, read without asking for any one topic (which
    /// could auto-create it).
    async fn cluster_state(&self) -> Result<ClusterState, BrokerError> {
        let probe: BaseConsumer = self.client(&[]).create()?;
        tokio::task::spawn_blocking(move || {
            let md = super::metadata::retrying(METADATA_TIMEOUT, |left| {
                probe.fetch_metadata(None, left)
            })?;
            let topics = md
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
                .collect();
            Ok(ClusterState {
                brokers: md.brokers().len(),
                topics,
            })
        })
        .await?
    }

    async fn topic_states(&self) -> Result<Vec<TopicState>, BrokerError> {
        Ok(self.cluster_state().await?.topics)
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

    /// Creates whichever of the five topics is missing: requests, predictions and labels with
    /// `partitions` partitions, the dead letters allowed 2 MiB records, models compacted and
    /// allowed to hold 64 MiB bundles (plus room for the record batch's own header) with a
    /// segment rolled every 10 minutes (so that compaction removes old bundles), and waits
    /// for their leaders. Each has [`Self::replication_factor`] replicas (by default as many
    /// as the cluster has brokers, at most 3) and `min.insync.replicas` 2 when that is 3 or
    /// more (1 otherwise): with `acks=all`, an acknowledged record then survives the loss of a
    /// broker, and writes go on without it.
    pub async fn ensure_topics(&self) -> Result<(), BrokerError> {
        let cluster = self.cluster_state().await?;
        let existing: Vec<String> = cluster.topics.into_iter().map(|t| t.name).collect();
        let t = &self.topics;
        let (replicas, min_insync) = replication(self.replication_factor, cluster.brokers);
        // The metadata lists the brokers that answer: on a cluster with one of three down, the
        // default would make topics of two replicas for good.
        if self.replication_factor.is_none()
            && replicas < defaults::MAX_REPLICATION_FACTOR
            && !existing_all(&existing, &self.topics)
        {
            tracing::warn!(
                "only {} broker(s) answered: topics created now get {replicas} replica(s); if \
                 the cluster has more (one may be down), pass --replication-factor",
                cluster.brokers
            );
        }
        let min_insync = min_insync.to_string();
        let big = (MAX_MESSAGE_BYTES + (1 << 20)).to_string();
        let dlq_max = DLQ_MAX_MESSAGE_BYTES.to_string();
        let models_segment_ms = MODELS_SEGMENT_MS.to_string();
        let topic = |name, partitions| {
            NewTopic::new(name, partitions, TopicReplication::Fixed(replicas))
                .set("min.insync.replicas", &min_insync)
        };
        let wanted = [
            topic(&t.requests, self.partitions),
            topic(&t.predictions, self.partitions),
            topic(&t.labels, self.partitions),
            topic(&t.dlq, 1).set("max.message.bytes", &dlq_max),
            topic(&t.models, 1)
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
                Ok(name) => tracing::info!(
                    "created topic {name} ({replicas} replicas, min.insync.replicas {min_insync})"
                ),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                    return Err(BrokerError::TooFewBrokers {
                        topic,
                        replicas,
                        brokers: cluster.brokers,
                    })
                }
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

/// Whether every one of `topics` is among `existing`.
fn existing_all(existing: &[String], topics: &super::Topics) -> bool {
    [
        &topics.requests,
        &topics.predictions,
        &topics.labels,
        &topics.dlq,
        &topics.models,
    ]
    .iter()
    .all(|t| existing.iter().any(|e| e == *t))
}

/// The replication factor and `min.insync.replicas` of a topic created on a cluster of
/// `brokers` when the user asked for `asked` replicas (`None`: as many as there are brokers, at
/// most [`defaults::MAX_REPLICATION_FACTOR`]).
fn replication(asked: Option<i32>, brokers: usize) -> (i32, i32) {
    let brokers = i32::try_from(brokers).unwrap_or(i32::MAX).max(1);
    let replicas = asked.unwrap_or_else(|| brokers.min(defaults::MAX_REPLICATION_FACTOR));
    let min_insync = match replicas >= defaults::MAX_REPLICATION_FACTOR {
        true => defaults::MIN_INSYNC_REPLICAS,
        false => 1,
    };
    (replicas, min_insync)
}

#[cfg(test)]
mod tests {
    use super::replication;

    #[test]
    fn topics_get_a_replica_per_broker_up_to_three_and_two_in_sync_from_three() {
        assert_eq!(replication(None, 1), (1, 1));
        assert_eq!(replication(None, 2), (2, 1));
        assert_eq!(replication(None, 3), (3, 2));
        assert_eq!(replication(None, 7), (3, 2));
        assert_eq!(replication(None, 0), (1, 1), "no broker listed yet");
        assert_eq!(replication(Some(5), 7), (5, 2));
        assert_eq!(replication(Some(1), 3), (1, 1));
        // More than there are brokers: asked for as given, and the cluster refuses it.
        assert_eq!(replication(Some(3), 1), (3, 2));
    }
}
