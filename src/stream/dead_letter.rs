//! Dead letters: a record a service cannot use, its bytes kept and its reason in headers, sized
//! to fit the dead-letter topic, and sent to it.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::future_producer::Delivery;
use rdkafka::producer::FutureRecord;

use crate::kafka::KafkaProducer;

/// How long a dead letter may wait in the producer for its acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest `dlq.error` detail, in bytes.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// Longest copied key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Room left in a dead letter for the batch's and the record's own framing (headers' lengths
/// included).
pub const FRAMING_BYTES: usize = 512;

/// A dead letter as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, String)>,
}

impl DeadLetterRecord {
    /// Its `dlq.reason`.
    pub fn reason(&self) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| *k == "dlq.reason")
            .map_or("", |(_, v)| v.as_str())
    }

    /// Bytes it takes in a record batch (without the framing).
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len) + headers
    }
}

/// Builds the dead letter of a request that fits in `max_bytes` (the dead-letter topic's
/// `max.message.bytes`): the detail cut to [`MAX_DETAIL_BYTES`], the key to [`MAX_KEY_BYTES`],
/// the payload to whatever room is left; `dlq.key.bytes` / `dlq.payload.bytes` give the
/// original length of whichever was cut.
pub fn dead_letter_record(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    reason: &str,
    detail: &str,
    source: &(String, i32, i64),
    max_bytes: usize,
) -> DeadLetterRecord {
    let (topic, partition, offset) = source;
    let mut headers = vec![
        ("dlq.reason", reason.to_owned()),
        ("dlq.error", cut_text(detail, MAX_DETAIL_BYTES)),
        ("dlq.source.topic", topic.clone()),
        ("dlq.source.partition", partition.to_string()),
        ("dlq.source.offset", offset.to_string()),
    ];
    let key = key.map(|k| {
        if k.len() > MAX_KEY_BYTES {
            headers.push(("dlq.key.bytes", k.len().to_string()));
        }
        k[..k.len().min(MAX_KEY_BYTES)].to_vec()
    });
    let mut record = DeadLetterRecord {
        key,
        payload: None,
        headers,
    };
    if let Some(p) = payload {
        // The header saying the payload was cut takes room too: count it in before cutting.
        let note = ("dlq.payload.bytes", p.len().to_string());
        let room = max_bytes.saturating_sub(FRAMING_BYTES + record.size());
        if p.len() <= room {
            record.payload = Some(p.to_vec());
        } else {
            let room = room.saturating_sub(note.0.len() + note.1.len());
            record.payload = Some(p[..room].to_vec());
            record.headers.push(note);
        }
    }
    record
}

/// `text` cut to at most `max` bytes at a character boundary, marked when cut.
fn cut_text(text: &str, max: usize) -> String {
    const MARK: &str = "… (cut)";
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

/// Sends a dead letter to `topic`.
pub async fn send_dead_letter(
    producer: &KafkaProducer,
    topic: &str,
    record: DeadLetterRecord,
) -> Result<Delivery, (KafkaError, OwnedMessage)> {
    let headers = record
        .headers
        .iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value.as_str()),
            })
        });
    let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(k) = &record.key {
        r = r.key(k.as_slice());
    }
    if let Some(p) = &record.payload {
        r = r.payload(p.as_slice());
    }
    producer.send(r, DELIVERY_TIMEOUT).await
}
