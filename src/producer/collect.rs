//! Reading what comes back: this run's predictions and dead letters, tallied as they arrive
//! (first answers, duplicates, accuracy per version, latencies) and shown on the view. Whoever
//! waits for the readers to fetch, or for the answers, is told on watch channels.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::consumer::StreamConsumer;

use crate::kafka::QuietEof;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::send::SendTimes;
use super::summary::{Seconds, VersionTally};
use super::view::View;
use crate::data::parse_label;
use crate::stream::messages::{now_ms, Prediction};

/// Predictions a run keeps whole for its summary, the first to arrive: past them each is
/// still counted (answers, duplicates, accuracy, latencies) but not kept, so that a long run's
/// memory does not grow by a whole prediction a request.
pub const KEEP_PREDICTIONS: usize = 100_000;

pub(super) struct Tally {
    pub first: HashSet<String>,
    pub dead: HashMap<String, usize>,
    pub duplicates: usize,
    pub predictions: Vec<Prediction>,
    pub latencies_ms: Vec<f64>,
    pub scored_ms: Vec<f64>,
    pub seconds: Seconds,
    pub per_version: BTreeMap<u32, VersionTally>,
    pub last_at: Option<Instant>,
    /// The challenger scored in shadow in the latest prediction, if any.
    pub shadow: Option<u32>,
    view: View,
}

impl Tally {
    pub(super) fn new(view: View) -> Self {
        Tally {
            first: HashSet::new(),
            dead: HashMap::new(),
            duplicates: 0,
            predictions: Vec::new(),
            latencies_ms: Vec::new(),
            scored_ms: Vec::new(),
            seconds: Seconds::default(),
            per_version: BTreeMap::new(),
            last_at: None,
            shadow: None,
            view,
        }
    }

    pub(super) fn answered(&self) -> usize {
        self.first.len() + self.dead.len()
    }

    /// Records a prediction that arrived `latency_ms` after its request was sent.
    /// `apart`: its label when sent apart (the prediction then carries none).
    fn on_prediction(&mut self, p: Prediction, latency_ms: f64, apart: Option<bool>) {
        self.last_at = Some(Instant::now());
        if self.first.contains(&p.request_id) {
            self.duplicates += 1;
            return;
        }
        self.shadow = p.challenger_version;
        let truth = p.income_bracket.as_deref().and_then(parse_label).or(apart);
        let t = self.per_version.entry(p.model_version).or_default();
        t.predictions += 1;
        if let Some(truth) = truth {
            t.labeled += 1;
            t.correct += u64::from(truth == (p.probability >= 0.5));
        }
        let (correct, labeled) = self
            .per_version
            .values()
            .fold((0, 0), |a, t| (a.0 + t.correct, a.1 + t.labeled));
        let accuracy = (labeled > 0).then(|| correct as f64 / labeled as f64);
        self.view.prediction(&p, truth, latency_ms, accuracy);
        self.first.insert(p.request_id.clone());
        let scored_ms = (p.predicted_at_ms - p.sent_at_ms).max(0) as f64;
        self.latencies_ms.push(latency_ms);
        self.scored_ms.push(scored_ms);
        self.seconds.answered(p.sent_at_ms, latency_ms, scored_ms);
        if self.predictions.len() < KEEP_PREDICTIONS {
            self.predictions.push(p);
        }
    }

    fn on_dead_letter(&mut self, request_id: String) {
        self.last_at = Some(Instant::now());
        *self.dead.entry(request_id).or_default() += 1;
    }
}

pub(super) struct Collector {
    pub predictions: StreamConsumer<QuietEof>,
    pub dlq: StreamConsumer<QuietEof>,
    pub run_id: String,
    pub sent: Arc<SendTimes>,
    pub tally: Arc<Mutex<Tally>>,
    /// How many partitions (of both topics) have had their reader reach the end once: each has
    /// fetched, so its answers are read as they come. Needs `enable.partition.eof` on the
    /// readers.
    pub fetched: watch::Sender<usize>,
    /// How many requests have had their first answer (a prediction or a dead letter).
    pub answered: watch::Sender<usize>,
}

/// Tallies this run's answers until `stop`.
pub(super) async fn collect(c: Collector, stop: CancellationToken) {
    let prefix = format!("{}-", c.run_id);
    let mut at_end: HashSet<(&str, i32)> = HashSet::new();
    let answered = |tally: &Tally| {
        c.answered.send_if_modified(|n| {
            let now = tally.answered();
            std::mem::replace(n, now) != now
        });
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            m = c.predictions.recv() => match m {
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
                    let latency = c
                        .sent
                        .latency_ms(index)
                        .unwrap_or_else(|| (now_ms() - p.sent_at_ms) as f64);
                    let mut tally = c.tally.lock().expect("tally");
                    tally.on_prediction(p, latency, c.sent.label(index));
                    answered(&tally);
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    at_end.insert(("predictions", p));
                    c.fetched.send_replace(at_end.len());
                }
                Err(e) => tracing::warn!("predictions: {e}"),
            },
            m = c.dlq.recv() => match m {
                Ok(m) => {
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                    if let Some(key) = key.filter(|k| k.starts_with(&prefix)) {
                        let mut tally = c.tally.lock().expect("tally");
                        tally.on_dead_letter(key);
                        answered(&tally);
                    }
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    at_end.insert(("dlq", p));
                    c.fetched.send_replace(at_end.len());
                }
                Err(e) => tracing::warn!("dead letters: {e}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::label_text;
    use crate::producer::view::Sink;

    fn prediction(id: &str, version: u32, probability: f64, truth: &str) -> Prediction {
        Prediction {
            request_id: id.into(),
            probability,
            predicted: label_text(probability >= 0.5).into(),
            income_bracket: Some(truth.into()),
            model_version: version,
            bundle_sha256: String::new(),
            challenger_version: None,
            challenger_probability: None,
            sent_at_ms: now_ms(),
            predicted_at_ms: now_ms(),
            partition: 0,
            offset: 0,
            reasons: Vec::new(),
            challenger_reasons: Vec::new(),
        }
    }

    #[test]
    fn duplicates_are_counted_once_and_accuracy_is_per_version() {
        let mut t = Tally::new(View::new(None, 0));
        t.on_prediction(prediction("r-1", 1, 0.9, ">50K"), 1.0, None);
        t.on_prediction(prediction("r-1", 1, 0.9, ">50K"), 1.0, None);
        t.on_prediction(prediction("r-2", 1, 0.9, "<=50K."), 1.0, None);
        t.on_prediction(prediction("r-3", 2, 0.1, "<=50K"), 1.0, None);
        // Labels sent apart: the prediction carries none, the producer knows it.
        let mut apart = prediction("r-4", 2, 0.1, "");
        apart.income_bracket = None;
        t.on_prediction(apart, 1.0, Some(true));
        let mut unlabelled = prediction("r-5", 2, 0.1, "");
        unlabelled.income_bracket = None;
        t.on_prediction(unlabelled, 1.0, None);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.first.len(), 5);
        assert_eq!(t.per_version[&1].accuracy(), Some(0.5));
        assert_eq!(t.per_version[&2].accuracy(), Some(0.5));
        assert_eq!(t.per_version[&2].labeled, 2);
    }

    #[test]
    fn past_the_kept_predictions_each_is_still_counted() {
        let mut t = Tally::new(View::new(None, 0));
        let n = KEEP_PREDICTIONS + 10;
        for i in 0..n {
            t.on_prediction(prediction(&format!("r-{i}"), 1, 0.9, ">50K"), 2.0, None);
        }
        t.on_prediction(prediction("r-7", 1, 0.9, ">50K"), 2.0, None);
        assert_eq!(t.predictions.len(), KEEP_PREDICTIONS);
        assert_eq!(t.predictions[0].request_id, "r-0");
        assert_eq!((t.first.len(), t.duplicates), (n, 1));
        assert_eq!(t.latencies_ms.len(), n);
        assert_eq!(t.per_version[&1].predictions, n as u64);
        let answered: usize = t
            .seconds
            .slowest(usize::MAX)
            .iter()
            .map(|s| s.answered)
            .sum();
        assert_eq!(answered, n);
    }

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn prediction_lines_go_to_the_sink_at_most_so_many_a_second() {
        let buffer = Buffer::default();
        let mut t = Tally::new(View::new(Some(Sink::new(buffer.clone())), 2));
        for i in 0..5 {
            t.on_prediction(prediction(&format!("r-{i}"), 3, 0.8, ">50K"), 4.0, None);
        }
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Five predictions within a second or two: two lines a second at most.
        assert!((2..=4).contains(&lines.len()), "{text}");
        assert!(lines[0].starts_with("r-0"), "{text}");
        assert!(lines[0].contains("v3") && lines[0].contains("accuracy 1.0000"));
    }
}
