//! The retrainer's ear for operators' commands: reads `census.models` to its end, hands over the
//! commands nobody has answered yet, then each new one as it comes. Errors of the broker are
//! retried: a retrainer never stops listening.

use std::time::Duration;

use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::read::catch_up;
use super::records::{parse, CommandRecord, Record};
use super::state::Registry;
use crate::kafka::{BrokerError, KafkaSettings};

const RETRY: Duration = Duration::from_secs(2);

/// Sends every command not answered yet to `commands` until `shutdown` (or until the receiver
/// is gone).
pub async fn watch_commands(
    settings: KafkaSettings,
    commands: mpsc::Sender<CommandRecord>,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    let topic = settings.topics.models.clone();
    let consumer: StreamConsumer = settings.reader()?;
    let registry = loop {
        // Commands only: the bundles were checked by the retrainer's own read at start.
        let mut registry = Registry::without_bundles();
        let read = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = catch_up(&settings, &consumer, &mut registry, |_| {}) => r,
        };
        match read {
            Ok(()) => break registry,
            Err(e) => {
                tracing::warn!(
                    "retrainer: reading {topic} for commands, trying again: {}",
                    crate::error_chain(&e)
                );
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    let mut pending: Vec<CommandRecord> = registry.pending_commands().cloned().collect();
    pending.sort_by_key(|c| c.asked_at_ms);
    for c in pending {
        if commands.send(c).await.is_err() {
            return Ok(());
        }
    }
    loop {
        let m = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = consumer.recv() => m,
        };
        let command = match m {
            Ok(m) if m.key().is_some_and(|k| k.starts_with(b"command/")) => {
                match parse(m.key(), m.payload()) {
                    Ok(Record::Command(c)) if c.answer.is_none() => c,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(
                            "retrainer: {topic} offset {}: command ignored: {}",
                            m.offset(),
                            crate::error_chain(&e)
                        );
                        continue;
                    }
                }
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!("retrainer: reading {topic} for commands: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if commands.send(command).await.is_err() {
            return Ok(());
        }
    }
}
