//! The one consume loop of the services: next batch → step (off the async runtime) → deliver
//! its outputs → commit the batch's offsets; on shutdown the batch in hand is finished. Two
//! guarantees ([`Guarantee`]):
//!
//! - at-least-once: offsets are stored and committed only after a batch's outputs are
//!   acknowledged; a crash in between sends the batch again;
//! - exactly-once: a batch's outputs and its offsets go in one Kafka transaction
//!   ([`Transactions`]), so a `read_committed` reader sees each batch's outputs once or not at
//!   all; a failed transaction is aborted and the consumer rewound to the committed offsets.
//!
//! Each service's per-batch work is a [`Worker`], whose `step` a test can call on in-memory
//! messages without a broker.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::fault;
use crate::kafka::{next_offsets, BrokerError, InMessage, Transactions, TXN_CALL_TIMEOUT};

/// A service's work on each batch.
pub trait Worker: Send + 'static {
    /// What a step makes of a batch, to be delivered.
    type Output: Send + 'static;
    type Error: From<BrokerError> + std::error::Error + Send + 'static;

    /// The batch's work: CPU or blocking I/O, so the loop runs it on a blocking thread.
    fn step(&mut self, batch: &[InMessage]) -> Result<Self::Output, Self::Error>;

    /// Makes the step's outputs durable elsewhere (sent and acknowledged). The batch's offsets
    /// are stored only after this succeeds.
    fn deliver(
        &mut self,
        output: Self::Output,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The batch's delivered outputs were thrown away (an aborted transaction): its records
    /// come again.
    fn on_abort(&mut self) {}

    /// Work after the batch's offsets are stored and committed.
    fn after_commit(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Waits for work of the worker's own between batches (a task finishing), racing the next
    /// batch's first record, so it must be cancel-safe: it only waits and keeps what it got.
    /// By default, nothing ever comes.
    fn background(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Handles what [`Self::background`] got; runs to completion, never raced.
    fn on_background(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
}

/// How the loop reads batches.
#[derive(Debug, Clone)]
pub struct Batching {
    /// Name in logs.
    pub name: String,
    /// Most records in one batch.
    pub max_batch: NonZeroUsize,
    /// How long a batch waits for more records after its first.
    pub linger: Duration,
}

/// How a batch's outputs and offsets are made durable.
pub enum Guarantee {
    /// Outputs acknowledged, then offsets committed: a crash in between repeats the batch.
    AtLeastOnce,
    /// Outputs and offsets in one transaction of this producer, which the worker's
    /// [`Worker::deliver`] must send with.
    ExactlyOnce(Arc<Transactions>),
}

/// Runs `worker` on `consumer`'s batches until `shutdown`, or until a step or a delivery fails,
/// then commits what was stored. Returns the worker, whose state says what it did.
pub async fn run<W: Worker>(
    consumer: &Arc<StreamConsumer>,
    batching: &Batching,
    guarantee: &Guarantee,
    worker: W,
    shutdown: &CancellationToken,
) -> Result<W, W::Error> {
    let result = serve(consumer, batching, guarantee, worker, shutdown).await;
    // A synchronous commit waits for the broker: on a blocking thread.
    let c = consumer.clone();
    let name = batching.name.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = c.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is the common case.
            tracing::debug!("{name}: final commit: {e}");
        }
    })
    .await;
    result
}

async fn serve<W: Worker>(
    consumer: &Arc<StreamConsumer>,
    batching: &Batching,
    guarantee: &Guarantee,
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
        if let Guarantee::ExactlyOnce(_) = guarantee {
            committed.keep_new(consumer, &mut batch)?;
            if batch.is_empty() {
                continue;
            }
        }
        fault::point("after_fetch");
        let (w, batch, output) = tokio::task::spawn_blocking(move || {
            let output = worker.step(&batch);
            (worker, batch, output)
        })
        .await
        .map_err(BrokerError::from)?;
        worker = w;
        fault::point("after_step");
        match guarantee {
            Guarantee::AtLeastOnce => {
                worker.deliver(output?).await?;
                fault::point("after_acks");
                store_offsets(consumer, &batch, &batching.name)?;
                fault::point("after_store");
                commit(consumer, &batching.name).await;
            }
            Guarantee::ExactlyOnce(txn) => {
                let output = output?;
                if let Err(reason) = transact(consumer, txn, &mut worker, output, &batch).await {
                    if txn.fenced(None) {
                        // Either an instance with the same id started (its consumer fences
                        // this one's static membership within a heartbeat or two: the service
                        // ends), or the broker aborted a transaction that outlived its timeout
                        // (a broker away): a new producer carries on.
                        wait_for_fatal(consumer, Duration::from_secs(3)).await;
                        check_fatal(consumer)?;
                    }
                    aborts += 1;
                    tracing::warn!(
                        "{}: transaction of {} records aborted ({reason}); reading them again",
                        batching.name,
                        batch.len()
                    );
                    worker.on_abort();
                    recover(
                        consumer,
                        txn,
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
                aborts = 0;
                committed.advance(&batch);
            }
        }
        worker.after_commit().await?;
    }
    Ok(worker)
}

/// A batch's outputs and offsets in one transaction. On failure, the reason; the caller aborts.
async fn transact<W: Worker>(
    consumer: &StreamConsumer,
    txn: &Transactions,
    worker: &mut W,
    output: W::Output,
    batch: &[InMessage],
) -> Result<(), String> {
    let why = |e: BrokerError| crate::error_chain(&e);
    txn.begin().await.map_err(why)?;
    if let Err(e) = worker.deliver(output).await {
        return Err(format!("delivery failed: {}", crate::error_chain(&e)));
    }
    fault::point("after_acks");
    let offsets = next_offsets(batch).map_err(|e| why(e.into()))?;
    // Fetched for each transaction: a member of an older generation is fenced (KIP-447).
    let group = consumer
        .group_metadata()
        .ok_or("the consumer has no group metadata")?;
    txn.send_offsets(offsets, group).await.map_err(why)?;
    fault::point("after_store");
    txn.commit().await.map_err(why)
}

/// After a failed transaction: abort it, renew the producer (retrying while the broker is away,
/// until shutdown), and rewind the batch's partitions to their committed offsets.
async fn recover(
    consumer: &Arc<StreamConsumer>,
    txn: &Transactions,
    batch: &[InMessage],
    committed: &mut Committed,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<(), BrokerError> {
    if let Err(e) = txn.abort().await {
        tracing::debug!("{name}: abort: {}", crate::error_chain(&e));
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
    matches!(e, BrokerError::Client(rdkafka::error::KafkaError::Transaction(t)) if t.is_fatal())
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

/// A fatal error (e.g. a static member fenced after its session expired in a long broker
/// outage) leaves a consumer that never delivers again: the service ends with it, so that its
/// supervisor restarts it, instead of hanging.
fn check_fatal(consumer: &StreamConsumer) -> Result<(), BrokerError> {
    match consumer.client().fatal_error() {
        Some((code, reason)) => Err(BrokerError::FatalConsumer { code, reason }),
        None => Ok(()),
    }
}

/// Waits until the consumer has a fatal error, for at most `limit`.
async fn wait_for_fatal(consumer: &StreamConsumer, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while consumer.client().fatal_error().is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Commits the stored offsets and waits for the broker's answer, on a blocking thread. An
/// asynchronous commit per batch lets commits queue behind each other under load: measured with
/// SIGKILLs at 2,000 records/s, a killed predictor left about 2,400 answered but uncommitted
/// requests (duplicates after its restart), against none with the commit awaited.
async fn commit(consumer: &Arc<StreamConsumer>, name: &str) {
    let c = consumer.clone();
    let result =
        tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync)).await;
    match result {
        Ok(Err(e)) => tracing::debug!("{name}: commit: {e}"),
        Err(e) => tracing::warn!("{name}: commit: {e}"),
        Ok(Ok(())) => {}
    }
}

/// Stores the offsets after `batch` for the partitions this consumer still owns. A partition
/// revoked while the batch was in hand is skipped: its new owner reads the batch again from
/// the last commit (at-least-once), and this service goes on.
fn store_offsets(
    consumer: &StreamConsumer,
    batch: &[InMessage],
    name: &str,
) -> Result<(), BrokerError> {
    let offsets = next_offsets(batch)?;
    let owned = consumer.assignment()?;
    let mut keep = rdkafka::TopicPartitionList::new();
    for e in offsets.elements() {
        if owned.find_partition(e.topic(), e.partition()).is_some() {
            keep.add_partition_offset(e.topic(), e.partition(), e.offset())?;
        } else {
            tracing::info!(
                "{name}: {}/{} was revoked while its batch was in hand; its new owner takes it over",
                e.topic(),
                e.partition()
            );
        }
    }
    if keep.count() == 0 {
        return Ok(());
    }
    if let Err(e) = consumer.store_offsets(&keep) {
        // Revoked between the look and the store: the same as above.
        tracing::warn!("{name}: storing offsets: {e}; the partitions' new owners take over");
    }
    Ok(())
}

/// A batch from its first message: whatever else arrives within the linger, up to the maximum.
/// Nothing interrupts it, so no consumed message is dropped.
async fn fill_batch(
    consumer: &StreamConsumer,
    batching: &Batching,
    first: InMessage,
) -> Vec<InMessage> {
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + batching.linger;
    while batch.len() < batching.max_batch.get() {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(InMessage::from_borrowed(&m)),
            Ok(Err(e)) => tracing::warn!("{}: consumer error: {e}", batching.name),
            Err(_) => break,
        }
    }
    batch
}
