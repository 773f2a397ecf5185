//! A transactional producer (Kafka transactions, KIP-98) that the components share: its
//! `transactional.id` makes one writer at a time, and it can be renewed after a failed
//! transaction. librdkafka's transaction calls block (they wait for the coordinator), so each
//! runs on a blocking thread, never on the async runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use rdkafka::TopicPartitionList;

use super::{BrokerError, KafkaProducer};

/// How long a producer's initialisation waits for the coordinator (it may first wait for an
/// earlier producer's transaction to end), and other calls outside a transaction.
pub const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long past its own timeout a transaction's call is waited for before it is abandoned.
/// librdkafka's `send_offsets_to_transaction` can wait forever, whatever its timeout, when the
/// group's coordinator broker is lost (librdkafka issues 5456 and 5511, unfixed in 2.12): its
/// transaction is then given up and the producer renewed (a fresh one finds the new
/// coordinator). The abandoned call's thread, and the old producer it holds, are left until it
/// returns.
const ABANDON_AFTER: Duration = Duration::from_secs(2);
/// Abandoned calls not returned yet beyond which no fresh producer is made: each holds a
/// producer's threads and connections, so the service ends for its supervisor to restart it.
const MAX_ABANDONED: usize = 3;

type MakeProducer = Box<dyn Fn() -> Result<KafkaProducer, BrokerError> + Send + Sync>;

/// A transactional producer and the means to start a fresh one with the same id.
pub struct Transactions {
    /// Replaced by [`Transactions::renew`].
    producer: Mutex<KafkaProducer>,
    make: MakeProducer,
    id: String,
    /// How long a transaction's own calls (begin, offsets, commit, abort) wait.
    step: Duration,
    /// Held by each call until it returns. The calls run one at a time, so outside a call every
    /// other holder is an abandoned call that has not returned yet.
    calls: Arc<()>,
}

impl Transactions {
    /// Creates the producer with `make` (whose configuration must carry `transactional.id` =
    /// `id`) and initialises its transactions, which aborts what an earlier producer with the
    /// same id left open and fences that producer. A transaction's calls wait at most `step`
    /// (no more than the producer's `transaction.timeout.ms`: its coordinator aborts a
    /// transaction open longer, so waiting longer cannot save it).
    pub async fn start(
        id: &str,
        step: Duration,
        make: impl Fn() -> Result<KafkaProducer, BrokerError> + Send + Sync + 'static,
    ) -> Result<Self, BrokerError> {
        let producer = init(make()?).await?;
        Ok(Transactions {
            producer: Mutex::new(producer),
            make: Box::new(make),
            id: id.to_owned(),
            step,
            calls: Arc::default(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The producer in use, to send records in the open transaction.
    pub fn producer(&self) -> KafkaProducer {
        self.producer.lock().expect("transactions lock").clone()
    }

    /// Starts a fresh producer with the same id in place of the one in use, fencing it and
    /// bumping the producer epoch. After a transaction failed on a record, the old producer's
    /// sequence numbers no longer match the broker's, and its next transaction would wait on the
    /// coordinator indefinitely; its initialisation also waits for the coordinator to finish
    /// the old producer's last transaction (committed or aborted).
    pub async fn renew(&self) -> Result<(), BrokerError> {
        let n = outstanding(&self.calls);
        if n >= MAX_ABANDONED {
            return Err(BrokerError::AbandonedCalls { n });
        }
        let fresh = init((self.make)()?).await?;
        let old = std::mem::replace(
            &mut *self.producer.lock().expect("transactions lock"),
            fresh,
        );
        // Dropping a producer flushes and joins its threads: not on the async runtime.
        tokio::task::spawn_blocking(move || drop(old));
        tracing::info!("transactional id {}: producer renewed", self.id);
        Ok(())
    }

    pub async fn begin(&self) -> Result<(), BrokerError> {
        let p = self.producer();
        self.call("begin_transaction", move || p.begin_transaction())
            .await
    }

    /// Adds a consumer group's offsets to the open transaction (`send_offsets_to_transaction`):
    /// they are committed with its records or not at all. `group` must be fetched for each
    /// transaction, so that a member of an older generation is fenced (KIP-447).
    pub async fn send_offsets(
        &self,
        offsets: TopicPartitionList,
        group: ConsumerGroupMetadata,
    ) -> Result<(), BrokerError> {
        let (p, step) = (self.producer(), self.step);
        self.call("send_offsets_to_transaction", move || {
            p.send_offsets_to_transaction(&offsets, &group, step)
        })
        .await
    }

    pub async fn commit(&self) -> Result<(), BrokerError> {
        let (p, step) = (self.producer(), self.step);
        self.call("commit_transaction", move || p.commit_transaction(step))
            .await
    }

    /// Aborts the open transaction, if any; best effort (a producer that cannot abort is
    /// renewed by the caller, which aborts it at the coordinator).
    pub async fn abort(&self) -> Result<(), BrokerError> {
        let (p, step) = (self.producer(), self.step);
        self.call("abort_transaction", move || p.abort_transaction(step))
            .await
    }

    /// Runs a transaction's call, given [`Self::step`], on a blocking thread; abandons it
    /// [`ABANDON_AFTER`] past that.
    async fn call(
        &self,
        name: &'static str,
        call: impl FnOnce() -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<(), BrokerError> {
        within(name, self.step + ABANDON_AFTER, &self.calls, call).await
    }

    /// Whether another producer with the same id took over: this one can write no more.
    pub fn fenced(&self, error: Option<&BrokerError>) -> bool {
        error.is_some_and(is_fencing_error)
            || self
                .producer()
                .client()
                .fatal_error()
                .is_some_and(|(code, _)| is_fencing(Some(code)))
    }
}

/// Whether `error` says another producer with the same transactional id took over.
pub fn is_fencing_error(error: &BrokerError) -> bool {
    match error {
        BrokerError::Client(e) => is_fencing(e.rdkafka_error_code()),
        _ => false,
    }
}

fn is_fencing(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    )
}

/// Initialises `producer`'s transactions. Never abandoned: a late initialisation would fence
/// the producer made after it (it honours its timeout).
async fn init(producer: KafkaProducer) -> Result<KafkaProducer, BrokerError> {
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.init_transactions(TXN_CALL_TIMEOUT)).await??;
    Ok(producer)
}

/// Runs `call` on a blocking thread, holding a clone of `calls` until it returns; an error if
/// it has not returned after `waited` (its thread is left to finish on its own).
async fn within(
    name: &'static str,
    waited: Duration,
    calls: &Arc<()>,
    call: impl FnOnce() -> Result<(), KafkaError> + Send + 'static,
) -> Result<(), BrokerError> {
    let held = calls.clone();
    let call = move || {
        let _held = held;
        call()
    };
    match tokio::time::timeout(waited, tokio::task::spawn_blocking(call)).await {
        Ok(done) => Ok(done??),
        Err(_) => {
            tracing::warn!(
                "{name} did not return within {waited:?}: abandoned ({} abandoned calls not \
                 returned yet)",
                outstanding(calls)
            );
            Err(BrokerError::TransactionCallStuck { call: name, waited })
        }
    }
}

/// Calls holding `calls` that have not returned: outside a call, the abandoned ones.
fn outstanding(calls: &Arc<()>) -> usize {
    Arc::strong_count(calls) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_does_not_return_in_time_is_abandoned_and_counted_until_it_returns() {
        let abandoned = Arc::new(());
        let started = std::time::Instant::now();
        let e = within(
            "send_offsets_to_transaction",
            Duration::from_millis(100),
            &abandoned,
            || {
                std::thread::sleep(Duration::from_millis(1500));
                Ok(())
            },
        )
        .await
        .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "waited for the call"
        );
        assert!(
            matches!(e, BrokerError::TransactionCallStuck { call, .. } if call == "send_offsets_to_transaction"),
            "{e}"
        );
        assert_eq!(outstanding(&abandoned), 1);
        // A call that returns in time gives its own result, and is not counted.
        let e = within(
            "commit_transaction",
            Duration::from_secs(5),
            &abandoned,
            || Err(KafkaError::Flush(RDKafkaErrorCode::Fenced)),
        )
        .await;
        assert!(matches!(e, Err(BrokerError::Client(_))), "{e:?}");
        assert!(within(
            "begin_transaction",
            Duration::from_secs(5),
            &abandoned,
            || Ok(())
        )
        .await
        .is_ok());
        // The abandoned call's return takes it off the count.
        tokio::time::sleep(Duration::from_millis(1800)).await;
        assert_eq!(outstanding(&abandoned), 0);
    }
}
