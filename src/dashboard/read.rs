//! The dashboard's reading: one consumer of its own, outside any group, assigned the four topics
//! from their beginning, feeding every record to the board; and the predictors' group lag,
//! looked up every few seconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{Headers, Message};
use tokio_util::sync::CancellationToken;

use super::board::Board;
use crate::kafka::{group_lag, BrokerError, KafkaSettings};
use crate::stream::messages::{now_ms, ModelMessage, Prediction};
use crate::telemetry::DashboardMetrics;

const LAG_EVERY: Duration = Duration::from_secs(2);

/// Reads the topics into `board` until `shutdown`.
pub async fn read_topics(
    settings: KafkaSettings,
    board: Arc<Mutex<Board>>,
    metrics: DashboardMetrics,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    let t = &settings.topics;
    let topics = [&t.requests, &t.predictions, &t.dlq, &t.models].map(|s| s.to_owned());
    let consumer: StreamConsumer = settings.reader()?;
    settings.assign_from_beginning(&consumer, &topics).await?;
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
            read_model_record(&board, m.key(), m.payload()).await;
            continue;
        }
        let mut board = board.lock().expect("board lock");
        if topic == t.requests {
            board.request(at_ms, m.payload());
        } else if topic == t.predictions {
            match m.payload().map(serde_json::from_slice::<Prediction>) {
                Some(Ok(p)) => board.prediction(&p),
                _ => tracing::debug!("{topic} offset {}: not a prediction", m.offset()),
            }
        } else if topic == t.dlq {
            let reason = m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "dlq.reason")
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .unwrap_or_else(|| "unknown".to_owned());
            board.dead_letter(at_ms, &reason);
        }
    }
}

async fn read_model_record(board: &Mutex<Board>, key: Option<&[u8]>, payload: Option<&[u8]>) {
    match crate::registry::records::parse(key, payload) {
        Ok(crate::registry::records::Record::Bundle { version, payload }) => {
            // Only the manifest and the processor (for drift) are needed: the model is not
            // loaded. A bundle whose processor does not load still has its manifest shown.
            let loaded = tokio::task::spawn_blocking(move || {
                let msg = serde_json::from_slice::<ModelMessage>(&payload).ok()?;
                if msg.manifest.version != version {
                    tracing::warn!("bundle v{version} holds v{}", msg.manifest.version);
                    return None;
                }
                let manifest = msg.manifest.clone();
                let processor = match msg.into_files() {
                    Ok(files) => files
                        .load_processor()
                        .map_err(|e| {
                            tracing::warn!("bundle v{version}: {}", crate::error_chain(&e))
                        })
                        .ok(),
                    Err(e) => {
                        tracing::warn!("bundle v{version}: {e}");
                        None
                    }
                };
                Some((manifest, processor))
            })
            .await;
            if let Ok(Some((manifest, processor))) = loaded {
                board
                    .lock()
                    .expect("board lock")
                    .bundle(manifest, processor);
            }
        }
        Ok(crate::registry::records::Record::Alias(a)) => {
            board.lock().expect("board lock").alias(a);
        }
        Err(e) => tracing::debug!("registry record skipped: {}", crate::error_chain(&e)),
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
        let lag = tokio::task::spawn_blocking(move || group_lag(&r, &t)).await?;
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
