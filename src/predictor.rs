//! The predictor: a consumer group on `census.requests`. Each batch is decoded, validated,
//! transformed and scored with the bundle in use; one prediction per request goes to
//! `census.predictions`, each record that cannot be scored to `census.dlq`. Offsets are committed
//! only after every output of the batch is acknowledged (at-least-once). The bundle is swapped
//! between batches when a newer one arrives on `census.models`.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bundle::{Bundle, BundleStore};
use crate::data::label_text;
use crate::stream::batch::next_batch;
use crate::stream::decode::{decode_request, Fault};
use crate::stream::kafka::{next_offsets, InMessage};
use crate::stream::messages::{now_ms, Prediction};
use crate::stream::models::{self, current_version, CurrentBundle};
use crate::stream::{KafkaSettings, StreamError, Topics};

/// Settings of one predictor instance.
#[derive(Debug, Clone)]
pub struct PredictorConfig {
    pub kafka: KafkaSettings,
    /// Consumer group shared by all predictor instances.
    pub group: String,
    /// Local bundles to start from, if any (the newest on `census.models` wins when newer).
    pub store: Option<BundleStore>,
    pub max_batch: usize,
    /// How long a batch waits for more records after its first one.
    pub linger: Duration,
    /// Name in logs.
    pub name: String,
}

impl PredictorConfig {
    pub fn new(kafka: KafkaSettings) -> Self {
        PredictorConfig {
            kafka,
            group: crate::cli::PREDICTOR_GROUP.into(),
            store: None,
            max_batch: 1024,
            linger: Duration::ZERO,
            name: "predictor".into(),
        }
    }
}

/// What a predictor did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PredictorStats {
    pub predicted: u64,
    pub dead_lettered: u64,
    pub batches: u64,
    /// Versions used, in the order they were first used.
    pub versions: Vec<u32>,
}

/// The result of one consumed record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Prediction {
        key: String,
        payload: Vec<u8>,
    },
    DeadLetter {
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        fault: Fault,
        detail: String,
        source: (String, i32, i64),
    },
}

/// Scores a batch with `bundle`: one outcome per message, in order.
pub fn score_batch(bundle: &Bundle, batch: &[InMessage]) -> Result<Vec<Outcome>, StreamError> {
    let decoded: Vec<_> = batch
        .iter()
        .map(|m| decode_request(m.payload.as_deref()))
        .collect();
    let rows: Vec<_> = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok().map(|r| &r.record))
        .collect();
    let probabilities = bundle.predict(rows.into_iter())?;
    let mut probabilities = probabilities.into_iter();
    let predicted_at_ms = now_ms();
    let bundle_sha256 = bundle.manifest.bundle_sha256();
    Ok(batch
        .iter()
        .zip(decoded)
        .map(|(m, d)| match d {
            Ok(request) => {
                let probability = probabilities.next().expect("one probability per request");
                let prediction = Prediction {
                    probability,
                    predicted: label_text(probability >= 0.5).to_owned(),
                    income_bracket: request.income_bracket,
                    model_version: bundle.manifest.version,
                    bundle_sha256: bundle_sha256.clone(),
                    sent_at_ms: request.sent_at_ms,
                    predicted_at_ms,
                    partition: m.partition,
                    offset: m.offset,
                    request_id: request.request_id,
                };
                Outcome::Prediction {
                    key: prediction.request_id.clone(),
                    payload: serde_json::to_vec(&prediction).expect("prediction serializes"),
                }
            }
            Err(rejection) => Outcome::DeadLetter {
                key: m.key.clone(),
                payload: m.payload.clone(),
                fault: rejection.fault,
                detail: rejection.detail,
                source: (m.topic.clone(), m.partition, m.offset),
            },
        })
        .collect())
}

/// Sends every outcome and waits until the broker acknowledged all of them.
async fn deliver(
    producer: &FutureProducer,
    topics: &Topics,
    outcomes: &[Outcome],
) -> Result<(), StreamError> {
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
        producer.send(record, Duration::from_secs(60))
    });
    for result in join_all(sends).await {
        if let Err((e, m)) = result {
            return Err(StreamError::Delivery {
                topic: rdkafka::Message::topic(&m).to_owned(),
                reason: e.to_string(),
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

/// Runs a predictor until `shutdown`: finishes the batch in hand, commits, leaves the group.
pub async fn run(
    config: PredictorConfig,
    shutdown: CancellationToken,
) -> Result<PredictorStats, StreamError> {
    let name = config.name.clone();
    let current = CurrentBundle::default();
    if let Some(store) = config.store.clone() {
        match tokio::task::spawn_blocking(move || store.load_current()).await? {
            Ok(bundle) => {
                models::install(&current, bundle, &name);
            }
            Err(e) => tracing::info!("{name}: no local bundle ({e})"),
        }
    }
    let (loaded_tx, mut loaded) = watch::channel(current_version(&current));
    let follower_stop = shutdown.child_token();
    let follower = tokio::spawn(models::follow(
        config.kafka.clone(),
        current.clone(),
        loaded_tx,
        name.clone(),
        follower_stop.clone(),
    ));
    let mut stats = PredictorStats::default();
    if current_version(&current).is_none() {
        tracing::info!(
            "{name}: no bundle yet (none locally, none on {}): waiting for one; run `initialize` \
             and the retrainer to publish it",
            config.kafka.topics.models
        );
        while current_version(&current).is_none() {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    follower_stop.cancel();
                    let _ = follower.await;
                    return Ok(stats);
                }
                changed = loaded.changed() => if changed.is_err() {
                    return Err(StreamError::Setup("the models follower stopped".into()));
                },
            }
        }
    }

    let consumer: StreamConsumer = config.kafka.consumer(&config.group)?;
    consumer.subscribe(&[&config.kafka.topics.requests])?;
    let producer = config.kafka.producer()?;
    let result = serve(
        &config, &current, &consumer, &producer, &shutdown, &mut stats,
    )
    .await;
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is the common case.
        tracing::debug!("{name}: final commit: {e}");
    }
    consumer.unsubscribe();
    follower_stop.cancel();
    let _ = follower.await;
    tracing::info!(
        "{name}: stopped after {} predictions and {} dead letters",
        stats.predicted,
        stats.dead_lettered
    );
    result.map(|()| stats)
}

async fn serve(
    config: &PredictorConfig,
    current: &CurrentBundle,
    consumer: &StreamConsumer,
    producer: &FutureProducer,
    shutdown: &CancellationToken,
    stats: &mut PredictorStats,
) -> Result<(), StreamError> {
    while let Some(batch) = next_batch(consumer, config.max_batch, config.linger, shutdown).await {
        let bundle = current
            .load_full()
            .expect("a bundle is installed before serving");
        let version = bundle.manifest.version;
        if stats.versions.last() != Some(&version) {
            stats.versions.push(version);
        }
        let (batch, outcomes) = tokio::task::spawn_blocking(move || {
            let outcomes = score_batch(&bundle, &batch);
            (batch, outcomes)
        })
        .await?;
        let outcomes = outcomes?;
        deliver(producer, &config.kafka.topics, &outcomes).await?;
        for o in &outcomes {
            match o {
                Outcome::Prediction { .. } => stats.predicted += 1,
                Outcome::DeadLetter { .. } => stats.dead_lettered += 1,
            }
        }
        stats.batches += 1;
        // Every output is acknowledged: the batch's offsets may be committed.
        consumer.store_offsets(&next_offsets(&batch)?)?;
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
            tracing::debug!("{}: commit: {e}", config.name);
        }
    }
    Ok(())
}
