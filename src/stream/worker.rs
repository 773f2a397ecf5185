//! The one consume loop of the services: next batch → step (off the async runtime) → deliver
//! its outputs → commit the batch's offsets; on shutdown the batches in hand are finished. Two
//! guarantees ([`Guarantee`]):
//!
//! - at-least-once ([`super::pipeline`]): offsets are stored and committed only after a batch's
//!   outputs, and those of every batch read before it, are acknowledged; a crash in between
//!   sends those batches again. Up to [`Batching::in_flight`] batches are in flight at once: the
//!   next batches are read, stepped and sent while the broker acknowledges the last ones;
//! - exactly-once ([`super::transactional`]): a batch's outputs and its offsets go in one Kafka
//!   transaction ([`Transactions`]), so a `read_committed` reader sees each batch's outputs once
//!   or not at all; a failed transaction is aborted and the consumer rewound to the committed
//!   offsets. The transaction of a batch commits before the next batch is read: one batch in
//!   flight, whatever [`Batching::in_flight`] says.
//!
//! Each service's per-batch work is a [`Worker`], whose `step` a test can call on in-memory
//! messages without a broker.

use std::sync::Arc;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use tokio_util::sync::CancellationToken;

pub use super::batch::{Batching, Delivery, Worker};
use super::{pipeline, transactional};
use crate::kafka::Transactions;

/// How long the final commit may take before the loop returns without it.
const FINAL_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How a batch's outputs and offsets are made durable.
pub enum Guarantee {
    /// Outputs acknowledged, then offsets committed: a crash in between repeats the batches in
    /// flight.
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
    let result = match guarantee {
        Guarantee::AtLeastOnce => pipeline::serve(consumer, batching, worker, shutdown).await,
        Guarantee::ExactlyOnce(txn) => {
            transactional::serve(consumer, batching, txn, worker, shutdown).await
        }
    };
    // A synchronous commit waits for the broker: on a blocking thread, and not for ever (a
    // consumer left stuck may never answer it).
    let c = consumer.clone();
    let name = batching.name.clone();
    let commit = tokio::task::spawn_blocking(move || {
        if let Err(e) = c.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is the common case.
            tracing::debug!("{name}: final commit: {e}");
        }
    });
    if tokio::time::timeout(FINAL_COMMIT_WAIT, commit)
        .await
        .is_err()
    {
        tracing::warn!(
            "{}: the final commit did not return within {FINAL_COMMIT_WAIT:?}; its records \
             are read again from the last commit",
            batching.name
        );
    }
    result
}
