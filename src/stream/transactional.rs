//! The exactly-once loop: each batch's outputs and offsets in one Kafka transaction
//! ([`Transactions`]), so that a `read_committed` reader sees each batch's outputs once or not
//! at all; a failed transaction is aborted and the consumer rewound to the committed offsets.
//!
//! One batch at a time: a transactional producer has one transaction open at once, and a batch's
//! outputs are sent inside its transaction, so batch k+1's outputs cannot be sent before batch
//! k's transaction has committed. The worker's deliveries are awaited in place.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::batch::{check_fatal, fill_batch, step_blocking, Batching, Worker};
use crate::kafka::{next_offsets, BrokerError, InMessage, Transactions, TXN_CALL_TIMEOUT};
use crate::util::fault;

/// Runs `worker` on `consumer`'s batches, one transaction of `txn` a batch, until `shutdown` or
/// an error; the batch in hand is finished first.
pub async fn serve<W: Worker>(
    consumer: &Arc<StreamConsumer>,
    batching: &Batching,
    txn: &Transactions,
    mut worker: W,
    shutdown: &CancellationToken,
) -> Result<W, W::Error> {
    let mut committed = Committed::default();
    // Transactions aborted in a row: each waits longer before the batch is read again.
    let mut aborts: u32 = 0;
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            () = worker.background() => {
                worker.on_background().await?;
                continue;
            }
            m = consumer.recv() => match m {
                Ok(m) => InMessage::from_borrowed(&m),
                Err(e) => {
                    check_fatal(consumer)?;
                    tracing::warn!("{}: consumer error: {e}", batching.name);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            // The consumer may fail for good without a record or an error to say so.
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                check_fatal(consumer)?;
                continue;
            }
        };
        let mut batch = fill_batch(consumer, batching, first).await;
        committed.keep_new(consumer, &mut batch)?;
        if batch.is_empty() {
            continue;
        }
        let (w, batch, output) = step_blocking(worker, batch).await?;
        worker = w;
        let output = output?;
        let delivered = match transact(consumer, txn, &mut worker, output, &batch).await {
            Ok(delivered) => delivered,
            Err(Aborted {
                reason,
                failed,
                stuck,
            }) => {
                if txn.fenced(None) {
                    // Either an instance with the same id started (its consumer fences this
                    // one's static membership within a heartbeat or two: the service ends), or
                    // the broker aborted a transaction that outlived its timeout (a broker
                    // away): a new producer carries on.
                    wait_for_fatal(consumer, Duration::from_secs(3)).await;
                    check_fatal(consumer)?;
                }
                aborts += 1;
                tracing::warn!(
                    "{}: transaction of {} records aborted ({reason}); reading them again",
                    batching.name,
                    batch.len()
                );
                worker.on_abort(failed);
                recover(
                    consumer,
                    txn,
                    stuck,
                    &batch,
                    &mut committed,
                    &batching.name,
                    shutdown,
                )
                .await?;
                let pause = Duration::from_millis(50 << aborts.min(7));
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    () = tokio::time::sleep(pause) => {}
                }
                continue;
            }
        };
        aborts = 0;
        committed.advance(&batch);
        worker.after_commit(delivered).await?;
    }
    Ok(worker)
}

/// Why a transaction was aborted, the delivery's error when the delivery failed, and whether a
/// call of the producer's was abandoned (the producer is renewed without asking it to abort).
struct Aborted<E> {
    reason: String,
    failed: Option<E>,
    stuck: bool,
}

impl<E> From<String> for Aborted<E> {
    fn from(reason: String) -> Self {
        Aborted {
            reason,
            failed: None,
            stuck: false,
        }
    }
}

impl<E> From<BrokerError> for Aborted<E> {
    fn from(e: BrokerError) -> Self {
        Aborted {
            stuck: matches!(e, BrokerError::TransactionCallStuck { .. }),
            ..crate::error_chain(&e).into()
        }
    }
}

impl<E> From<&str> for Aborted<E> {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
}

/// A batch's outputs and offsets in one transaction, and what its delivery left. On failure,
/// why; the caller aborts.
async fn transact<W: Worker>(
    consumer: &StreamConsumer,
    txn: &Transactions,
    worker: &mut W,
    output: W::Output,
    batch: &[InMessage],
) -> Result<W::Delivered, Aborted<W::Error>> {
    txn.begin().await?;
    let delivered = match worker.deliver(output).await {
        Ok(d) => d,
        Err(e) => {
            return Err(Aborted {
                reason: format!("delivery failed: {}", crate::error_chain(&e)),
                failed: Some(e),
                stuck: false,
            })
        }
    };
    fault::point("after_acks");
    let offsets = next_offsets(batch).map_err(BrokerError::from)?;
    // Fetched for each transaction: a member of an older generation is fenced (KIP-447).
    let group = consumer
        .group_metadata()
        .ok_or("the consumer has no group metadata")?;
    txn.send_offsets(offsets, group).await?;
    fault::point("after_store");
    txn.commit().await?;
    Ok(delivered)
}

/// After a failed transaction: abort it (unless a call of its producer is `stuck`), renew the
/// producer (retrying while the broker is away, until shutdown), and rewind the batch's
/// partitions to their committed offsets.
async fn recover(
    consumer: &Arc<StreamConsumer>,
    txn: &Transactions,
    stuck: bool,
    batch: &[InMessage],
    committed: &mut Committed,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<(), BrokerError> {
    if !stuck {
        if let Err(e) = txn.abort().await {
            tracing::debug!("{name}: abort: {}", crate::error_chain(&e));
        }
    }
    // The fresh producer's initialisation also finishes the old one's transaction at the
    // coordinator, whether its abort reached it or not. The old producer may be fenced by now
    // (by an attempt that timed out here but reached the coordinator): only the new one's own
    // error counts.
    while let Err(e) = txn.renew().await {
        if is_fatal(&e) {
            return Err(e);
        }
        check_fatal(consumer)?;
        tracing::warn!(
            "{name}: renewing the transactional producer: {}",
            crate::error_chain(&e)
        );
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    let c = consumer.clone();
    let first = first_offsets(batch);
    let name = name.to_owned();
    let rewound = tokio::task::spawn_blocking(move || rewind(&c, &first, &name)).await??;
    committed.reset(&rewound);
    Ok(())
}

/// Seeks each partition of `first` (a batch's first offsets) that the consumer still owns to its
/// committed offset (to `first`'s when the group has none). Returns where each went.
fn rewind(
    consumer: &StreamConsumer,
    first: &TopicPartitionList,
    name: &str,
) -> Result<TopicPartitionList, BrokerError> {
    let committed = consumer.committed_offsets(first.clone(), TXN_CALL_TIMEOUT)?;
    let owned = consumer.assignment()?;
    let mut rewound = TopicPartitionList::new();
    for e in first.elements() {
        let (topic, partition) = (e.topic(), e.partition());
        if owned.find_partition(topic, partition).is_none() {
            continue;
        }
        let to = match committed
            .find_partition(topic, partition)
            .map(|c| c.offset())
        {
            Some(Offset::Offset(n)) => Offset::Offset(n),
            _ => e.offset(),
        };
        // A partition left where it is would have the failed batch's records skipped by the
        // next commit: after a few tries, the service ends instead (nothing was committed past
        // them) and its restart reads them from the committed offset.
        let mut tries = 0;
        while let Err(err) = consumer.seek(topic, partition, to, TXN_CALL_TIMEOUT) {
            tries += 1;
            tracing::warn!("{name}: rewinding {topic}/{partition} to {to:?}: {err}");
            if tries == 3 {
                return Err(err.into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        rewound.add_partition_offset(topic, partition, to)?;
    }
    Ok(rewound)
}

/// Whether a client error can never go away by trying again (e.g. not authorised).
fn is_fatal(e: &BrokerError) -> bool {
    match e {
        BrokerError::Client(rdkafka::error::KafkaError::Transaction(t)) => t.is_fatal(),
        BrokerError::AbandonedCalls { .. } => true,
        _ => false,
    }
}

/// Per partition, the first offset of `batch`.
fn first_offsets(batch: &[InMessage]) -> TopicPartitionList {
    let mut lowest: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = lowest.entry((&m.topic, m.partition)).or_insert(m.offset);
        *e = (*e).min(m.offset);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in lowest {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("a valid offset");
    }
    tpl
}

/// In exactly-once mode, the next offset of each partition after the batches this consumer
/// committed. A rebalance that hands a partition back resets the consumer's position to the
/// group's committed offset, which may lag a batch still in hand; its records then come a
/// second time, within the same batch or the next. They are dropped here: a transaction holds
/// each record once.
#[derive(Debug, Default)]
struct Committed {
    next: HashMap<(String, i32), i64>,
}

impl Committed {
    /// Drops the records of partitions no longer owned (their new owner reads them) and those
    /// already committed or already in the batch.
    fn keep_new(
        &mut self,
        consumer: &StreamConsumer,
        batch: &mut Vec<InMessage>,
    ) -> Result<(), BrokerError> {
        let owned = consumer.assignment()?;
        self.next
            .retain(|(t, p), _| owned.find_partition(t, *p).is_some());
        let mut seen = std::collections::HashSet::new();
        let before = batch.len();
        batch.retain(|m| {
            owned.find_partition(&m.topic, m.partition).is_some()
                && self
                    .next
                    .get(&(m.topic.clone(), m.partition))
                    .is_none_or(|&n| m.offset >= n)
                && seen.insert((m.partition, m.offset, m.topic.clone()))
        });
        if batch.len() < before {
            tracing::debug!(
                "dropped {} records read twice or revoked",
                before - batch.len()
            );
        }
        Ok(())
    }

    fn advance(&mut self, batch: &[InMessage]) {
        if let Ok(next) = next_offsets(batch) {
            for e in next.elements() {
                if let Offset::Offset(n) = e.offset() {
                    self.next.insert((e.topic().to_owned(), e.partition()), n);
                }
            }
        }
    }

    fn reset(&mut self, rewound: &TopicPartitionList) {
        for e in rewound.elements() {
            let key = (e.topic().to_owned(), e.partition());
            match e.offset() {
                Offset::Offset(n) => self.next.insert(key, n),
                _ => self.next.remove(&key),
            };
        }
    }
}

/// Waits until the consumer has a fatal error, for at most `limit`.
async fn wait_for_fatal(consumer: &StreamConsumer, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while consumer.client().fatal_error().is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
