//! How the Kafka clients' own log lines reach ours. librdkafka logs, as warnings, conditions it
//! retries by itself: a fresh broker's transaction and group coordinators answer "Coordinator
//! load in progress" or "Not coordinator" for a moment, and every first start would print them
//! as if something were wrong. Those go to `debug`; everything else keeps librdkafka's level.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientContext;

/// The producers' context: librdkafka's log lines at their level, but for transient
/// coordinator retries (see the module's docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietRetries;

/// The producer every component uses.
pub type KafkaProducer = FutureProducer<QuietRetries>;

/// Coordinator answers librdkafka retries on its own (Kafka's retriable error names).
const TRANSIENT: [&str; 3] = [
    "Coordinator load in progress",
    "Not coordinator",
    "Coordinator not available",
];

/// Whether a librdkafka log line only says that it retries a transient coordinator answer.
fn transient_retry(level: RDKafkaLogLevel, message: &str) -> bool {
    matches!(level, RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice)
        && message.ends_with("retrying")
        && TRANSIENT.iter().any(|t| message.contains(t))
}

impl ClientContext for QuietRetries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if transient_retry(level, message) {
            tracing::debug!("librdkafka: {fac} {message}");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!("librdkafka: {fac} {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!("librdkafka: {fac} {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!("librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!("librdkafka: {fac} {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_retried_coordinator_answers_are_quiet() {
        let w = RDKafkaLogLevel::Warning;
        assert!(transient_retry(
            w,
            "[thrd:main]: Failed to acquire transactional PID from broker TxnCoordinator/1: \
             Broker: Coordinator load in progress: retrying"
        ));
        assert!(transient_retry(
            w,
            "[thrd:main]: Failed to acquire transactional PID from broker TxnCoordinator/1: \
             Broker: Not coordinator: retrying"
        ));
        assert!(!transient_retry(
            w,
            "[thrd:main]: Failed to acquire transactional PID: Broker: Not coordinator"
        ));
        assert!(!transient_retry(
            RDKafkaLogLevel::Error,
            "Coordinator load in progress: retrying"
        ));
        assert!(!transient_retry(
            w,
            "[thrd:127.0.0.1:9092/1]: Connection refused: retrying"
        ));
    }
}
