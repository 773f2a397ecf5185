//! Sending the requests at the chosen rate, each with this run's id, and remembering when each
//! was sent on one monotonic clock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use tokio_util::sync::CancellationToken;

use super::input::{Envelope, Outgoing, Records};
use super::labels::{Due, LabelDraw};
use crate::kafka::BrokerError;
use crate::kafka::KafkaProducer;
use crate::settings::Rate;
use crate::stream::messages::now_ms;

/// When each request was sent, in microseconds since `clock`, indexed by the number in its id:
/// latencies are measured on one monotonic clock, not from the millisecond `sent_at_ms`.
pub(super) struct SendTimes {
    clock: Instant,
    micros: Vec<AtomicU64>,
    /// The label of each request whose label is sent apart (0: none, 1: `<=50K`, 2: `>50K`),
    /// known here at once although it goes out later: the producer's own accuracy per version.
    labels: Vec<AtomicU8>,
    /// Requests sent so far.
    count: AtomicUsize,
}

impl SendTimes {
    const UNSENT: u64 = u64::MAX;

    pub(super) fn new(n: usize) -> Self {
        SendTimes {
            clock: Instant::now(),
            micros: (0..n).map(|_| AtomicU64::new(Self::UNSENT)).collect(),
            labels: (0..n).map(|_| AtomicU8::new(0)).collect(),
            count: AtomicUsize::new(0),
        }
    }

    fn mark_sent(&self, i: usize) {
        self.micros[i].store(self.clock.elapsed().as_micros() as u64, Ordering::Release);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn mark_label(&self, i: usize, label: bool) {
        self.labels[i].store(1 + u8::from(label), Ordering::Release);
    }

    /// The label of request `i` when it is sent apart.
    pub(super) fn label(&self, i: usize) -> Option<bool> {
        match self.labels.get(i)?.load(Ordering::Acquire) {
            0 => None,
            v => Some(v == 2),
        }
    }

    /// Requests sent so far, and to send in all.
    pub(super) fn progress(&self) -> (usize, usize) {
        (self.count.load(Ordering::Relaxed), self.micros.len())
    }

    /// Milliseconds from the send of request `i` to now.
    pub(super) fn latency_ms(&self, i: usize) -> Option<f64> {
        let sent = self.micros.get(i)?.load(Ordering::Acquire);
        (sent != Self::UNSENT)
            .then(|| (self.clock.elapsed().as_micros() as u64).saturating_sub(sent) as f64 / 1e3)
    }
}

/// What to send and how.
pub(super) struct Plan<'a> {
    pub topic: &'a str,
    pub run_id: &'a str,
    pub records: &'a mut Records,
    /// Labels sent apart: whether and when each record's label comes, and where to hand it for
    /// sending.
    pub labels: Option<&'a mut Apart>,
    /// Records to send.
    pub total: usize,
    pub rate: Rate,
    /// Makes a new producer, for the records whose delivery timed out (see [`send_all`]).
    pub fresh: &'a (dyn Fn() -> Result<KafkaProducer, BrokerError> + Sync),
}

/// Rounds of resending timed-out records with a new producer before giving up.
const MAX_RESENDS: usize = 3;

pub(super) struct Apart {
    pub draw: LabelDraw,
    pub due: tokio::sync::mpsc::UnboundedSender<Due>,
    /// Labels that never come (outside the fraction).
    pub withheld: usize,
}

/// Sends the plan's records (stopping early on `shutdown`) and waits for their
/// acknowledgements; returns the ids sent, in order.
///
/// A record whose delivery timed out is sent again with a new producer (up to [`MAX_RESENDS`]
/// rounds): after a broker was fenced (a KRaft broker paused past its session timeout),
/// librdkafka's producer can stay stuck on a partition whose leader it last saw as none, and
/// delivers nothing more until it is made anew, while a new one sends at once.
pub(super) async fn send_all(
    producer: &KafkaProducer,
    mut plan: Plan<'_>,
    sent: &SendTimes,
    shutdown: &CancellationToken,
) -> Result<Vec<String>, BrokerError> {
    let delivery_error = |source| BrokerError::Delivery {
        topic: plan.topic.to_owned(),
        source,
    };
    let start = Instant::now();
    let mut ids = Vec::with_capacity(plan.total);
    // Records in flight, oldest first, each with its payload until its delivery is known: a
    // record delivered is forgotten as soon as it is, so that a run holds the records in
    // flight, not every record it sent.
    let mut deliveries: VecDeque<(usize, Vec<u8>, DeliveryFuture)> = VecDeque::new();
    let mut timed_out = Vec::new();
    let mut producer = producer.clone();
    for i in 0..plan.total {
        if shutdown.is_cancelled() {
            break;
        }
        if let Some(n) = plan.records.repeats_at(i) {
            tracing::warn!(
                "the input's {n} records begin again at record {}: rows the retrainer may have \
                 trained on come again, and figures on them are not evidence of skill \
                 (--scenario makes fresh rows)",
                i + 1
            );
        }
        if let Some(rate) = plan.rate.per_sec() {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let id = format!("{}-{i:06}", plan.run_id);
        let (out, label) = plan.records.get(i);
        let envelope;
        let payload = match out.as_ref() {
            Outgoing::Json(body) => {
                envelope = serde_json::to_vec(&Envelope {
                    request_id: &id,
                    sent_at_ms: now_ms(),
                    body,
                })
                .expect("request serializes");
                envelope.as_slice()
            }
            Outgoing::Raw(bytes) => bytes.as_slice(),
        };
        sent.mark_sent(i);
        let delivery = enqueue(&producer, plan.topic, &id, payload)
            .await
            .map_err(delivery_error)?;
        deliveries.push_back((i, payload.to_vec(), delivery));
        while let Some(Some(done)) = deliveries.front_mut().map(|(_, _, d)| d.now_or_never()) {
            let (i, payload, _) = deliveries.pop_front().expect("a front delivery");
            if settled(done, true, plan.topic)? {
                timed_out.push((i, payload));
            }
        }
        if let (Some(apart), Some(text)) = (plan.labels.as_deref_mut(), label) {
            match apart.draw.draw() {
                Some(delay) => {
                    if let Some(label) = crate::data::parse_label(&text) {
                        sent.mark_label(i, label);
                    }
                    let _ = apart.due.send(Due {
                        at: tokio::time::Instant::now() + delay,
                        request_id: id.clone(),
                        income_bracket: text,
                    });
                }
                None => apart.withheld += 1,
            }
        }
        ids.push(id);
    }
    for round in 0.. {
        for (i, payload, d) in deliveries.drain(..) {
            if settled(d.await, round < MAX_RESENDS, plan.topic)? {
                timed_out.push((i, payload));
            }
        }
        if timed_out.is_empty() {
            break;
        }
        tracing::warn!(
            "{} records were not delivered in time: sending them again with a new producer \
             (round {} of at most {MAX_RESENDS})",
            timed_out.len(),
            round + 1
        );
        producer = (plan.fresh)()?;
        for (i, payload) in std::mem::take(&mut timed_out) {
            let id = format!("{}-{i:06}", plan.run_id);
            let delivery = enqueue(&producer, plan.topic, &id, &payload)
                .await
                .map_err(delivery_error)?;
            deliveries.push_back((i, payload, delivery));
        }
    }
    tracing::info!(
        "sent {} records in {:.1} s",
        ids.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(ids)
}

/// What a finished delivery on `topic` means: `Ok(false)` delivered, `Ok(true)` timed out and
/// to be sent again (when `resend` allows), an error otherwise.
fn settled(
    done: <DeliveryFuture as std::future::Future>::Output,
    resend: bool,
    topic: &str,
) -> Result<bool, BrokerError> {
    match done {
        Ok(Ok(_)) => Ok(false),
        Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _)))
            if resend =>
        {
            Ok(true)
        }
        Ok(Err((source, _))) => Err(BrokerError::Delivery {
            topic: topic.to_owned(),
            source,
        }),
        Err(_) => Err(BrokerError::Canceled {
            topic: topic.to_owned(),
        }),
    }
}

/// Hands one record to `producer`, waiting while its queue is full.
async fn enqueue(
    producer: &KafkaProducer,
    topic: &str,
    id: &str,
    payload: &[u8],
) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
    loop {
        let record = FutureRecord::to(topic).key(id.as_bytes()).payload(payload);
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_measured_from_the_send_of_that_request() {
        let sent = SendTimes::new(3);
        assert_eq!(sent.latency_ms(0), None, "not sent yet");
        assert_eq!(sent.latency_ms(7), None, "no such request");
        sent.mark_sent(1);
        std::thread::sleep(Duration::from_millis(20));
        let l = sent.latency_ms(1).unwrap();
        assert!((20.0..2000.0).contains(&l), "{l}");
    }
}
