//! The retrainer's side of the join: requests from `census.requests` and labels from
//! `census.labels` become labeled rows ([`StoredRow`]) once both halves are read, whichever
//! comes first; a request labelled inline is the join with no delay. Labels that cannot be used
//! become dead letters. The join's state is journalled ([`Journal`]) after the rows it produced
//! are stored and before the offsets that produced it are committed, so a restart neither loses
//! a match nor makes one twice (a match made again after a crash is the same request, which the
//! rows file keeps once).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rowlog::{fingerprint, StoredRow};
use crate::data::{parse_label, CensusRow};
use crate::join::{DeadLabel, Join, JoinCounts, Joined, Journal, JournalError, LabelIn, Op};
use crate::join::{Outcome, Position};
use crate::kafka::{InMessage, KAFKA_DEFAULT_MAX_MESSAGE_BYTES};
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
}

impl LabelJoin {
    /// Opens the join journalled at `path`, for labels read from `labels_topic`.
    pub fn open(path: &Path, labels_topic: &str, window: Duration) -> Result<Self, JournalError> {
        let (journal, join) = Journal::open(path, window)?;
        Ok(LabelJoin {
            labels_topic: labels_topic.to_owned(),
            join,
            journal,
        })
    }

    /// Expires what waited a window by `now_ms`, then joins a batch's records read then.
    pub fn join(&mut self, batch: &[InMessage], now_ms: i64) -> Joining {
        let mut out = Joining::default();
        self.join.expire(now_ms);
        self.take_dead(&mut out);
        for m in batch {
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
                        self.join.label(&label.request_id, held, now_ms)
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
                    .request(&request.request_id, position, waiting, inline, now_ms)
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

    /// Expires what waited a window by `now_ms`, between batches: the labels it dead-letters.
    pub fn expire(&mut self, now_ms: i64) -> Joining {
        let mut out = Joining::default();
        self.join.expire(now_ms);
        self.take_dead(&mut out);
        out
    }

    /// When the oldest entry may expire, if any waits.
    pub fn next_expiry(&self) -> Option<std::time::Instant> {
        let wait = self.join.next_expiry_ms()? - crate::stream::messages::now_ms();
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
