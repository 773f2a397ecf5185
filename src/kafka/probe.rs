//! Readiness probes on the broker: whether it answers, and whether a consumer is a member of its
//! group.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};

use super::{BrokerError, KafkaSettings};
use crate::util::health::Answer;

/// How long a probe waits for the broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl KafkaSettings {
    /// A probe: the cluster answers a metadata request within 2 s (blocking).
    pub fn broker_probe(&self) -> Result<impl Fn() -> Answer + Send + Sync + 'static, BrokerError> {
        let probe: BaseConsumer = self.client(&[]).create()?;
        let brokers = self.brokers.clone();
        Ok(move || match probe.fetch_metadata(None, PROBE_TIMEOUT) {
            Ok(md) => Ok(format!("{} broker(s) answer", md.brokers().len())),
            Err(e) => Err(format!("{brokers} does not answer: {e}")),
        })
    }
}

/// A probe: `consumer` is a member of `group` (the coordinator gave it a member id) and how
/// many partitions it holds.
pub fn membership_probe(
    consumer: &Arc<StreamConsumer>,
    group: &str,
) -> impl Fn() -> Answer + Send + Sync + 'static {
    let consumer = Arc::downgrade(consumer);
    let group = group.to_owned();
    move || {
        let Some(consumer) = consumer.upgrade() else {
            return Err(format!("left {group}"));
        };
        if member_id(&consumer).is_empty() {
            return Err(format!("joining {group}"));
        }
        let partitions = consumer.assignment().map_or(0, |a| a.count());
        Ok(format!("member of {group}, {partitions} partition(s)"))
    }
}

/// The member id the group coordinator gave `consumer` (empty until it has joined).
fn member_id(consumer: &StreamConsumer) -> String {
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is the live handle of `consumer`, borrowed for this call; librdkafka returns
    // a copy of the member id (or null) that the caller frees with rd_kafka_mem_free.
    unsafe {
        let id = rdkafka::bindings::rd_kafka_memberid(rk);
        if id.is_null() {
            return String::new();
        }
        let s = std::ffi::CStr::from_ptr(id).to_string_lossy().into_owned();
        rdkafka::bindings::rd_kafka_mem_free(rk, id.cast());
        s
    }
}
