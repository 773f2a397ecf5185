//! Metadata requests asked again within their time when one fails at once: with a broker of
//! the bootstrap list down, a request can go to its handle and fail (`DestroyBroker`, a refused
//! connection) while the other brokers answer.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaResult;

/// Pause between two attempts.
const PAUSE: Duration = Duration::from_millis(200);

/// `request(time left)` until it succeeds or `timeout` has passed (blocking); the last error
/// otherwise.
pub(super) fn retrying<T>(
    timeout: Duration,
    mut request: impl FnMut(Duration) -> KafkaResult<T>,
) -> KafkaResult<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match request(left.max(PAUSE)) {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() + PAUSE >= deadline => return Err(e),
            Err(e) => {
                tracing::debug!("metadata request failed, asking again: {e}");
                std::thread::sleep(PAUSE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    #[test]
    fn a_request_that_fails_at_once_is_asked_again_until_its_time_is_up() {
        let mut calls = 0;
        let got = retrying(Duration::from_secs(5), |_| {
            calls += 1;
            match calls {
                1 | 2 => Err(KafkaError::MetadataFetch(RDKafkaErrorCode::DestroyBroker)),
                _ => Ok(calls),
            }
        });
        assert_eq!(got.unwrap(), 3);

        let started = Instant::now();
        let mut calls = 0;
        let got: KafkaResult<()> = retrying(Duration::from_millis(500), |_| {
            calls += 1;
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::DestroyBroker))
        });
        assert!(got.is_err());
        assert!(calls >= 2, "{calls} attempts");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
