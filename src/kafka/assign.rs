//! Reading a whole topic outside any consumer group: every partition assigned from its
//! beginning or from its current end. Offset look-ups block, so they run on tokio's blocking
//! threads; the assignment itself is local.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{BrokerError, KafkaSettings};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a partition may be without a leader (just created, or an election) at start.
const LEADER_PATIENCE: Duration = Duration::from_secs(15);

impl KafkaSettings {
    /// Assigns `consumer` every partition of `topic`, from its beginning or (`from_end`) from
    /// its end as of now, so that nothing produced after this call is missed. Returns the
    /// partition count.
    pub async fn assign_all<C: ConsumerContext + 'static>(
        &self,
        consumer: &StreamConsumer<C>,
        topic: &str,
        from_end: bool,
    ) -> Result<usize, BrokerError> {
        let probe: BaseConsumer = self.client(&[]).create()?;
        let name = topic.to_owned();
        let starts =
            tokio::task::spawn_blocking(move || start_offsets(&probe, &name, from_end)).await??;
        let mut tpl = TopicPartitionList::new();
        for &(p, offset) in &starts {
            tpl.add_partition_offset(topic, p, offset)?;
        }
        consumer.assign(&tpl)?;
        Ok(starts.len())
    }
}

impl KafkaSettings {
    /// Assigns `consumer` every partition of each of `topics` from its first record written at
    /// or after `since_ms` (milliseconds since the Unix epoch; a partition with none from its
    /// end), and every partition of each of `whole` from its beginning.
    pub async fn assign_since(
        &self,
        consumer: &StreamConsumer,
        topics: &[String],
        since_ms: i64,
        whole: &[String],
    ) -> Result<(), BrokerError> {
        let probe: BaseConsumer = self.client(&[]).create()?;
        let (names, wholes) = (topics.to_vec(), whole.to_vec());
        let tpl =
            tokio::task::spawn_blocking(move || -> Result<TopicPartitionList, BrokerError> {
                let mut asked = TopicPartitionList::new();
                for t in &names {
                    for (p, _) in start_offsets(&probe, t, false)? {
                        asked.add_partition_offset(t, p, Offset::Offset(since_ms))?;
                    }
                }
                let mut tpl = if asked.count() > 0 {
                    probe.offsets_for_times(asked, REQUEST_TIMEOUT)?
                } else {
                    asked
                };
                for t in &wholes {
                    for (p, offset) in start_offsets(&probe, t, false)? {
                        tpl.add_partition_offset(t, p, offset)?;
                    }
                }
                Ok(tpl)
            })
            .await??;
        consumer.assign(&tpl)?;
        Ok(())
    }

    /// Assigns `consumer` every partition of each of `topics`, from its beginning.
    pub async fn assign_from_beginning(
        &self,
        consumer: &StreamConsumer,
        topics: &[String],
    ) -> Result<(), BrokerError> {
        let probe: BaseConsumer = self.client(&[]).create()?;
        let names = topics.to_vec();
        let starts = tokio::task::spawn_blocking(move || {
            names
                .iter()
                .map(|t| Ok((t.clone(), start_offsets(&probe, t, false)?)))
                .collect::<Result<Vec<_>, BrokerError>>()
        })
        .await??;
        let mut tpl = TopicPartitionList::new();
        for (topic, partitions) in &starts {
            for &(p, offset) in partitions {
                tpl.add_partition_offset(topic, p, offset)?;
            }
        }
        consumer.assign(&tpl)?;
        Ok(())
    }

    /// A client that reads `group`'s committed offsets without joining the group, for
    /// [`group_lag`].
    pub fn group_reader(&self, group: &str) -> Result<BaseConsumer, BrokerError> {
        Ok(self
            .client(&[("group.id", group), ("enable.auto.commit", "false")])
            .create()?)
    }
}

/// The records of `topic` that `group` has not committed yet, summed over its partitions
/// (blocking). A partition the group never committed counts from its start.
pub fn group_lag(reader: &BaseConsumer, topic: &str) -> Result<i64, BrokerError> {
    let md = super::metadata::retrying(REQUEST_TIMEOUT, |left| {
        reader.fetch_metadata(Some(topic), left)
    })?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let committed = reader.committed_offsets(tpl, REQUEST_TIMEOUT)?;
    let mut lag = 0;
    for e in committed.elements() {
        let (low, high) = reader.fetch_watermarks(topic, e.partition(), REQUEST_TIMEOUT)?;
        let from = match e.offset() {
            Offset::Offset(n) => n,
            _ => low,
        };
        lag += (high - from).max(0);
    }
    Ok(lag)
}

impl KafkaSettings {
    /// Each partition of `topic` with its end offset (high watermark) as of now.
    pub async fn end_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, BrokerError> {
        let probe: BaseConsumer = self.client(&[]).create()?;
        let name = topic.to_owned();
        let ends =
            tokio::task::spawn_blocking(move || start_offsets(&probe, &name, true)).await??;
        Ok(ends
            .into_iter()
            .map(|(p, o)| match o {
                Offset::Offset(o) => (p, o),
                _ => (p, 0),
            })
            .collect())
    }
}

/// Each partition of `topic` with the offset to start from (blocking).
fn start_offsets(
    probe: &BaseConsumer,
    topic: &str,
    from_end: bool,
) -> Result<Vec<(i32, Offset)>, BrokerError> {
    let md = super::metadata::retrying(REQUEST_TIMEOUT, |left| {
        probe.fetch_metadata(Some(topic), left)
    })?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(BrokerError::NoPartitions(topic.to_owned()));
    }
    partitions
        .into_iter()
        .map(|p| {
            let offset = if from_end {
                Offset::Offset(high_watermark(probe, topic, p)?)
            } else {
                Offset::Beginning
            };
            Ok((p, offset))
        })
        .collect()
}

/// The high watermark of a partition, retried for a while when the partition has no leader
/// yet (blocking: sleeps between tries).
fn high_watermark(probe: &BaseConsumer, topic: &str, partition: i32) -> Result<i64, BrokerError> {
    let mut wait = Duration::from_millis(50);
    let deadline = Instant::now() + LEADER_PATIENCE;
    loop {
        match probe.fetch_watermarks(topic, partition, REQUEST_TIMEOUT) {
            Ok((_, high)) => return Ok(high),
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::NotLeaderForPartition
                            | RDKafkaErrorCode::LeaderNotAvailable
                            | RDKafkaErrorCode::UnknownTopicOrPartition
                    )
                ) && Instant::now() < deadline =>
            {
                tracing::debug!("{topic}/{partition}: {e}; retrying");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl KafkaSettings {
    /// How many members `group` has now (0: none, or the group is unknown).
    pub async fn group_members(&self, group: &str) -> Result<usize, BrokerError> {
        let probe: BaseConsumer = self.client(&[]).create()?;
        let group = group.to_owned();
        tokio::task::spawn_blocking(move || {
            let list = probe.fetch_group_list(Some(&group), REQUEST_TIMEOUT)?;
            Ok(list
                .groups()
                .iter()
                .filter(|g| g.name() == group)
                .map(|g| g.members().len())
                .sum())
        })
        .await?
    }
}
