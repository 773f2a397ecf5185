//! The dashboard's reading: one consumer of its own, outside any group, assigned the five topics
//! (the stream's from `--since-mins` ago, the registry's from its beginning), feeding every
//! record to the board; and the predictors' group lag,
//! looked up every few seconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{Headers, Message};
use tokio_util::sync::CancellationToken;

use super::board::{Board, DeadLetterSeen};
use crate::kafka::{group_lag, BrokerError, KafkaSettings};
use crate::registry::{bundle_files, Alias, Registry};
use crate::stream::messages::{now_ms, Prediction};
use crate::telemetry::DashboardMetrics;

const LAG_EVERY: Duration = Duration::from_secs(2);

/// Reads the topics into `board` until `shutdown`.
/// The stream topics from `since_ms` when given (else from their beginning); the registry always
/// from its beginning (compacted: it holds what is current).
pub async fn read_topics(
    settings: KafkaSettings,
    board: Arc<Mutex<Board>>,
    metrics: DashboardMetrics,
    since_ms: Option<i64>,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    let t = &settings.topics;
    let stream = [&t.requests, &t.predictions, &t.labels, &t.dlq].map(|s| s.to_owned());
    let consumer: StreamConsumer = settings.reader()?;
    match since_ms {
        Some(ms) => {
            settings
                .assign_since(&consumer, &stream, ms, std::slice::from_ref(&t.models))
                .await?
        }
        None => {
            let mut all = stream.to_vec();
            all.push(t.models.clone());
            settings.assign_from_beginning(&consumer, &all).await?
        }
    }
    // What the models topic says, junk ignored as every reader of it does; the bundles' bytes
    // are let go once read.
    let mut registry = Registry::default();
    loop {
        let m = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = consumer.recv() => m,
        };
        // A broker away is no reason to stop showing what was read: librdkafka reconnects.
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("dashboard: reading the topics: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let at_ms = m.timestamp().to_millis().unwrap_or_else(now_ms);
        let topic = m.topic();
        metrics.read(topic);
        if topic == t.models {
            match registry.read_off_runtime(m.key(), m.payload()).await {
                Ok(()) => show_model_record(&board, &mut registry, m.key()).await,
                Err(e) => {
                    tracing::warn!(
                        "dashboard: {topic} offset {}: record ignored ({}): {}",
                        m.offset(),
                        e.reason(),
                        crate::error_chain(&e)
                    );
                    metrics.registry_ignored(e.reason());
                }
            }
            continue;
        }
        let mut board = board.lock().expect("board lock");
        if topic == t.requests {
            board.request(at_ms, (m.partition(), m.offset()), m.payload());
        } else if topic == t.predictions {
            match m.payload().map(serde_json::from_slice::<Prediction>) {
                Some(Ok(p)) => board.prediction(&p),
                _ => tracing::debug!("{topic} offset {}: not a prediction", m.offset()),
            }
        } else if topic == t.labels {
            let position = crate::join::Position {
                topic: topic.to_owned(),
                partition: m.partition(),
                offset: m.offset(),
            };
            board.label(position, m.payload());
        } else if topic == t.dlq {
            let header = |name: &str| {
                m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
            };
            let reason = header("dlq.reason").unwrap_or_else(|| "unknown".to_owned());
            let source = match (header("dlq.source.topic"), header("dlq.source.partition")) {
                (Some(t), Some(p)) => format!(
                    "{t}/{p}@{}",
                    header("dlq.source.offset").unwrap_or_default()
                ),
                _ => String::new(),
            };
            board.dead_letter(
                at_ms,
                &reason,
                DeadLetterSeen {
                    error: header("dlq.error").unwrap_or_default(),
                    source,
                },
            );
        }
    }
}

/// Shows on `board` the record of `key` that `registry` just took in: a bundle's manifest and
/// processor (for drift; the model is not loaded), or an alias record.
async fn show_model_record(board: &Mutex<Board>, registry: &mut Registry, key: Option<&[u8]>) {
    let key = key.map(String::from_utf8_lossy).unwrap_or_default();
    if let Some(version) = key
        .strip_prefix("bundle/v")
        .and_then(|v| v.parse::<u32>().ok())
    {
        let Some(payload) = registry.bundle(version).map(<[u8]>::to_vec) else {
            return; // the same bundle again
        };
        registry.retain_bundles(|_| false);
        // A bundle whose processor does not load still has its manifest shown.
        let loaded = tokio::task::spawn_blocking(move || {
            let files = bundle_files(version, &payload).ok()?;
            let processor = files
                .load_processor()
                .map_err(|e| tracing::warn!("bundle v{version}: {}", crate::error_chain(&e)))
                .ok();
            Some((files.manifest, processor))
        })
        .await;
        if let Ok(Some((manifest, processor))) = loaded {
            board
                .lock()
                .expect("board lock")
                .bundle(manifest, processor);
        }
        return;
    }
    for alias in [Alias::Champion, Alias::Challenger] {
        if key == alias.key() {
            if let Some(a) = registry.alias(alias) {
                board.lock().expect("board lock").alias(a.clone());
            }
        }
    }
}

/// Keeps the board's lag of `group` on the requests topic until `shutdown`.
pub async fn watch_group_lag(
    settings: KafkaSettings,
    group: String,
    board: Arc<Mutex<Board>>,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    let reader = Arc::new(settings.group_reader(&group)?);
    let topic = settings.topics.requests.clone();
    loop {
        let (r, t) = (reader.clone(), topic.clone());
        // A look-up waits for the broker (seconds, when it is gone): never for shutdown.
        let lag = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            lag = tokio::task::spawn_blocking(move || group_lag(&r, &t)) => lag?,
        };
        match lag {
            Ok(n) => board.lock().expect("board lock").set_lag(Some(n)),
            Err(e) => tracing::debug!("the lag of group {group}: {}", crate::error_chain(&e)),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(LAG_EVERY) => {}
        }
    }
}
