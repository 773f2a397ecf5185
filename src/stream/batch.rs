//! Reading a consumer in batches: wait for one message (or shutdown), then take whatever else
//! arrives within a short linger, up to a maximum.

use std::time::Duration;

use rdkafka::consumer::StreamConsumer;
use tokio_util::sync::CancellationToken;

use super::kafka::InMessage;

/// The next batch, or `None` once `shutdown` is cancelled.
pub async fn next_batch(
    consumer: &StreamConsumer,
    max: usize,
    linger: Duration,
    shutdown: &CancellationToken,
) -> Option<Vec<InMessage>> {
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            m = consumer.recv() => match m {
                Ok(m) => {
                    batch.push(InMessage::from_borrowed(&m));
                    break;
                }
                Err(e) => {
                    tracing::warn!("consumer error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(InMessage::from_borrowed(&m)),
            Ok(Err(e)) => tracing::warn!("consumer error: {e}"),
            Err(_) => break,
        }
    }
    Some(batch)
}
