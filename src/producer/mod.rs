//! The producer: streams census rows into `census.requests` at a chosen rate ([`send`]), reads
//! `census.predictions` and `census.dlq` ([`collect`]), shows each prediction beside its request
//! on a [`Sink`] ([`view`]), and ends with a [`Summary`]: sent, predicted, missing, duplicates,
//! dead-lettered, accuracy per model version and latency percentiles, and the input lines it
//! skipped ([`input`]: not UTF-8, not JSON, too long, a UCI line that does not parse).

mod collect;
mod input;
mod labels;
mod send;
mod status;
mod summary;
mod view;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use input::{Input, SkippedLine};
pub use labels::{LabelDraw, LabelPlan, LabelsSent, Spread};
pub use status::Status;
pub use summary::{quantiles, SlowSecond, Summary, VersionTally};
pub use view::Sink;

use crate::defaults;
use crate::kafka::KafkaProducer;
use crate::kafka::{BrokerError, KafkaSettings};
use crate::settings::Rate;
use collect::{collect, Collector, Tally};
use input::{Loaded, ReadOptions, Records};
use send::{send_all, Apart, Plan, SendTimes};
use view::View;

/// How long the producer's librdkafka tries to deliver a record before it is sent again by a
/// new producer.
const PRODUCER_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long sending waits for the readers of the answers to fetch.
const READERS_READY_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub kafka: KafkaSettings,
    pub input: Input,
    /// Longest input line sent, in bytes: a longer one is skipped (and never held whole).
    pub max_line_bytes: NonZeroUsize,
    /// Send a JSON-lines line that is not a JSON object (not UTF-8, not JSON, another JSON
    /// value) as its bytes, for the predictor to dead-letter, instead of skipping it: for tests
    /// and demos of the dead-letter queue.
    pub send_non_json: bool,
    pub rate: Rate,
    /// Records to send; the input is repeated when it has fewer (load tests). `None`: the input
    /// once.
    pub limit: Option<usize>,
    /// How long to wait for the last predictions after the last send.
    pub wait: Duration,
    /// Where prediction lines go (none: no lines).
    pub sink: Option<Sink>,
    /// At most this many prediction lines a second.
    pub show_per_sec: u32,
    /// The status line, if shown.
    pub status: Option<Status>,
    /// Prefix of this run's request ids.
    pub run_id: String,
    /// Labels sent apart from the requests, on the labels topic (none: inside each request).
    pub labels: Option<LabelPlan>,
}

impl ProducerConfig {
    pub fn new(kafka: KafkaSettings, input: Input) -> Self {
        ProducerConfig {
            kafka,
            input,
            max_line_bytes: defaults::PRODUCER_MAX_LINE_BYTES,
            send_non_json: false,
            rate: Rate::new(defaults::PRODUCER_RATE).expect("the default rate is valid"),
            limit: None,
            wait: defaults::PRODUCER_WAIT,
            sink: None,
            show_per_sec: defaults::SHOW_PER_SEC,
            status: None,
            run_id: format!("{:08x}", rand::random::<u32>()),
            labels: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("making the scenario's rows failed")]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("{path}: cannot read the input")]
    Input {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the input failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Creates missing topics, streams the input and reports what came back.
pub async fn run(
    config: ProducerConfig,
    shutdown: CancellationToken,
) -> Result<Summary, ProducerError> {
    config.kafka.ensure_topics().await?;
    let mut config = config;
    // A record not delivered within 30 s is sent again by a new producer (see `send`), unless
    // the user chose another timeout. Set for the producers alone: the run's consumers would
    // warn of a producer's setting.
    if !config.kafka.extra.contains_key("message.timeout.ms") {
        config.kafka.producer_extra.insert(
            "message.timeout.ms".into(),
            PRODUCER_MESSAGE_TIMEOUT.as_millis().to_string(),
        );
    }
    let producer = config.kafka.producer()?;
    run_with(&producer, config, shutdown).await
}

/// [`run`] with a producer the caller keeps: a load test sends its warm-up and its measured
/// records through one producer, so that the measured run does not include a new idempotent
/// producer's start (connection, metadata, producer id: up to half a second).
pub async fn run_with(
    producer: &KafkaProducer,
    config: ProducerConfig,
    shutdown: CancellationToken,
) -> Result<Summary, ProducerError> {
    let input = config.input.clone();
    let options = ReadOptions {
        max_line_bytes: config.max_line_bytes,
        send_non_json: config.send_non_json,
    };
    let mut loaded =
        tokio::task::spawn_blocking(move || input::load_input(&input, options)).await??;
    let mut records = Records::new(&mut loaded, config.labels.is_some());
    let Loaded {
        skipped,
        first_skipped,
        ..
    } = loaded;
    // Labels apart: handed to their own sender.
    let mut apart = None;
    let mut label_sender = None;
    if let Some(plan) = config.labels {
        let (due, rx) = tokio::sync::mpsc::unbounded_channel();
        label_sender = Some(tokio::spawn(labels::send_labels(
            producer.clone(),
            config.kafka.topics.labels.clone(),
            rx,
            shutdown.clone(),
        )));
        apart = Some(Apart {
            draw: LabelDraw::new(plan),
            due,
            withheld: 0,
        });
    }
    let total = match records.natural_len() {
        0 => 0,
        n => config.limit.unwrap_or(n),
    };
    let sent = Arc::new(SendTimes::new(total));
    let topics = &config.kafka.topics;
    // The readers say when they reach a partition's end, so that sending waits until they fetch.
    let readers = &config.kafka;
    let predictions = readers.reader_with_eof()?;
    let mut partitions = readers
        .assign_all(&predictions, &topics.predictions, true)
        .await?;
    let dlq = readers.reader_with_eof()?;
    partitions += readers.assign_all(&dlq, &topics.dlq, true).await?;
    let (fetched_tx, mut fetched) = watch::channel(0);
    let (answered_tx, mut answered) = watch::channel(0);
    let tally = Arc::new(Mutex::new(Tally::new(View::new(
        config.sink.clone(),
        config.show_per_sec,
    ))));
    let stop_collector = CancellationToken::new();
    let collector = tokio::spawn(collect(
        Collector {
            predictions,
            dlq,
            run_id: config.run_id.clone(),
            sent: sent.clone(),
            tally: tally.clone(),
            fetched: fetched_tx,
            answered: answered_tx,
        },
        stop_collector.clone(),
    ));
    // A new reader's first fetch can come most of a second after its assignment: answers
    // arriving meanwhile would be read late, and their latency measured wrong (seen as ~0.9 s
    // tails at 1,000 records/s, with send-to-scored at 13 ms in the same runs).
    let ready = fetched.wait_for(|&n| n >= partitions);
    if !matches!(
        tokio::time::timeout(READERS_READY_WAIT, ready).await,
        Ok(Ok(_))
    ) {
        tracing::debug!("sending before every reader fetched");
    }

    let stop_status = CancellationToken::new();
    let status = config
        .status
        .clone()
        .map(|s| status::show(s, sent.clone(), tally.clone(), stop_status.clone()));
    let start = Instant::now();
    let plan = Plan {
        topic: &topics.requests,
        run_id: &config.run_id,
        records: &mut records,
        total,
        fresh: &|| config.kafka.producer(),
        rate: config.rate,
        labels: apart.as_mut(),
    };
    let sending = send_all(producer, plan, &sent, &shutdown).await;
    let withheld = apart.map(|a| a.withheld);
    let ids = match sending {
        Ok(ids) => ids,
        Err(e) => {
            stop_status.cancel();
            stop_collector.cancel();
            let _ = collector.await;
            return Err(e.into());
        }
    };

    let all = ids.len();
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::timeout(config.wait, answered.wait_for(|&n| n >= all)) => {}
    }
    // A short grace period to see duplicates that trail the last first answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The labels still due go out at their time.
    let labels = match label_sender {
        Some(task) => {
            let mut sent = task.await??;
            sent.withheld = withheld.unwrap_or_default();
            Some(sent)
        }
        None => None,
    };
    stop_status.cancel();
    if let Some(s) = status {
        let _ = s.await;
    }
    stop_collector.cancel();
    let _ = collector.await;
    let t = Arc::try_unwrap(tally)
        .ok()
        .expect("collector stopped")
        .into_inner()
        .expect("tally");
    let mut summary = summarize(t, ids, start, (skipped, first_skipped));
    summary.labels = labels;
    summary.scenario = records.generator().map(|g| (g.scenario(), g.ceiling));
    Ok(summary)
}

/// The summary of what came back for `ids`, sent from `start`, with the input lines `skipped`
/// (how many, and the first of them).
fn summarize(
    t: Tally,
    ids: Vec<String>,
    start: Instant,
    skipped: (usize, Vec<SkippedLine>),
) -> Summary {
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !t.first.contains(*id) && !t.dead.contains_key(*id))
        .cloned()
        .collect();
    let end = t.last_at.unwrap_or_else(Instant::now);
    let elapsed = end.saturating_duration_since(start);
    let answered = t.answered();
    Summary {
        sent: ids.len(),
        predicted: t.first.len(),
        dead_lettered: t.dead.len(),
        duplicates: t.duplicates + t.dead.values().map(|n| n - 1).sum::<usize>(),
        missing,
        per_version: t.per_version,
        throughput: answered as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed,
        predictions: t.predictions,
        seconds: t.seconds,
        latencies_ms: t.latencies_ms,
        scored_ms: t.scored_ms,
        skipped_lines: skipped.0,
        first_skipped: skipped.1,
        labels: None,
        scenario: None,
    }
}
