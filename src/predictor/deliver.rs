//! Sending a batch's outcomes: predictions to `census.predictions`, dead letters (original
//! bytes, reason in headers) to `census.dlq`, and waiting until the broker acknowledged all.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::Outcome;
use crate::kafka::{BrokerError, Topics};

/// How long a record may wait in the producer for its acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends every outcome and waits until the broker acknowledged all of them.
pub async fn deliver(
    producer: &FutureProducer,
    topics: &Topics,
    outcomes: &[Outcome],
) -> Result<(), BrokerError> {
    let sends = outcomes.iter().map(|o| {
        let record = match o {
            Outcome::Prediction { key, payload } => FutureRecord::to(&topics.predictions)
                .key(key.as_bytes())
                .payload(payload.as_slice()),
            Outcome::DeadLetter {
                key,
                payload,
                fault,
                detail,
                source,
            } => {
                let (topic, partition, offset) = source;
                let headers = OwnedHeaders::new()
                    .insert(header("dlq.reason", fault.as_str()))
                    .insert(header("dlq.error", detail))
                    .insert(header("dlq.source.topic", topic))
                    .insert(header("dlq.source.partition", &partition.to_string()))
                    .insert(header("dlq.source.offset", &offset.to_string()));
                let mut r: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&topics.dlq).headers(headers);
                if let Some(k) = key {
                    r = r.key(k.as_slice());
                }
                if let Some(p) = payload {
                    r = r.payload(p.as_slice());
                }
                r
            }
        };
        producer.send(record, DELIVERY_TIMEOUT)
    });
    for result in join_all(sends).await {
        if let Err((source, m)) = result {
            return Err(BrokerError::Delivery {
                topic: rdkafka::Message::topic(&m).to_owned(),
                source,
            });
        }
    }
    Ok(())
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
