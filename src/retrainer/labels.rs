//! The retrainer's side of the join: requests from `census.requests` and labels from
//! `census.labels` become labeled rows ([`StoredRow`]) once both halves are read, whichever
//! comes first; a request labelled inline is the join with no delay. Labels that cannot be used
//! become dead letters. The join's time is the input's ([`InputClock`]), not the moment the
//! retrainer reads a record, so a retrainer that falls behind loses no label. The join's state
//! is journalled ([`Journal`]) after the rows it produced
//! are stored and before the offsets that produced it are committed, so a restart neither loses
//! a match nor makes one twice (a match made again after a crash is the same request, which the
//! rows file keeps once).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::clock::InputClock;
use super::rowlog::{fingerprint, StoredRow};
use crate::data::{parse_label, CensusRow};
use crate::join::{DeadLabel, Join, JoinCounts, Joined, Journal, JournalError, LabelIn, Op};
use crate::join::{Outcome, Position};
use crate::kafka::{Ends, InMessage, KAFKA_DEFAULT_MAX_MESSAGE_BYTES};
use crate::stream::dead_letter::DeadLetterRecord;
use crate::stream::decode::{decode_label, decode_request};

/// A request waiting for its label, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// Of the request's payload (see [`StoredRow::fingerprint`]).
    pub fingerprint: u64,
    pub row: CensusRow,
}

/// What one batch gave the join.
#[derive(Debug, Default)]
pub struct Joining {
    /// Rows whose request and label are both read now.
    pub rows: Vec<StoredRow>,
    /// Requests that do not decode (the predictor dead-letters them), and unlabelled requests
    /// with another request's id.
    pub skipped: usize,
    /// Records read again (a restart before their batch was committed): nothing changed.
    pub replayed: usize,
    /// Labels that cannot be used, for the dead-letter queue.
    pub dead_letters: Vec<DeadLetterRecord>,
    /// Held labels among them, whose removal is journalled once their dead letters are sent.
    pub dropped: Vec<String>,
}

pub struct LabelJoin {
    labels_topic: String,
    join: Join<Waiting>,
    journal: Journal,
    clock: InputClock,
}

impl LabelJoin {
    /// Opens the join journalled at `path`, for labels read from `labels_topic`.
    pub fn open(path: &Path, labels_topic: &str, window: Duration) -> Result<Self, JournalError> {
        let (journal, join) = Journal::open(path, window)?;
        Ok(LabelJoin {
            labels_topic: labels_topic.to_owned(),
            join,
            journal,
            // A partition that never moves holds the clock back one more window at most.
            clock: InputClock::new(window),
        })
    }

    /// Joins a batch's records, read at `wall_ms`, after expiring what waited a window by the
    /// input's time before them (the batch's own records move the clock for the next one).
    pub fn join(&mut self, batch: &[InMessage], wall_ms: i64) -> Joining {
        let mut out = Joining::default();
        self.join.expire(self.clock.now(wall_ms));
        self.take_dead(&mut out);
        let times: Vec<i64> = batch.iter().map(|m| self.clock.read(m, wall_ms)).collect();
        for (m, &at_ms) in batch.iter().zip(&times) {
            let position = Position {
                topic: m.topic.clone(),
                partition: m.partition,
                offset: m.offset,
            };
            let outcome = if m.topic == self.labels_topic {
                match decode_label(m.payload.as_deref()) {
                    Ok((label, truth)) => {
                        let held = LabelIn {
                            position,
                            label: truth,
                            labeled_at_ms: label.labeled_at_ms,
                            key: m.key.clone(),
                            payload: m.payload.clone().unwrap_or_default(),
                        };
                        self.join.label(&label.request_id, held, at_ms)
                    }
                    Err(rejection) => {
                        out.dead_letters.push(dead_letter(
                            m,
                            rejection.fault.as_str(),
                            &rejection.detail,
                        ));
                        continue;
                    }
                }
            } else {
                let Ok(request) = decode_request(m.payload.as_deref()) else {
                    out.skipped += 1;
                    continue;
                };
                let inline = request.income_bracket.as_deref().and_then(parse_label);
                let waiting = Waiting {
                    fingerprint: fingerprint(m.payload.as_deref().unwrap_or_default()),
                    row: request.record,
                };
                self.join
                    .request(&request.request_id, position, waiting, inline, at_ms)
            };
            match outcome {
                Outcome::Matched(joined) => out.rows.push(stored(joined)),
                Outcome::Refused if m.topic != self.labels_topic => out.skipped += 1,
                Outcome::Replayed => out.replayed += 1,
                Outcome::Held | Outcome::Refused => {}
            }
            self.take_dead(&mut out);
        }
        out
    }

    /// The join's dead labels, in the order it refused them, as dead letters.
    fn take_dead(&mut self, out: &mut Joining) {
        for dead in self.join.take_dead() {
            if dead.was_held {
                out.dropped.push(dead.request_id.clone());
            }
            out.dead_letters.push(dead_label_letter(&dead));
        }
    }

    /// Expires what waited a window by the input's time at `wall_ms`, between batches: the
    /// labels it dead-letters.
    pub fn expire(&mut self, wall_ms: i64) -> Joining {
        let mut out = Joining::default();
        self.join.expire(self.clock.now(wall_ms));
        self.take_dead(&mut out);
        out
    }

    /// A look at the input partitions' ends (see [`InputClock::looked`]).
    pub fn looked(&mut self, ends: &Ends) {
        self.clock.looked(ends);
    }

    /// How far the join's clock is behind the wall clock at `wall_ms`, in ms.
    pub fn clock_lag_ms(&self, wall_ms: i64) -> i64 {
        wall_ms - self.clock.now(wall_ms)
    }

    /// When the oldest entry expires if the input's time moves only with the wall clock (a
    /// partition that never moves): the latest it waits. A look at the input, or a batch, may
    /// expire it sooner.
    pub fn next_expiry(&self) -> Option<std::time::Instant> {
        let wall = crate::stream::messages::now_ms();
        let wait = self.join.next_expiry_ms()? + self.join.window_ms() - wall;
        Some(std::time::Instant::now() + Duration::from_millis(wait.max(0) as u64))
    }

    /// Makes the changes of the batches joined so far durable (after their rows are stored).
    pub fn persist(&mut self) -> Result<(), JournalError> {
        let ops = self.join.take_ops();
        self.journal.append(&ops, &self.join)
    }

    /// Journals that these held labels were dead-lettered (their dead letters acknowledged).
    pub fn dropped(&mut self, ids: Vec<String>) -> Result<(), JournalError> {
        let ops: Vec<Op<Waiting>> = ids.into_iter().map(|id| Op::LabelDropped { id }).collect();
        self.journal.append(&ops, &self.join)
    }

    pub fn counts(&self) -> JoinCounts {
        self.join.counts()
    }

    /// Requests waiting for their label, and labels waiting for their request.
    pub fn pending(&self) -> (usize, usize) {
        (self.join.pending_requests(), self.join.pending_labels())
    }

    pub fn labels_topic(&self) -> &str {
        &self.labels_topic
    }
}

/// The labeled row of a match: stored under its request's position (so a match made again is
/// the same row), counted for cut-offs at the record that completed it.
fn stored(joined: Joined<Waiting>) -> StoredRow {
    let completed_by = (joined.completed_by != joined.request).then_some(joined.completed_by);
    StoredRow {
        topic: joined.request.topic,
        partition: joined.request.partition,
        offset: joined.request.offset,
        generation: 0,
        fingerprint: joined.value.fingerprint,
        label: joined.label,
        row: joined.value.row,
        completed_by,
        // Set when the row is stored.
        stored_at_ms: 0,
    }
}

fn dead_letter(m: &InMessage, reason: &str, detail: &str) -> DeadLetterRecord {
    crate::stream::dead_letter::dead_letter_record(
        m.key.as_deref(),
        m.payload.as_deref(),
        reason,
        detail,
        &(m.topic.clone(), m.partition, m.offset),
        KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
    )
}

fn dead_label_letter(dead: &DeadLabel) -> DeadLetterRecord {
    let p = &dead.label.position;
    crate::stream::dead_letter::dead_letter_record(
        dead.label.key.as_deref(),
        Some(&dead.label.payload),
        dead.fault.as_str(),
        &dead.detail,
        &(p.topic.clone(), p.partition, p.offset),
        KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::PartitionEnd;

    const WINDOW: Duration = Duration::from_secs(120);
    const RECORD: &str = r#"{"age": 52, "workclass": "Self-emp-inc", "fnlwgt": 287927, "education": "HS-grad", "education_num": 9, "marital_status": "Married-civ-spouse", "occupation": "Exec-managerial", "relationship": "Wife", "race": "White", "sex": "Female", "capital_gain": 15024, "capital_loss": 0, "hours_per_week": 40, "native_country": "United-States"}"#;

    fn request(i: i64, timestamp_ms: i64) -> InMessage {
        let body = format!(r#"{{"request_id": "r{i}", "sent_at_ms": 1, "record": {RECORD}}}"#);
        InMessage {
            topic: "census.requests".into(),
            partition: 0,
            offset: i,
            key: None,
            payload: Some(body.into_bytes()),
            timestamp_ms: Some(timestamp_ms),
        }
    }

    fn label(i: i64, timestamp_ms: i64) -> InMessage {
        let body =
            format!(r#"{{"request_id": "r{i}", "income_bracket": ">50K", "labeled_at_ms": 1}}"#);
        InMessage {
            topic: "census.labels".into(),
            partition: 0,
            offset: i,
            key: None,
            payload: Some(body.into_bytes()),
            timestamp_ms: Some(timestamp_ms),
        }
    }

    fn ends(at_ms: i64, requests: (i64, i64), labels: (i64, i64)) -> Ends {
        let end = |topic: &str, (next, end)| PartitionEnd {
            topic: topic.into(),
            partition: 0,
            next,
            end,
            delivered: false,
        };
        Ends {
            at_ms,
            partitions: vec![
                end("census.requests", requests),
                end("census.labels", labels),
            ],
        }
    }

    /// 100 requests sent over 10 s, each labelled 2 s after it; the retrainer reads all the
    /// requests at once, then the labels only `late_ms` after (a labels topic read behind, or
    /// a retrainer stalled in between), expiring at each look meanwhile as its service does.
    fn labels_kept(late_ms: i64) -> (usize, usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut join =
            LabelJoin::open(&dir.path().join("join.jsonl"), "census.labels", WINDOW).unwrap();
        let t0 = 1_000_000;
        let requests: Vec<InMessage> = (0..100).map(|i| request(i, t0 + i * 100)).collect();
        let read = t0 + 10_000;
        assert!(join.join(&requests, read).rows.is_empty());
        let mut dead = 0;
        // Looks every 5 s: the requests read to their end, the labels not.
        let mut wall = read;
        while wall < read + late_ms {
            join.looked(&ends(wall, (100, 100), (0, 100)));
            dead += join.expire(wall).dead_letters.len();
            wall += 5_000;
        }
        let labels: Vec<InMessage> = (0..100).map(|i| label(i, t0 + i * 100 + 2_000)).collect();
        let joined = join.join(&labels, read + late_ms);
        (joined.rows.len(), dead + joined.dead_letters.len())
    }

    #[test]
    fn labels_read_later_than_the_window_still_find_their_requests() {
        // Read 3 minutes late, past the 2-minute window: every label joins its request (the
        // wall clock would have expired them all).
        assert_eq!(labels_kept(180_000), (100, 0));
    }

    #[test]
    fn a_topic_read_further_behind_than_the_hold_lets_its_requests_expire() {
        // Read 5 minutes late: past the window and the hold (one more window) that bounds the
        // state, the requests expired and their labels are dead letters.
        assert_eq!(labels_kept(300_000), (0, 100));
    }

    #[test]
    fn the_clock_and_its_entries_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("join.jsonl");
        let t0 = 1_000_000;
        {
            let mut join = LabelJoin::open(&path, "census.labels", WINDOW).unwrap();
            join.join(&[request(0, t0)], t0);
            join.looked(&ends(t0 + 1_000, (1, 1), (0, 0)));
            join.expire(t0 + 1_000);
            join.join(&[request(1, t0 + 200_000)], t0 + 200_000);
            // Every record read when the next look begins: r0 waited past its window.
            join.looked(&ends(t0 + 200_000, (2, 2), (0, 0)));
            join.expire(t0 + 200_500);
            join.persist().unwrap();
        }
        // Reopened: r0 is past its window on the journalled clock, r1 waits.
        let mut join = LabelJoin::open(&path, "census.labels", WINDOW).unwrap();
        assert_eq!(join.pending(), (1, 0));
        let labels = [label(0, t0 + 200_500), label(1, t0 + 201_000)];
        let joined = join.join(&labels, t0 + 201_000);
        assert_eq!(joined.rows.len(), 1);
        assert_eq!(joined.rows[0].offset, 1);
        assert_eq!(
            joined.dead_letters.len(),
            1,
            "r0's label: its request expired"
        );
    }
}
