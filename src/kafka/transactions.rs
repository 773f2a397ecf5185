//! A transactional producer (Kafka transactions, KIP-98) that the components share: its
//! `transactional.id` makes one writer at a time, and it can be renewed after a failed
//! transaction. librdkafka's transaction calls block (they wait for the coordinator), so each
//! runs on a blocking thread, never on the async runtime.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use rdkafka::TopicPartitionList;

use super::{BrokerError, KafkaProducer};

/// How long a producer's initialisation waits for the coordinator (it may first wait for an
/// earlier producer's transaction to end), and other calls outside a transaction.
pub const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long past its own timeout a call is waited for before it is abandoned. librdkafka's
/// `send_offsets_to_transaction` can wait forever, whatever its timeout, when the group's
/// coordinator broker is lost (librdkafka issues 5456 and 5511, unfixed in librdkafka 2.12): its transaction
/// is then given up and the producer renewed (a fresh one finds the new coordinator). The
/// abandoned call's thread, and the old producer it holds, are left until it returns.
const ABANDON_AFTER: Duration = Duration::from_secs(2);

type MakeProducer = Box<dyn Fn() -> Result<KafkaProducer, BrokerError> + Send + Sync>;

/// A transactional producer and the means to start a fresh one with the same id.
pub struct Transactions {
    /// Replaced by [`Transactions::renew`].
    producer: Mutex<KafkaProducer>,
    make: MakeProducer,
    id: String,
    /// How long a transaction's own calls (begin, offsets, commit, abort) wait.
    step: Duration,
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
        blocking("begin_transaction", self.step, move || {
            p.begin_transaction()
        })
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
        blocking("send_offsets_to_transaction", self.step, move || {
            p.send_offsets_to_transaction(&offsets, &group, step)
        })
        .await
    }

    pub async fn commit(&self) -> Result<(), BrokerError> {
        let (p, step) = (self.producer(), self.step);
        blocking("commit_transaction", self.step, move || {
            p.commit_transaction(step)
        })
        .await
    }

    /// Aborts the open transaction, if any; best effort (a producer that cannot abort is
    /// renewed by the caller, which aborts it at the coordinator).
    pub async fn abort(&self) -> Result<(), BrokerError> {
        let (p, step) = (self.producer(), self.step);
        blocking("abort_transaction", self.step, move || {
            p.abort_transaction(step)
        })
        .await
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

async fn init(producer: KafkaProducer) -> Result<KafkaProducer, BrokerError> {
    let p = producer.clone();
    blocking("init_transactions", TXN_CALL_TIMEOUT, move || {
        p.init_transactions(TXN_CALL_TIMEOUT)
    })
    .await?;
    Ok(producer)
}

/// Runs `call`, given `timeout`, on a blocking thread; abandons it [`ABANDON_AFTER`] past that.
async fn blocking(
    name: &'static str,
    timeout: Duration,
    call: impl FnOnce() -> Result<(), KafkaError> + Send + 'static,
) -> Result<(), BrokerError> {
    within(name, timeout + ABANDON_AFTER, call).await
}

/// Runs `call` on a blocking thread; an error if it has not returned after `waited` (its
/// thread is left to finish on its own).
async fn within(
    name: &'static str,
    waited: Duration,
    call: impl FnOnce() -> Result<(), KafkaError> + Send + 'static,
) -> Result<(), BrokerError> {
    match tokio::time::timeout(waited, tokio::task::spawn_blocking(call)).await {
        Ok(done) => Ok(done??),
        Err(_) => {
            tracing::warn!("{name} did not return within {waited:?}: abandoned");
            Err(BrokerError::TransactionCallStuck { call: name, waited })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_does_not_return_in_time_is_abandoned_with_its_name() {
        let started = std::time::Instant::now();
        let e = within(
            "send_offsets_to_transaction",
            Duration::from_millis(100),
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
        // A call that returns in time gives its own result.
        let e = within("commit_transaction", Duration::from_secs(5), || {
            Err(KafkaError::Flush(RDKafkaErrorCode::Fenced))
        })
        .await;
        assert!(matches!(e, Err(BrokerError::Client(_))), "{e:?}");
        assert!(
            within("begin_transaction", Duration::from_secs(5), || Ok(()))
                .await
                .is_ok()
        );
    }
}
