//! What both delivery guarantees' loops share: the [`Worker`] a service gives them, how batches
//! are read ([`Batching`], [`fill_batch`]), and the consumer's offset store and commit.

use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::TopicPartitionList;

use crate::kafka::{BrokerError, InMessage};

/// A delivery under way: it completes once the batch's outputs are durable elsewhere (sent and
/// acknowledged), with what [`Worker::after_commit`] needs of the batch.
pub type Delivery<D, E> = BoxFuture<'static, Result<D, E>>;

/// A service's work on each batch.
pub trait Worker: Send + 'static {
    /// What a step makes of a batch, to be delivered.
    type Output: Send + 'static;
    /// What a delivered batch leaves for [`Self::after_commit`].
    type Delivered: Send + 'static;
    type Error: From<BrokerError> + std::error::Error + Send + 'static;

    /// The batch's work: CPU or blocking I/O, so the loop runs it on a blocking thread.
    fn step(&mut self, batch: &[InMessage]) -> Result<Self::Output, Self::Error>;

    /// Starts making the step's outputs durable elsewhere. The returned future owns what it
    /// needs (it borrows nothing of the worker), so that the loop can wait for it while it reads
    /// and steps the next batches. A batch's offsets are stored only after its delivery, and
    /// that of every batch before it, succeeded.
    fn deliver(&mut self, output: Self::Output) -> Delivery<Self::Delivered, Self::Error>;

    /// The batch's delivered outputs were thrown away (an aborted transaction): its records
    /// come again. `failed`: the delivery's error, when the delivery is what failed.
    fn on_abort(&mut self, _failed: Option<Self::Error>) {}

    /// Work after a batch's offsets are stored and committed, batch after batch in the order
    /// they were read.
    fn after_commit(
        &mut self,
        _delivered: Self::Delivered,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Waits for work of the worker's own between batches (a task finishing), racing the next
    /// batch's first record, so it must be cancel-safe: it only waits and keeps what it got.
    /// Polled only when no batch is in flight. By default, nothing ever comes.
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
    /// At-least-once: most batches read and not yet committed, their deliveries under way
    /// together (1: each batch is committed before the next is read). Exactly-once keeps one.
    pub in_flight: NonZeroUsize,
}

/// A batch from its first message: whatever else arrives within the linger, up to the maximum.
/// Nothing interrupts it, so no consumed message is dropped.
pub async fn fill_batch(
    consumer: &StreamConsumer,
    batching: &Batching,
    first: InMessage,
) -> Vec<InMessage> {
    fill_from(batching, first, || async {
        consumer.recv().await.map(|m| InMessage::from_borrowed(&m))
    })
    .await
}

/// [`fill_batch`] over any source of messages: `next` waits for the next one.
async fn fill_from<F, Fut, E>(batching: &Batching, first: InMessage, mut next: F) -> Vec<InMessage>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<InMessage, E>>,
    E: std::fmt::Display,
{
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + batching.linger;
    while batch.len() < batching.max_batch.get() {
        match tokio::time::timeout_at(deadline, next()).await {
            Ok(Ok(m)) => batch.push(m),
            Ok(Err(e)) => tracing::warn!("{}: consumer error: {e}", batching.name),
            Err(_) => break,
        }
    }
    batch
}

/// A fatal error (e.g. a static member fenced after its session expired in a long broker
/// outage) leaves a consumer that never delivers again: the service ends with it, so that its
/// supervisor restarts it, instead of hanging.
pub fn check_fatal(consumer: &StreamConsumer) -> Result<(), BrokerError> {
    match consumer.client().fatal_error() {
        Some((code, reason)) => Err(BrokerError::FatalConsumer { code, reason }),
        None => Ok(()),
    }
}

/// Stores `offsets` (a batch's next offsets) for the partitions this consumer still owns. A
/// partition revoked while the batch was in hand is skipped: its new owner reads the batch
/// again from the last commit (at-least-once), and this service goes on.
pub fn store_offsets(
    consumer: &StreamConsumer,
    offsets: &TopicPartitionList,
    name: &str,
) -> Result<(), BrokerError> {
    let owned = consumer.assignment()?;
    let mut keep = TopicPartitionList::new();
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

/// A worker's step on `batch`, on a blocking thread (it is CPU work or blocking I/O): the worker
/// and the batch come back with the step's output, between the fault points around a step.
pub async fn step_blocking<W: Worker>(
    mut worker: W,
    batch: Vec<InMessage>,
) -> Result<(W, Vec<InMessage>, Result<W::Output, W::Error>), BrokerError> {
    crate::util::fault::point("after_fetch");
    let stepped = tokio::task::spawn_blocking(move || {
        let output = worker.step(&batch);
        (worker, batch, output)
    })
    .await?;
    crate::util::fault::point("after_step");
    Ok(stepped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn message(offset: i64) -> InMessage {
        InMessage {
            topic: "t".into(),
            partition: 0,
            offset,
            key: None,
            payload: None,
            timestamp_ms: None,
        }
    }

    fn batching(max_batch: usize, linger_ms: u64) -> Batching {
        Batching {
            name: "test".into(),
            max_batch: NonZeroUsize::new(max_batch).unwrap(),
            linger: Duration::from_millis(linger_ms),
            in_flight: NonZeroUsize::MIN,
        }
    }

    /// A source that yields message n+1, n+2, … one every `every_ms`, or fails on offsets
    /// divisible by `fail_every`.
    fn every(
        every_ms: u64,
        fail_every: i64,
    ) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = Result<InMessage, String>>>> {
        let mut n = 0;
        move || {
            n += 1;
            let offset = n;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
                if offset % fail_every == 0 {
                    Err(format!("no message {offset}"))
                } else {
                    Ok(message(offset))
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_takes_what_arrives_within_the_linger_and_no_more_time() {
        let start = Instant::now();
        let batch = fill_from(&batching(100, 25), message(0), every(10, i64::MAX)).await;
        let offsets: Vec<i64> = batch.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, [0, 1, 2], "messages at 10 and 20 ms, not at 30");
        assert_eq!(start.elapsed(), Duration::from_millis(25));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_does_not_wait_for_the_linger() {
        let start = Instant::now();
        let batch = fill_from(&batching(4, 1_000), message(0), every(10, i64::MAX)).await;
        assert_eq!(batch.len(), 4);
        assert_eq!(start.elapsed(), Duration::from_millis(30));
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_skipped_within_the_linger_and_no_linger_means_one_message() {
        let batch = fill_from(&batching(100, 45), message(0), every(10, 2)).await;
        let offsets: Vec<i64> = batch.iter().map(|m| m.offset).collect();
        assert_eq!(
            offsets,
            [0, 1, 3],
            "2 and 4 failed, 5 comes after the linger"
        );
        let batch = fill_from(&batching(100, 0), message(0), every(10, i64::MAX)).await;
        assert_eq!(batch.len(), 1);
    }
}
