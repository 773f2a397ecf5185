//! Writing to the registry: bundle and alias records go out together in one Kafka transaction,
//! so a reader (`read_committed`, librdkafka's default) sees a new champion and its bundle at
//! once or not at all. The producer's `transactional.id` makes one publisher at a time: a new
//! publisher with the same id fences the older one, whose next publish fails with
//! [`RegistryError::Fenced`].

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;

use super::records::{bundle_key, bundle_payload, AliasRecord, CommandRecord, PinRecord};
use super::RegistryError;
use crate::bundle::BundleFiles;
use crate::kafka::{is_fencing_error, BrokerError, KafkaSettings, Transactions, TXN_CALL_TIMEOUT};

/// The one writer of `census.models`.
pub struct Publisher {
    txn: Transactions,
    settings: KafkaSettings,
}

impl Publisher {
    /// A transactional producer with `transactional_id`; its start fences any older publisher
    /// with the same id.
    pub async fn start(
        settings: &KafkaSettings,
        transactional_id: &str,
    ) -> Result<Self, RegistryError> {
        let s = settings.clone();
        let id = transactional_id.to_owned();
        let txn = Transactions::start(transactional_id, TXN_CALL_TIMEOUT, move || {
            s.model_producer(Some(&id))
        })
        .await
        .map_err(|e| match is_fencing_error(&e) {
            true => RegistryError::Fenced {
                transactional_id: transactional_id.to_owned(),
            },
            false => RegistryError::Broker(e),
        })?;
        tracing::info!(
            "publishing to {} as transactional id {transactional_id}",
            settings.topics.models
        );
        Ok(Publisher {
            txn,
            settings: settings.clone(),
        })
    }

    pub fn transactional_id(&self) -> &str {
        self.txn.id()
    }

    /// Publishes `bundle` (if any) and `aliases` in one transaction.
    pub async fn publish(
        &self,
        bundle: Option<&BundleFiles>,
        aliases: &[AliasRecord],
    ) -> Result<(), RegistryError> {
        self.publish_all(bundle, aliases, None, None).await
    }

    /// Publishes `bundle`, `aliases`, `pin` and `command` (each if any) in one transaction.
    pub async fn publish_all(
        &self,
        bundle: Option<&BundleFiles>,
        aliases: &[AliasRecord],
        pin: Option<&PinRecord>,
        command: Option<&CommandRecord>,
    ) -> Result<(), RegistryError> {
        let mut records: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        if let Some(files) = bundle {
            let payload = bundle_payload(files).map_err(|source| RegistryError::NotUtf8 {
                version: files.manifest.version,
                source,
            })?;
            records.push((bundle_key(files.manifest.version), Some(payload)));
        }
        for a in aliases {
            let payload = serde_json::to_vec(a).expect("alias record serializes");
            records.push((a.alias.key(), Some(payload)));
        }
        if let Some(p) = pin {
            let payload = serde_json::to_vec(p).expect("pin record serializes");
            records.push((PinRecord::KEY.to_owned(), Some(payload)));
        }
        if let Some(c) = command {
            let payload = serde_json::to_vec(c).expect("command record serializes");
            records.push((c.key(), Some(payload)));
        }
        self.send_in_transaction(&records).await
    }

    /// Retires `versions`: a tombstone on each one's bundle key, in one transaction. Readers
    /// drop their bundles, and the topic's compaction removes the bundle records.
    pub async fn retire(&self, versions: &[u32]) -> Result<(), RegistryError> {
        let records: Vec<(String, Option<Vec<u8>>)> =
            versions.iter().map(|&v| (bundle_key(v), None)).collect();
        self.send_in_transaction(&records).await
    }

    /// Sends `records` (a payload of `None`: a tombstone) in one transaction.
    async fn send_in_transaction(
        &self,
        records: &[(String, Option<Vec<u8>>)],
    ) -> Result<(), RegistryError> {
        self.txn.begin().await.map_err(|e| self.fenced_or(e))?;
        let producer = self.txn.producer();
        let sends = records.iter().map(|(key, payload)| {
            let record = FutureRecord::<String, Vec<u8>>::to(&self.settings.topics.models).key(key);
            let record = match payload {
                Some(p) => record.payload(p),
                None => record,
            };
            producer.send(record, TXN_CALL_TIMEOUT)
        });
        let mut failure = None;
        let mut too_large = None;
        for (r, (key, payload)) in futures::future::join_all(sends).await.iter().zip(records) {
            if let Err((e, _)) = r {
                if refused_as_too_large(e) {
                    too_large.get_or_insert(RegistryError::TooLarge {
                        key: key.clone(),
                        bytes: payload.as_ref().map_or(0, Vec::len),
                    });
                }
                failure.get_or_insert(BrokerError::Client(e.clone()));
            }
        }
        let outcome = match failure {
            None => self.txn.commit().await,
            Some(e) => Err(e),
        };
        if let Err(e) = outcome {
            // Never leave a transaction open: readers (read_committed) would stall behind it.
            let _ = self.txn.abort().await;
            let e = self.fenced_or(e);
            if matches!(e, RegistryError::Fenced { .. }) {
                return Err(e);
            }
            // Aborted: nothing of the transaction is visible. A new producer takes over, so
            // that the publisher goes on.
            self.txn.renew().await.map_err(|e| self.fenced_or(e))?;
            return Err(too_large.unwrap_or(e));
        }
        for (key, payload) in records {
            match payload {
                Some(p) => tracing::info!(
                    "published {key} on {} ({} bytes)",
                    self.settings.topics.models,
                    p.len()
                ),
                None => tracing::info!(
                    "published a tombstone on {key} on {}",
                    self.settings.topics.models
                ),
            }
        }
        Ok(())
    }
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

impl Publisher {
    /// A fencing error as [`RegistryError::Fenced`], anything else as it is. A fenced producer
    /// fails its sends with whatever error purged them; its fatal error says why.
    fn fenced_or(&self, e: BrokerError) -> RegistryError {
        if self.txn.fenced(Some(&e)) {
            RegistryError::Fenced {
                transactional_id: self.txn.id().to_owned(),
            }
        } else {
            RegistryError::Broker(e)
        }
    }
}
