//! A service's membership of its consumer group: the consumer, subscribed to its topic, with its
//! lag kept in a gauge for as long as the subscription lives. The predictor and the retrainer
//! set up their consumers here, the same way.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::lag::{watch_lag, Ends};
use super::{BrokerError, KafkaSettings};

/// A subscribed group member. Dropping it stops the lag watch.
pub struct Subscription {
    pub consumer: Arc<StreamConsumer>,
    /// The lag watcher's latest look at the partitions' ends (None before the first).
    pub looks: watch::Receiver<Option<Ends>>,
    lag_stop: CancellationToken,
}

impl KafkaSettings {
    /// Joins `group` (as the static member `instance_id`, if given), subscribed to `topics`, and
    /// keeps `lag` at the records of its partitions not yet read until the subscription is
    /// dropped or `shutdown` is cancelled.
    pub fn subscribe(
        &self,
        group: &str,
        instance_id: Option<&str>,
        topics: &[&str],
        lag: Gauge,
        shutdown: &CancellationToken,
    ) -> Result<Subscription, BrokerError> {
        let consumer = Arc::new(self.member(group, instance_id)?);
        match instance_id {
            Some(id) => tracing::info!("joining {group} as static member {id}"),
            None => tracing::info!("joining {group} as a dynamic member"),
        }
        consumer.subscribe(topics).map_err(BrokerError::from)?;
        let lag_stop = shutdown.child_token();
        let (looked, looks) = watch::channel(None);
        watch_lag(&consumer, lag, looked, lag_stop.clone());
        Ok(Subscription {
            consumer,
            looks,
            lag_stop,
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.lag_stop.cancel();
    }
}
