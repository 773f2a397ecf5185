//! The at-least-once loop, pipelined: while a batch's outputs wait for the broker's
//! acknowledgements, the next batches are read, stepped and sent, up to
//! [`Batching::in_flight`] batches between their read and their commit.
//!
//! Acknowledgements may come in any order; offsets are stored strictly in the order the batches
//! were read, each batch's once its delivery and that of every batch before it succeeded, so an
//! offset is never stored, nor committed, past a record whose outputs are not acknowledged. One
//! commit runs at a time, on a blocking thread, covering every offset stored when it starts;
//! [`Worker::after_commit`] runs for each batch it covers, in order, once it is answered. A crash
//! repeats at most the batches in flight (at-least-once): answered, not yet committed.
//!
//! A delivery that fails ends the loop with its error: nothing after it is stored, the batches
//! still in flight are left, and their records come again after a restart. So does a delivery
//! not acknowledged while the broker answers for 20 s (a stuck producer: see
//! [`Flights::broker_answers`]), and so does a consumer that stops reading or committing while
//! the broker answers ([`super::watchdog`]). On shutdown, no new
//! batch is read; those in flight are delivered, stored and committed first.
//!
//! Rebalances are not waited for: librdkafka revokes and assigns partitions while batches are
//! in flight. A revoked partition's offsets are not stored (its new owner reads its records
//! again from the last commit); a partition handed back is read again from its committed offset,
//! so the records of its batches in flight come twice, and the offsets stored for them may step
//! back before they advance again. Either way only records already answered are passed over.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::TopicPartitionList;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::batch::{
    check_fatal, fill_batch, step_blocking, store_offsets, Batching, Delivery, Worker,
};
use super::watchdog::{Tick, Watchdog, STUCK_AFTER};
use crate::kafka::{next_offsets, BrokerError, InMessage};
use crate::util::fault;

/// Runs `worker` on `consumer`'s batches until `shutdown` or an error.
pub async fn serve<W: Worker>(
    consumer: &Arc<StreamConsumer>,
    batching: &Batching,
    mut worker: W,
    shutdown: &CancellationToken,
) -> Result<W, W::Error> {
    let name = &batching.name;
    let mut flights: Flights<W::Delivered, W::Error> = Flights::default();
    let mut commits = Commits::new(consumer.clone(), name.clone());
    let mut watchdog = Watchdog::default();
    let mut last_read = Instant::now();
    loop {
        let unfinished = flights.len() + commits.batches();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            (next, delivered) = flights.oldest_done(), if !flights.is_empty() => {
                stored(consumer, &next, delivered?, &mut commits, name)?;
            }
            covered = commits.done(), if commits.running() => {
                for d in covered {
                    worker.after_commit(d).await?;
                }
            }
            () = worker.background(), if unfinished == 0 => worker.on_background().await?,
            m = consumer.recv(), if unfinished < batching.in_flight.get() => {
                let first = match m {
                    Ok(m) => {
                        last_read = Instant::now();
                        InMessage::from_borrowed(&m)
                    }
                    Err(e) => {
                        check_fatal(consumer)?;
                        tracing::warn!("{name}: consumer error: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let batch = fill_batch(consumer, batching, first).await;
                if fault::fires("stop_fetching") {
                    // What a consumer left stuck looks like: no record, no error.
                    consumer.pause(&consumer.assignment().map_err(BrokerError::from)?)
                        .map_err(BrokerError::from)?;
                }
                let (w, batch, output) = step_blocking(worker, batch).await?;
                worker = w;
                let next = next_offsets(&batch).map_err(BrokerError::from)?;
                flights.push(next, worker.deliver(output?));
            }
            // The consumer may fail for good without a record or an error to say so, or stop
            // reading or committing without failing anything; the producer may stop delivering
            // without failing anything.
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                check_fatal(consumer)?;
                let tick = Tick {
                    commit_running: commits.running_for(),
                    read_idle: last_read.elapsed(),
                    reading: unfinished < batching.in_flight.get(),
                };
                watchdog.tick(consumer, tick).await?;
                if flights.oldest_age() >= STUCK_AFTER {
                    let c = consumer.clone();
                    let answers = tokio::task::spawn_blocking(move || {
                        c.fetch_metadata(None, Duration::from_secs(1)).is_ok()
                    })
                    .await
                    .unwrap_or(false);
                    flights.broker_answers(answers)?;
                }
            }
        }
    }
    // Shutdown: the batches in flight are finished.
    while !flights.is_empty() || commits.running() {
        tokio::select! {
            (next, delivered) = flights.oldest_done(), if !flights.is_empty() => {
                stored(consumer, &next, delivered?, &mut commits, name)?;
            }
            covered = commits.done(), if commits.running() => {
                for d in covered {
                    worker.after_commit(d).await?;
                }
            }
        }
    }
    Ok(worker)
}

/// The oldest batch is delivered (and so every batch before it): its offsets are stored, and
/// committed by the next commit.
fn stored<D>(
    consumer: &StreamConsumer,
    next: &TopicPartitionList,
    delivered: D,
    commits: &mut Commits<D>,
    name: &str,
) -> Result<(), BrokerError> {
    fault::point("after_acks");
    store_offsets(consumer, next, name)?;
    fault::point("after_store");
    commits.add(delivered);
    Ok(())
}

/// A batch whose delivery is under way.
struct Flight<D, E> {
    /// Per partition, the offset after the batch's last record.
    next: TopicPartitionList,
    since: Instant,
    delivery: JoinHandle<Result<D, E>>,
}

/// The batches whose deliveries are under way, oldest first. Each delivery runs as a task of
/// its own, so that all make progress while the loop waits for the oldest.
pub(super) struct Flights<D, E> {
    queue: VecDeque<Flight<D, E>>,
    /// Since when the broker has answered while the oldest batch waited (none: it has not,
    /// or a batch was acknowledged since).
    answering_since: Option<Instant>,
}

impl<D, E> Default for Flights<D, E> {
    fn default() -> Self {
        Flights {
            queue: VecDeque::new(),
            answering_since: None,
        }
    }
}

impl<D: Send + 'static, E: From<BrokerError> + Send + 'static> Flights<D, E> {
    /// Starts the delivery of a batch read after all those in flight.
    pub(super) fn push(&mut self, next: TopicPartitionList, delivery: Delivery<D, E>) {
        self.queue.push_back(Flight {
            next,
            since: Instant::now(),
            delivery: tokio::spawn(delivery),
        });
    }

    /// How long the oldest batch has waited for its acknowledgements.
    pub(super) fn oldest_age(&self) -> Duration {
        self.queue
            .front()
            .map_or(Duration::ZERO, |f| f.since.elapsed())
    }

    /// Whether the broker answers (a metadata request) while the oldest batch waits: an error
    /// once it has answered for [`STUCK_AFTER`] with that batch still unacknowledged. While the
    /// broker is away (paused, restarting) nothing is decided. librdkafka's producer can stay
    /// stuck after a broker was fenced (KRaft, a broker paused past its session timeout),
    /// delivering nothing and failing nothing; only a new one sends again, so the service ends
    /// for its supervisor to restart it.
    pub(super) fn broker_answers(&mut self, answers: bool) -> Result<(), BrokerError> {
        if !answers {
            self.answering_since = None;
            return Ok(());
        }
        let since = *self.answering_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= STUCK_AFTER {
            return Err(BrokerError::StuckProducer {
                waited: self.oldest_age(),
            });
        }
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Waits for the oldest batch's delivery, however long later ones finished before it, and
    /// takes the batch out: its next offsets and what its delivery gave. Never completes when
    /// nothing is in flight. Cancel-safe: a batch is taken out only once its delivery is done,
    /// with no wait in between.
    pub(super) async fn oldest_done(&mut self) -> (TopicPartitionList, Result<D, E>) {
        let Some(oldest) = self.queue.front_mut() else {
            return std::future::pending().await;
        };
        let result = match (&mut oldest.delivery).await {
            Ok(result) => result,
            Err(e) => Err(BrokerError::from(e).into()),
        };
        let oldest = self.queue.pop_front().expect("the flight just awaited");
        self.answering_since = None;
        (oldest.next, result)
    }
}

/// The commits of stored offsets: one at a time, each covering the batches stored before it
/// started.
struct Commits<D> {
    consumer: Arc<StreamConsumer>,
    name: String,
    /// Batches whose offsets are stored since the running commit started.
    stored: Vec<D>,
    /// The commit under way and the batches it covers.
    running: Option<(JoinHandle<KafkaResult<()>>, Vec<D>)>,
    /// When the commit under way started.
    started: Instant,
}

impl<D> Commits<D> {
    fn new(consumer: Arc<StreamConsumer>, name: String) -> Self {
        Commits {
            consumer,
            name,
            stored: Vec::new(),
            running: None,
            started: Instant::now(),
        }
    }

    /// Batches stored and not yet committed.
    fn batches(&self) -> usize {
        self.stored.len() + self.running.as_ref().map_or(0, |(_, b)| b.len())
    }

    fn running(&self) -> bool {
        self.running.is_some()
    }

    /// How long the commit under way has run, if one is.
    fn running_for(&self) -> Option<Duration> {
        self.running.as_ref().map(|_| self.started.elapsed())
    }

    /// A batch whose offsets are stored: committed now, or after the commit under way.
    fn add(&mut self, delivered: D) {
        self.stored.push(delivered);
        if self.running.is_none() {
            self.start();
        }
    }

    /// A synchronous commit, waiting for the broker's answer, on a blocking thread. Commits
    /// sent without waiting queue behind each other under load: measured with SIGKILLs at
    /// 2,000 records/s, a killed predictor left about 2,400 answered but uncommitted requests
    /// (duplicates after its restart), against none with each commit awaited.
    fn start(&mut self) {
        let c = self.consumer.clone();
        let commit = tokio::task::spawn_blocking(move || {
            fault::point("in_commit");
            c.commit_consumer_state(CommitMode::Sync)
        });
        self.running = Some((commit, std::mem::take(&mut self.stored)));
        self.started = Instant::now();
    }

    /// Waits for the commit under way (never completes without one); returns the batches it
    /// covered, and starts the next commit if batches were stored meanwhile. Cancel-safe.
    async fn done(&mut self) -> Vec<D> {
        let Some((commit, _)) = self.running.as_mut() else {
            return std::future::pending().await;
        };
        let result = commit.await;
        let (_, covered) = self.running.take().expect("the commit just awaited");
        match result {
            // Nothing stored since the last commit (partitions revoked) is the common case.
            Ok(Err(e)) => tracing::debug!("{}: commit: {e}", self.name),
            Err(e) => tracing::warn!("{}: commit: {e}", self.name),
            Ok(Ok(())) => {}
        }
        if !self.stored.is_empty() {
            self.start();
        }
        covered
    }
}
