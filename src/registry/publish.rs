//! Writing to the registry: bundle and alias records go out together in one Kafka transaction,
//! so a reader (`read_committed`, librdkafka's default) sees a new champion and its bundle at
//! once or not at all. The producer's `transactional.id` makes one publisher at a time: a new
//! publisher with the same id fences the older one, whose next publish fails with
//! [`RegistryError::Fenced`].

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::records::{bundle_key, bundle_payload, AliasRecord};
use super::RegistryError;
use crate::bundle::BundleFiles;
use crate::kafka::{BrokerError, KafkaSettings};

const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// The one writer of `census.models`.
pub struct Publisher {
    /// Replaced after a failed transaction (see [`Publisher::renew`]).
    producer: std::sync::Mutex<FutureProducer>,
    settings: KafkaSettings,
    transactional_id: String,
}

impl Publisher {
    /// A transactional producer with `transactional_id`; its start fences any older publisher
    /// with the same id.
    pub async fn start(
        settings: &KafkaSettings,
        transactional_id: &str,
    ) -> Result<Self, RegistryError> {
        let producer = transactional_producer(settings, transactional_id).await?;
        tracing::info!(
            "publishing to {} as transactional id {transactional_id}",
            settings.topics.models
        );
        Ok(Publisher {
            producer: std::sync::Mutex::new(producer),
            settings: settings.clone(),
            transactional_id: transactional_id.to_owned(),
        })
    }

    fn producer(&self) -> FutureProducer {
        self.producer.lock().expect("publisher lock").clone()
    }

    /// Starts a new producer with the same transactional id, which fences the one in use and
    /// bumps the producer epoch. After a transaction failed on a record (too large, say), the
    /// old producer's sequence numbers no longer match the broker's, and its next transaction
    /// would wait on the coordinator indefinitely.
    async fn renew(&self) -> Result<(), RegistryError> {
        let fresh = transactional_producer(&self.settings, &self.transactional_id).await?;
        *self.producer.lock().expect("publisher lock") = fresh;
        tracing::info!(
            "publisher {}: producer renewed after a failed transaction",
            self.transactional_id
        );
        Ok(())
    }

    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Publishes `bundle` (if any) and `aliases` in one transaction.
    pub async fn publish(
        &self,
        bundle: Option<&BundleFiles>,
        aliases: &[AliasRecord],
    ) -> Result<(), RegistryError> {
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(files) = bundle {
            let payload = bundle_payload(files).map_err(|source| RegistryError::NotUtf8 {
                version: files.manifest.version,
                source,
            })?;
            records.push((bundle_key(files.manifest.version), payload));
        }
        for a in aliases {
            let payload = serde_json::to_vec(a).expect("alias record serializes");
            records.push((a.alias.key(), payload));
        }
        let id = self.transactional_id.clone();
        let producer = self.producer();
        let p = producer.clone();
        tokio::task::spawn_blocking(move || p.begin_transaction())
            .await
            .map_err(BrokerError::from)?
            .map_err(|e| fenced_or(e, Some(&producer), &id))?;
        let sends = records.iter().map(|(key, payload)| {
            producer.send(
                FutureRecord::to(&self.settings.topics.models)
                    .key(key)
                    .payload(payload),
                TXN_TIMEOUT,
            )
        });
        let mut failure = None;
        let mut too_large = None;
        for (r, (key, payload)) in futures::future::join_all(sends).await.iter().zip(&records) {
            if let Err((e, _)) = r {
                if refused_as_too_large(e) {
                    too_large.get_or_insert(RegistryError::TooLarge {
                        key: key.clone(),
                        bytes: payload.len(),
                    });
                }
                failure.get_or_insert(e.clone());
            }
        }
        let p = producer.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let result = match failure {
                None => p.commit_transaction(TXN_TIMEOUT),
                Some(e) => Err(e),
            };
            if result.is_err() {
                // Never leave a transaction open: readers (read_committed) would stall behind it.
                let _ = p.abort_transaction(TXN_TIMEOUT);
            }
            result
        })
        .await
        .map_err(BrokerError::from)?;
        if let Err(e) = outcome {
            let e = fenced_or(e, Some(&producer), &self.transactional_id);
            if matches!(e, RegistryError::Fenced { .. }) {
                return Err(e);
            }
            // Aborted above: nothing of the transaction is visible. A new producer takes over,
            // so that the publisher goes on.
            self.renew().await?;
            return Err(too_large.unwrap_or(e));
        }
        for (key, payload) in &records {
            tracing::info!(
                "published {key} on {} ({} bytes)",
                self.settings.topics.models,
                payload.len()
            );
        }
        Ok(())
    }
}

/// A transactional producer for the registry, its transactions initialised (which fences any
/// older producer with the same id).
async fn transactional_producer(
    settings: &KafkaSettings,
    transactional_id: &str,
) -> Result<FutureProducer, RegistryError> {
    let producer = settings.model_producer(Some(transactional_id))?;
    let p = producer.clone();
    let id = transactional_id.to_owned();
    tokio::task::spawn_blocking(move || p.init_transactions(TXN_TIMEOUT))
        .await
        .map_err(BrokerError::from)?
        .map_err(|e| fenced_or(e, None, &id))?;
    Ok(producer)
}

/// Whether the client or the broker refused a record for its size.
fn refused_as_too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
        )
    )
}

/// A fencing error as [`RegistryError::Fenced`], anything else as it is. A fenced producer
/// fails its sends with whatever error purged them; its fatal error says why.
fn fenced_or(
    e: KafkaError,
    producer: Option<&FutureProducer>,
    transactional_id: &str,
) -> RegistryError {
    let is_fencing = |code: Option<RDKafkaErrorCode>| {
        matches!(
            code,
            Some(
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
            )
        )
    };
    let fatal = producer.and_then(|p| p.client().fatal_error());
    let fenced = is_fencing(e.rdkafka_error_code())
        || fatal
            .as_ref()
            .is_some_and(|(code, _)| is_fencing(Some(*code)));
    if fenced {
        RegistryError::Fenced {
            transactional_id: transactional_id.to_owned(),
        }
    } else {
        RegistryError::Broker(BrokerError::Client(e))
    }
}
