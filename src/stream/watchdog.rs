//! The consumer side's watchdog: a commit that never returns, or partitions of this member with
//! records waiting that it does not read, while the broker answers. After a long broker outage
//! librdkafka can leave a consumer in such a state (a static member fenced and rejoined, a
//! partition revoked while its batch was in hand and handed back): no error, no record, the
//! group's lag standing. The loop then ends with an error, so that the service's supervisor
//! restarts it (its records are read again from the last commit: nothing is lost).

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Offset;
use tokio::task::JoinHandle;

use crate::kafka::BrokerError;

/// What the loop tells the watchdog at each idle tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    /// How long the commit under way has run, if one is.
    pub commit_running: Option<Duration>,
    /// How long since the consumer last gave a record (or the loop started).
    pub read_idle: Duration,
    /// Whether the loop would read a record now (fewer batches in hand than it may have).
    pub reading: bool,
}

/// The watchdog's memory between ticks.
#[derive(Debug, Default)]
pub struct Watchdog {
    /// Since when the broker has answered while the consumer looked stuck.
    answering_since: Option<Instant>,
    /// When the last look at the broker started.
    last_look: Option<Instant>,
    /// A look under way, on a blocking thread: the loop does not wait for it.
    look: Option<(JoinHandle<Look>, Tick)>,
}

/// How long a stuck-looking consumer (or a batch's unacknowledged outputs: the producer) is
/// watched, the broker answering all along, before the loop ends; also how long a batch waits
/// before the broker is asked.
pub const STUCK_AFTER: Duration = Duration::from_secs(20);
/// How often, at most, the broker is asked (a few requests: metadata, committed offsets, a
/// watermark per partition).
const LOOK_EVERY: Duration = Duration::from_secs(5);

impl Watchdog {
    /// Looks at the loop's state, never waiting on the broker: when a commit has run, or
    /// nothing was read, for [`STUCK_AFTER`], asks the broker on a blocking thread, and judges
    /// its answer at a later tick. An error once the consumer has looked stuck, the broker
    /// answering, for [`STUCK_AFTER`].
    pub async fn tick(
        &mut self,
        consumer: &std::sync::Arc<StreamConsumer>,
        tick: Tick,
    ) -> Result<(), BrokerError> {
        let commit_stuck = tick.commit_running.is_some_and(|d| d >= STUCK_AFTER);
        let idle = tick.reading && tick.read_idle >= STUCK_AFTER;
        if !commit_stuck && !idle {
            self.answering_since = None;
            if let Some((h, _)) = self.look.take() {
                h.abort(); // its answer no longer matters (the thread finishes on its own)
            }
            return Ok(());
        }
        if let Some((h, _)) = &self.look {
            if !h.is_finished() {
                return Ok(());
            }
            let (h, asked) = self.look.take().expect("a look");
            let look = h.await?;
            return self.judge(look.broker_answers, stuck(&look, asked));
        }
        if self.last_look.is_none_or(|t| t.elapsed() >= LOOK_EVERY) {
            self.last_look = Some(Instant::now());
            let c = consumer.clone();
            let tick = Tick {
                reading: idle,
                ..tick
            };
            self.look = Some((
                tokio::task::spawn_blocking(move || look(&c, commit_stuck)),
                tick,
            ));
        }
        Ok(())
    }

    /// An error once `stuck` has held, the broker answering, for [`STUCK_AFTER`].
    fn judge(&mut self, broker_answers: bool, stuck: Option<String>) -> Result<(), BrokerError> {
        let Some(what) = stuck.filter(|_| broker_answers) else {
            self.answering_since = None;
            return Ok(());
        };
        let since = *self.answering_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= STUCK_AFTER {
            return Err(BrokerError::StuckConsumer { what });
        }
        Ok(())
    }
}

/// What a look found wrong, asked at `tick`.
fn stuck(look: &Look, tick: Tick) -> Option<String> {
    if look.commit {
        return Some(format!(
            "a commit has not returned for {:.0} s",
            tick.commit_running.unwrap_or_default().as_secs_f64()
        ));
    }
    match look.waiting {
        Some(n) if n > 0 && tick.reading => Some(format!(
            "{n} records wait on its partitions and none was read for {:.0} s",
            tick.read_idle.as_secs_f64()
        )),
        _ => None,
    }
}

/// What a look at the broker found.
#[derive(Debug)]
struct Look {
    /// Asked about a commit that does not return.
    commit: bool,
    /// The broker answered: the group's coordinator (the committed offsets), for a commit;
    /// a metadata request otherwise.
    broker_answers: bool,
    /// Records past this member's positions on its partitions (None: not counted, or not
    /// known).
    waiting: Option<i64>,
}

/// Asks the broker whether it answers and, unless about a commit, counts the records past this
/// member's position (or committed offset, before its first fetch) on each partition it owns.
/// Blocking: broker requests.
fn look(consumer: &StreamConsumer, commit: bool) -> Look {
    let timeout = Duration::from_secs(2);
    if commit {
        return Look {
            commit,
            broker_answers: consumer.committed(timeout).is_ok(),
            waiting: None,
        };
    }
    let topic = consumer
        .assignment()
        .ok()
        .and_then(|a| a.elements().first().map(|e| e.topic().to_owned()));
    let broker_answers = consumer.fetch_metadata(topic.as_deref(), timeout).is_ok();
    if !broker_answers {
        return Look {
            commit,
            broker_answers,
            waiting: None,
        };
    }
    let waiting = (|| {
        let positions = consumer.position().ok()?;
        let committed = consumer.committed(timeout).ok();
        let mut waiting = 0;
        for e in positions.elements() {
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => match committed
                    .as_ref()
                    .and_then(|c| c.find_partition(e.topic(), e.partition()))
                    .map(|c| c.offset())
                {
                    Some(Offset::Offset(o)) => o,
                    _ => continue,
                },
            };
            let (_, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .ok()?;
            waiting += (high - at).max(0);
        }
        Some(waiting)
    })();
    Look {
        commit,
        broker_answers,
        waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_only_after_the_broker_answered_the_whole_time() {
        let mut w = Watchdog::default();
        let stuck = || Some("a commit has not returned for 25 s".to_owned());
        assert!(
            w.judge(true, stuck()).is_ok(),
            "the first look only starts the clock"
        );
        // The broker went away: the clock starts again.
        w.answering_since = Some(Instant::now() - STUCK_AFTER * 2);
        assert!(w.judge(false, stuck()).is_ok());
        assert_eq!(w.answering_since, None);
        assert!(w.judge(true, stuck()).is_ok());
        // Answering for STUCK_AFTER: the loop ends, naming what it saw.
        w.answering_since = Some(Instant::now() - STUCK_AFTER);
        let e = w.judge(true, stuck()).unwrap_err();
        assert!(e.to_string().contains("a commit has not returned"), "{e}");
        assert!(e.to_string().starts_with("fatal error"), "{e}");
        // Not stuck any more: forgotten.
        w.answering_since = Some(Instant::now() - STUCK_AFTER);
        assert!(w.judge(true, None).is_ok());
        assert_eq!(w.answering_since, None);
    }

    #[test]
    fn a_look_names_a_stuck_commit_or_records_left_unread_and_nothing_else() {
        let tick = Tick {
            commit_running: Some(Duration::from_secs(31)),
            read_idle: Duration::from_secs(40),
            reading: true,
        };
        let look = |commit, waiting| Look {
            commit,
            broker_answers: true,
            waiting,
        };
        let said = stuck(&look(true, None), tick).unwrap();
        assert!(
            said.contains("a commit has not returned for 31 s"),
            "{said}"
        );
        let said = stuck(&look(false, Some(120)), tick).unwrap();
        assert!(said.contains("120 records wait"), "{said}");
        // Nothing waiting, not known, or not reading (its batches in hand): not stuck.
        assert_eq!(stuck(&look(false, Some(0)), tick), None);
        assert_eq!(stuck(&look(false, None), tick), None);
        let full = Tick {
            reading: false,
            ..tick
        };
        assert_eq!(stuck(&look(false, Some(120)), full), None);
    }
}
