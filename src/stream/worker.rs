//! The one consume loop of the services: next batch → step (off the async runtime) → deliver
//! its outputs and await their acknowledgements → store the batch's offsets → commit; on
//! shutdown the batch in hand is finished and a last synchronous commit made. Offsets are
//! stored only after a batch's outputs are acknowledged: at-least-once.
//!
//! Each service's per-batch work is a [`Worker`], whose `step` a test can call on in-memory
//! messages without a broker.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use tokio_util::sync::CancellationToken;

use crate::fault;
use crate::kafka::{next_offsets, BrokerError, InMessage};

/// A service's work on each batch.
pub trait Worker: Send + 'static {
    /// What a step makes of a batch, to be delivered.
    type Output: Send + 'static;
    type Error: From<BrokerError> + Send + 'static;

    /// The batch's work: CPU or blocking I/O, so the loop runs it on a blocking thread.
    fn step(&mut self, batch: &[InMessage]) -> Result<Self::Output, Self::Error>;

    /// Makes the step's outputs durable elsewhere (sent and acknowledged). The batch's offsets
    /// are stored only after this succeeds.
    fn deliver(
        &mut self,
        output: Self::Output,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

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

/// Runs `worker` on `consumer`'s batches until `shutdown`, or until a step or a delivery fails,
/// then commits what was stored. Returns the worker, whose state says what it did.
pub async fn run<W: Worker>(
    consumer: &Arc<StreamConsumer>,
    batching: &Batching,
    worker: W,
    shutdown: &CancellationToken,
) -> Result<W, W::Error> {
    let result = serve(consumer, batching, worker, shutdown).await;
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
    mut worker: W,
    shutdown: &CancellationToken,
) -> Result<W, W::Error> {
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
        let batch = fill_batch(consumer, batching, first).await;
        fault::point("after_fetch");
        let (w, batch, output) = tokio::task::spawn_blocking(move || {
            let output = worker.step(&batch);
            (worker, batch, output)
        })
        .await
        .map_err(BrokerError::from)?;
        worker = w;
        fault::point("after_step");
        worker.deliver(output?).await?;
        fault::point("after_acks");
        store_offsets(consumer, &batch, &batching.name)?;
        fault::point("after_store");
        commit(consumer, &batching.name).await;
        worker.after_commit().await?;
    }
    Ok(worker)
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
