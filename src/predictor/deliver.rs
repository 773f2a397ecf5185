//! Sending a batch's outcomes: predictions to `census.predictions`, dead letters (the request's
//! bytes, reason in headers) to `census.dlq`, and waiting until the broker acknowledged all.
//!
//! Every request ends as a prediction or a dead letter, and a dead letter always fits its
//! topic: the detail is cut to [`MAX_DETAIL_BYTES`], the copied key and payload to what the
//! topic's `max.message.bytes` leaves, with headers saying how long they were. A prediction the
//! broker refuses for itself (too large, invalid) becomes an `undeliverable` dead letter rather
//! than an error that would bring the same batch back forever.

use std::time::Duration;

use futures::future::join_all;
use futures::stream::{FuturesOrdered, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;

use super::{Outcome, Scored};
use crate::kafka::KafkaProducer;
use crate::kafka::{BrokerError, RefusedRecord, Topics};
pub use crate::stream::dead_letter::{dead_letter_record, send_dead_letter, DeadLetterRecord};
#[cfg(test)]
use crate::stream::dead_letter::{FRAMING_BYTES, MAX_DETAIL_BYTES, MAX_KEY_BYTES};
use crate::stream::decode::Fault;

/// How long a record may wait in the producer for its acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Room left in a prediction (no headers) for the batch's and the record's own framing: a
/// record batch's header is 61 bytes, a record's own about 20.
const PREDICTION_FRAMING_BYTES: usize = 128;

/// The `max.message.bytes` of the topics a predictor writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub predictions: usize,
    pub dlq: usize,
}

/// What goes on the wire for one outcome.
enum Output<'a> {
    Prediction {
        key: &'a str,
        payload: &'a [u8],
        source: &'a (String, i32, i64),
        scored: Scored,
    },
    DeadLetter(DeadLetterRecord),
}

impl<'a> Output<'a> {
    /// A prediction that cannot fit its topic becomes an `undeliverable` dead letter at once:
    /// in a transaction, a record the broker refuses would fail the whole batch every time.
    fn of(outcome: &'a Outcome, limits: Limits) -> Self {
        match outcome {
            Outcome::Prediction {
                key,
                payload,
                source,
                ..
            } if key.len() + payload.len() + PREDICTION_FRAMING_BYTES > limits.predictions => {
                Output::DeadLetter(dead_letter_record(
                    Some(key.as_bytes()),
                    None,
                    Fault::Undeliverable.as_str(),
                    &format!(
                        "the prediction was refused before sending: {} bytes, more than the \
                         predictions topic allows ({} bytes)",
                        key.len() + payload.len(),
                        limits.predictions
                    ),
                    source,
                    limits.dlq,
                ))
            }
            Outcome::Prediction {
                key,
                payload,
                source,
                scored,
            } => Output::Prediction {
                key,
                payload,
                source,
                scored: *scored,
            },
            Outcome::DeadLetter {
                key,
                payload,
                fault,
                detail,
                source,
            } => Output::DeadLetter(dead_letter_record(
                key.as_deref(),
                payload.as_deref(),
                fault.as_str(),
                detail,
                source,
                limits.dlq,
            )),
        }
    }
}

/// Sends every outcome and waits until the broker acknowledged all of them. A prediction the
/// broker refuses for itself is replaced by an `undeliverable` dead letter sent at once; in a
/// transaction (`in_transaction`) nothing more can be sent after a refusal, so the refused
/// records are returned in [`BrokerError::RefusedInTransaction`] instead, for the caller to
/// abort and dead-letter them when the batch comes again.
pub async fn deliver(
    producer: &KafkaProducer,
    topics: &Topics,
    outcomes: &[Outcome],
    limits: Limits,
    in_transaction: bool,
) -> Result<Delivered, BrokerError> {
    let outputs: Vec<Output<'_>> = outcomes.iter().map(|o| Output::of(o, limits)).collect();
    let sends = outputs.iter().map(|o| async move {
        match o {
            Output::Prediction { key, payload, .. } => {
                let record = FutureRecord::to(&topics.predictions)
                    .key(key.as_bytes())
                    .payload(*payload);
                producer.send(record, DELIVERY_TIMEOUT).await
            }
            Output::DeadLetter(record) => {
                send_dead_letter(producer, &topics.dlq, record.clone()).await
            }
        }
    });
    let mut delivered = Delivered::default();
    let mut stand_ins = Vec::new();
    let mut refused = Vec::new();
    let mut failure = None;
    let mut results = Vec::with_capacity(outputs.len());
    let mut sends: FuturesOrdered<_> = sends.collect();
    while let Some(result) = sends.next().await {
        if results.is_empty() {
            // Some of the batch is acknowledged, the rest not yet.
            crate::util::fault::point("mid_delivery");
        }
        results.push(result);
    }
    for (result, output) in results.into_iter().zip(&outputs) {
        match (result, output) {
            (Ok(_), Output::Prediction { scored, .. }) => {
                delivered.predictions += 1;
                delivered.scored.push(*scored);
            }
            (Ok(_), Output::DeadLetter(record)) => delivered.dead_letter(record.reason()),
            (Err((e, _)), Output::Prediction { source, .. })
                if in_transaction && refused_for_itself(&e) =>
            {
                refused.push(RefusedRecord {
                    source: (*source).clone(),
                    reason: e.to_string(),
                });
            }
            (Err((e, _)), Output::Prediction { key, source, .. }) if refused_for_itself(&e) => {
                tracing::warn!(
                    "the prediction of {}/{} offset {} was refused ({e}); dead-lettering it",
                    source.0,
                    source.1,
                    source.2
                );
                let record = dead_letter_record(
                    Some(key.as_bytes()),
                    None,
                    Fault::Undeliverable.as_str(),
                    &format!("the prediction was refused: {e}"),
                    source,
                    limits.dlq,
                );
                stand_ins.push(send_dead_letter(producer, &topics.dlq, record));
            }
            (Err((source, m)), _) => {
                failure.get_or_insert_with(|| delivery_error(source, &m));
            }
        }
    }
    if !refused.is_empty() {
        return Err(BrokerError::RefusedInTransaction(refused));
    }
    if let Some(e) = failure {
        return Err(e);
    }
    for result in join_all(stand_ins).await {
        result.map_err(|(source, m)| delivery_error(source, &m))?;
        delivered.dead_letter(Fault::Undeliverable.as_str());
    }
    Ok(delivered)
}

/// What a delivery put on the topics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivered {
    pub predictions: u64,
    pub dead_letters: u64,
    /// Dead letters by `dlq.reason`.
    pub by_reason: std::collections::BTreeMap<String, u64>,
    /// The delivered predictions' figures.
    pub scored: Vec<Scored>,
}

impl Delivered {
    fn dead_letter(&mut self, reason: &str) {
        self.dead_letters += 1;
        *self.by_reason.entry(reason.to_owned()).or_default() += 1;
    }
}

/// Whether the broker (or the client) refused a record for what it is rather than for the
/// state of the cluster: sending it again would fail again.
fn refused_for_itself(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}

fn delivery_error(source: KafkaError, m: &OwnedMessage) -> BrokerError {
    BrokerError::Delivery {
        topic: rdkafka::Message::topic(m).to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> (String, i32, i64) {
        ("census.requests".into(), 3, 1207)
    }

    fn header<'a>(r: &'a DeadLetterRecord, key: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_small_dead_letter_keeps_the_request_untouched() {
        let r = dead_letter_record(
            Some(b"k1"),
            Some(b"not json"),
            Fault::NotJson.as_str(),
            "expected value",
            &source(),
            1 << 20,
        );
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.payload.as_deref(), Some(&b"not json"[..]));
        assert_eq!(header(&r, "dlq.reason"), Some("not_json"));
        assert_eq!(header(&r, "dlq.source.offset"), Some("1207"));
        assert_eq!(header(&r, "dlq.payload.bytes"), None);
    }

    #[test]
    fn a_huge_request_is_cut_to_fit_the_topic_and_says_so() {
        // A wrong-typed megabyte string: serde's message quotes it, the payload holds it.
        let payload = format!(
            r#"{{"request_id":"r","record":{{"age":"{}"}}}}"#,
            "é".repeat(600_000)
        );
        let detail = format!("invalid type: string \"{}\"", "é".repeat(600_000));
        let key = vec![b'k'; 5000];
        let limit = 1_048_588;
        let r = dead_letter_record(
            Some(&key),
            Some(payload.as_bytes()),
            Fault::WrongType.as_str(),
            &detail,
            &source(),
            limit,
        );
        assert!(r.size() + FRAMING_BYTES <= limit, "{} bytes", r.size());
        let error = header(&r, "dlq.error").unwrap();
        assert!(
            error.len() <= MAX_DETAIL_BYTES && error.ends_with("(cut)"),
            "{error}"
        );
        assert_eq!(r.key.as_ref().unwrap().len(), MAX_KEY_BYTES);
        assert_eq!(header(&r, "dlq.key.bytes"), Some("5000"));
        let expected_len = payload.len().to_string();
        assert_eq!(header(&r, "dlq.payload.bytes"), Some(expected_len.as_str()));
        let kept = r.payload.as_ref().unwrap();
        assert!(payload.as_bytes().starts_with(kept) && kept.len() > 1_000_000);

        // A topic too small for any of the payload still gets the dead letter, without it.
        let r = dead_letter_record(
            None,
            Some(payload.as_bytes()),
            Fault::WrongType.as_str(),
            &detail,
            &source(),
            1000,
        );
        assert_eq!(r.payload.as_deref(), Some(&b""[..]));
        assert_eq!(header(&r, "dlq.reason"), Some("wrong_type"));
    }
}
