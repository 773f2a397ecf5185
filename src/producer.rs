//! The producer: streams census rows into `census.requests` at a chosen rate, reads
//! `census.predictions` and `census.dlq`, shows each prediction beside its request, and ends
//! with a summary: sent, predicted, missing, duplicates, dead-lettered, accuracy per model
//! version and latency percentiles.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::StreamConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::data::{label_text, parse_label, read_labeled};
use crate::stream::messages::{now_ms, Prediction};
use crate::stream::{KafkaSettings, StreamError};

/// Where the rows come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file in UCI's format (adult.test by default), labels included.
    Uci(PathBuf),
    /// One JSON object a line: a request (`{"record": {...}, "income_bracket": ...}`) or a bare
    /// record with an optional `income_bracket`. A line that is not a JSON object is sent as it
    /// is (the predictor dead-letters it).
    JsonLines(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub kafka: KafkaSettings,
    pub input: Input,
    /// Records a second; 0 sends as fast as possible.
    pub rate: f64,
    /// Records to send; the input is repeated when it has fewer (load tests). `None`: the input
    /// once.
    pub limit: Option<usize>,
    /// How long to wait for the last predictions after the last send.
    pub wait: Duration,
    /// At most this many prediction lines printed a second (0: none).
    pub show_per_sec: u32,
    /// Prefix of this run's request ids.
    pub run_id: String,
}

impl ProducerConfig {
    pub fn new(kafka: KafkaSettings, input: Input) -> Self {
        ProducerConfig {
            kafka,
            input,
            rate: 1000.0,
            limit: None,
            wait: Duration::from_secs(30),
            show_per_sec: 10,
            run_id: format!("{:08x}", rand::random::<u32>()),
        }
    }
}

/// Accuracy of one model version on the labeled requests it scored.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VersionTally {
    pub predictions: u64,
    pub labeled: u64,
    pub correct: u64,
}

impl VersionTally {
    pub fn accuracy(&self) -> Option<f64> {
        (self.labeled > 0).then(|| self.correct as f64 / self.labeled as f64)
    }
}

/// The end-of-run summary.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub sent: usize,
    pub predicted: usize,
    pub dead_lettered: usize,
    pub duplicates: usize,
    /// Request ids that got neither a prediction nor a dead letter.
    pub missing: Vec<String>,
    pub per_version: BTreeMap<u32, VersionTally>,
    /// First prediction of each request, in arrival order.
    pub predictions: Vec<Prediction>,
    /// Send-to-receive latency of each first prediction, milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Of that, send to scored (the prediction's `predicted_at_ms - sent_at_ms`, wall clocks at
    /// millisecond resolution): what the inbound path and the predictor take.
    pub scored_ms: Vec<f64>,
    pub elapsed: Duration,
    /// First send to last prediction or dead letter.
    pub throughput: f64,
}

impl Summary {
    pub fn report(&self) -> String {
        let mut s = format!(
            "sent {}, predicted {}, dead-lettered {}, missing {}, duplicates {}\n\
             throughput {:.0} records/s over {:.1} s\n",
            self.sent,
            self.predicted,
            self.dead_lettered,
            self.missing.len(),
            self.duplicates,
            self.throughput,
            self.elapsed.as_secs_f64()
        );
        for (name, values) in [
            ("latency ms", &self.latencies_ms),
            ("  of which send to scored", &self.scored_ms),
        ] {
            if let Some([p50, p95, p99, max]) = quantiles(values, [0.5, 0.95, 0.99, 1.0]) {
                s += &format!("{name}: p50 {p50:.1}, p95 {p95:.1}, p99 {p99:.1}, max {max:.1}\n");
            }
        }
        for (v, t) in &self.per_version {
            let acc = t.accuracy().map_or("n/a".into(), |a| format!("{:.4}", a));
            s += &format!(
                "model v{v}: {} predictions, accuracy {acc} on {} labeled\n",
                t.predictions, t.labeled
            );
        }
        if !self.missing.is_empty() {
            let shown: Vec<&str> = self.missing.iter().take(20).map(String::as_str).collect();
            s += &format!("never answered: {}", shown.join(", "));
            if self.missing.len() > shown.len() {
                s += &format!(" and {} more", self.missing.len() - shown.len());
            }
            s.push('\n');
        }
        s
    }
}

/// The quantiles `qs` (each 0..=1) of `values` (nearest rank), sorting them once.
fn quantiles<const N: usize>(values: &[f64], qs: [f64; N]) -> Option<[f64; N]> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(qs.map(|q| v[((v.len() - 1) as f64 * q).round() as usize]))
}

enum Outgoing {
    Json(serde_json::Map<String, Value>),
    Raw(Vec<u8>),
}

/// A request as sent: this run's id and send time, then the input's fields.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    request_id: &'a str,
    sent_at_ms: i64,
    #[serde(flatten)]
    body: &'a serde_json::Map<String, Value>,
}

fn load_input(input: &Input) -> Result<Vec<Outgoing>, StreamError> {
    match input {
        Input::Uci(path) => Ok(read_labeled(path)?
            .into_iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                m.insert("income_bracket".into(), label_text(r.label).into());
                m.insert("record".into(), serde_json::to_value(r.row).expect("row"));
                Outgoing::Json(m)
            })
            .collect()),
        Input::JsonLines(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| StreamError::Io(path.display().to_string(), e))?;
            Ok(text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|line| match serde_json::from_str::<Value>(line) {
                    Ok(Value::Object(mut m)) => {
                        if !m.contains_key("record") {
                            let label = m.remove("income_bracket");
                            let mut wrapped = serde_json::Map::new();
                            if let Some(l) = label {
                                wrapped.insert("income_bracket".into(), l);
                            }
                            wrapped.insert("record".into(), Value::Object(m));
                            m = wrapped;
                        }
                        // This run stamps its own.
                        m.remove("request_id");
                        m.remove("sent_at_ms");
                        Outgoing::Json(m)
                    }
                    _ => Outgoing::Raw(line.as_bytes().to_vec()),
                })
                .collect())
        }
    }
}

#[derive(Default)]
struct Tally {
    first: HashMap<String, usize>,
    dead: HashMap<String, usize>,
    duplicates: usize,
    predictions: Vec<Prediction>,
    latencies_ms: Vec<f64>,
    scored_ms: Vec<f64>,
    per_version: BTreeMap<u32, VersionTally>,
    last_at: Option<Instant>,
    shown_this_second: (u64, u32),
}

impl Tally {
    fn answered(&self) -> usize {
        self.first.len() + self.dead.len()
    }

    /// Records a prediction that arrived `latency_ms` after its request was sent.
    fn on_prediction(&mut self, p: Prediction, latency_ms: f64, show_per_sec: u32) {
        self.last_at = Some(Instant::now());
        if self.first.contains_key(&p.request_id) {
            self.duplicates += 1;
            return;
        }
        let latency = latency_ms;
        let truth = p.income_bracket.as_deref().and_then(parse_label);
        let predicted = p.probability >= 0.5;
        let t = self.per_version.entry(p.model_version).or_default();
        t.predictions += 1;
        if let Some(truth) = truth {
            t.labeled += 1;
            t.correct += u64::from(truth == predicted);
        }
        let second = now_ms() as u64 / 1000;
        if self.shown_this_second.0 != second {
            self.shown_this_second = (second, 0);
        }
        if self.shown_this_second.1 < show_per_sec {
            self.shown_this_second.1 += 1;
            let acc: (u64, u64) = self
                .per_version
                .values()
                .fold((0, 0), |a, t| (a.0 + t.correct, a.1 + t.labeled));
            println!(
                "{:<16} p(>50K)={:.3} predicted {:<5} true {:<5} v{} {:>5.0} ms | accuracy {:.4}",
                p.request_id,
                p.probability,
                p.predicted,
                truth.map_or("?", label_text),
                p.model_version,
                latency,
                if acc.1 > 0 {
                    acc.0 as f64 / acc.1 as f64
                } else {
                    f64::NAN
                }
            );
        }
        self.first
            .insert(p.request_id.clone(), self.predictions.len());
        self.latencies_ms.push(latency);
        self.scored_ms
            .push((p.predicted_at_ms - p.sent_at_ms).max(0) as f64);
        self.predictions.push(p);
    }
}

/// When each request was sent, in microseconds since `clock`, indexed by the number in its id:
/// latencies are measured on one monotonic clock, not from the millisecond `sent_at_ms`.
struct SendTimes {
    clock: Instant,
    micros: Vec<AtomicU64>,
}

impl SendTimes {
    const UNSENT: u64 = u64::MAX;

    fn new(n: usize) -> Self {
        SendTimes {
            clock: Instant::now(),
            micros: (0..n).map(|_| AtomicU64::new(Self::UNSENT)).collect(),
        }
    }

    fn mark_sent(&self, i: usize) {
        self.micros[i].store(self.clock.elapsed().as_micros() as u64, Ordering::Release);
    }

    /// Milliseconds from the send of request `i` to now.
    fn latency_ms(&self, i: usize) -> Option<f64> {
        let sent = self.micros.get(i)?.load(Ordering::Acquire);
        (sent != Self::UNSENT)
            .then(|| (self.clock.elapsed().as_micros() as u64).saturating_sub(sent) as f64 / 1e3)
    }
}

struct Collector {
    predictions: StreamConsumer,
    dlq: StreamConsumer,
    run_id: String,
    sent: Arc<SendTimes>,
    tally: Arc<Mutex<Tally>>,
    show_per_sec: u32,
}

async fn collect(c: Collector, stop: CancellationToken) {
    let Collector {
        predictions,
        dlq,
        run_id,
        sent,
        tally,
        show_per_sec,
    } = c;
    let prefix = format!("{run_id}-");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            m = predictions.recv() => match m {
                Ok(m) => {
                    let Some(p) = m
                        .payload()
                        .and_then(|b| serde_json::from_slice::<Prediction>(b).ok())
                    else {
                        continue;
                    };
                    let Some(index) = p
                        .request_id
                        .strip_prefix(&prefix)
                        .and_then(|n| n.parse::<usize>().ok())
                    else {
                        continue;
                    };
                    let latency = sent
                        .latency_ms(index)
                        .unwrap_or_else(|| (now_ms() - p.sent_at_ms) as f64);
                    tally
                        .lock()
                        .expect("tally")
                        .on_prediction(p, latency, show_per_sec);
                }
                Err(e) => tracing::warn!("predictions: {e}"),
            },
            m = dlq.recv() => match m {
                Ok(m) => {
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                    if let Some(key) = key.filter(|k| k.starts_with(&prefix)) {
                        let mut t = tally.lock().expect("tally");
                        t.last_at = Some(Instant::now());
                        *t.dead.entry(key).or_default() += 1;
                    }
                }
                Err(e) => tracing::warn!("dead letters: {e}"),
            },
        }
    }
}

/// Streams the input and reports what came back.
pub async fn run(
    config: ProducerConfig,
    shutdown: CancellationToken,
) -> Result<Summary, StreamError> {
    let producer = config.kafka.producer()?;
    run_with(&producer, config, shutdown).await
}

/// [`run`] with a producer the caller keeps: a load test sends its warm-up and its measured
/// records through one producer, so that the measured run does not include a new idempotent
/// producer's start (connection, metadata, producer id: up to half a second).
pub async fn run_with(
    producer: &FutureProducer,
    config: ProducerConfig,
    shutdown: CancellationToken,
) -> Result<Summary, StreamError> {
    let input = config.input.clone();
    let outgoing = tokio::task::spawn_blocking(move || load_input(&input)).await??;
    let total = if outgoing.is_empty() {
        0
    } else {
        config.limit.unwrap_or(outgoing.len())
    };
    let sent = Arc::new(SendTimes::new(total));
    let topics = &config.kafka.topics;
    let predictions = config.kafka.reader()?;
    config
        .kafka
        .assign_all(&predictions, &topics.predictions, true)?;
    let dlq = config.kafka.reader()?;
    config.kafka.assign_all(&dlq, &topics.dlq, true)?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop_collector = CancellationToken::new();
    let collector = tokio::spawn(collect(
        Collector {
            predictions,
            dlq,
            run_id: config.run_id.clone(),
            sent: sent.clone(),
            tally: tally.clone(),
            show_per_sec: config.show_per_sec,
        },
        stop_collector.clone(),
    ));

    let start = Instant::now();
    let mut ids = Vec::with_capacity(total);
    let mut deliveries = Vec::with_capacity(total);
    for (i, out) in outgoing.iter().cycle().take(total).enumerate() {
        if shutdown.is_cancelled() {
            break;
        }
        if config.rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / config.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let id = format!("{}-{i:06}", config.run_id);
        let envelope;
        let payload = match out {
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
        loop {
            match producer.send_result(
                FutureRecord::to(&topics.requests)
                    .key(id.as_bytes())
                    .payload(payload),
            ) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => {
                    return Err(StreamError::Delivery {
                        topic: topics.requests.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        ids.push(id);
    }
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => {
                return Err(StreamError::Delivery {
                    topic: topics.requests.clone(),
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(StreamError::Delivery {
                    topic: topics.requests.clone(),
                    reason: "the producer was dropped".into(),
                })
            }
        }
    }
    tracing::info!(
        "sent {} records in {:.1} s",
        ids.len(),
        start.elapsed().as_secs_f64()
    );

    let deadline = Instant::now() + config.wait;
    while tally.lock().expect("tally").answered() < ids.len() && Instant::now() < deadline {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    // A short grace period to see duplicates that trail the last first answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_collector.cancel();
    let _ = collector.await;
    let t = Arc::try_unwrap(tally)
        .ok()
        .expect("collector stopped")
        .into_inner()
        .expect("tally");
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !t.first.contains_key(*id) && !t.dead.contains_key(*id))
        .cloned()
        .collect();
    let end = t.last_at.unwrap_or_else(Instant::now);
    let elapsed = end.saturating_duration_since(start);
    let answered = t.answered();
    Ok(Summary {
        sent: ids.len(),
        predicted: t.first.len(),
        dead_lettered: t.dead.len(),
        duplicates: t.duplicates + t.dead.values().map(|n| n - 1).sum::<usize>(),
        missing,
        per_version: t.per_version,
        throughput: answered as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed,
        predictions: t.predictions,
        latencies_ms: t.latencies_ms,
        scored_ms: t.scored_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(id: &str, version: u32, probability: f64, truth: &str) -> Prediction {
        Prediction {
            request_id: id.into(),
            probability,
            predicted: label_text(probability >= 0.5).into(),
            income_bracket: Some(truth.into()),
            model_version: version,
            bundle_sha256: String::new(),
            sent_at_ms: now_ms(),
            predicted_at_ms: now_ms(),
            partition: 0,
            offset: 0,
        }
    }

    #[test]
    fn duplicates_are_counted_once_and_accuracy_is_per_version() {
        let mut t = Tally::default();
        t.on_prediction(prediction("r-1", 1, 0.9, ">50K"), 1.0, 0);
        t.on_prediction(prediction("r-1", 1, 0.9, ">50K"), 1.0, 0);
        t.on_prediction(prediction("r-2", 1, 0.9, "<=50K."), 1.0, 0);
        t.on_prediction(prediction("r-3", 2, 0.1, "<=50K"), 1.0, 0);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.first.len(), 3);
        assert_eq!(t.per_version[&1].accuracy(), Some(0.5));
        assert_eq!(t.per_version[&2].accuracy(), Some(1.0));
    }

    #[test]
    fn quantiles_are_nearest_ranks_of_one_sort() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(
            quantiles(&values, [0.0, 0.5, 0.99, 1.0]),
            Some([1.0, 51.0, 99.0, 100.0])
        );
        assert_eq!(quantiles(&[], [0.5]), None);
    }

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
