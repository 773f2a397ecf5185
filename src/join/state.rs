//! The join's state, without I/O: requests waiting for their label, labels waiting for their
//! request, and the ids matched (or expired) within the window, remembered so that a second
//! label is told apart from a replay of the first. Every change it makes is also written as an
//! [`Op`] for the journal, and every label it cannot use becomes a [`DeadLabel`].
//!
//! Two times: each entry's own (its record's time, as the caller gives it; never earlier than
//! an entry before it, so that the oldest is always first), and the join's clock, which the
//! caller advances ([`Join::expire`]) as far as it knows every input is read. An entry expires
//! once the clock is a window past its time, so a request waits for its label at least one
//! window of its input's time, however late the reading. Both are in the journal: a restart
//! makes nothing younger and expires nothing sooner.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Where a record was read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A label as the join holds it: its truth, and its bytes for a dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelIn {
    pub position: Position,
    /// `>50K`.
    pub label: bool,
    pub labeled_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Why a label was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelFault {
    /// No request with its id within the window: unknown, or expired before the label came.
    Unmatched,
    /// Its request was labelled already (by another label, or in the request itself).
    Duplicate,
}

impl LabelFault {
    pub const ALL: [LabelFault; 2] = [LabelFault::Unmatched, LabelFault::Duplicate];

    /// The dead letter's `dlq.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelFault::Unmatched => "unmatched_label",
            LabelFault::Duplicate => "duplicate_label",
        }
    }
}

/// A label the join will not use, for the dead-letter queue.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLabel {
    pub request_id: String,
    pub label: LabelIn,
    pub fault: LabelFault,
    pub detail: String,
    /// It was held (its removal goes in the journal once its dead letter is acknowledged).
    pub was_held: bool,
}

/// A request and its label, joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined<R> {
    pub request_id: String,
    pub value: R,
    pub request: Position,
    pub label: bool,
    /// The record that completed the match: the label, or the request when its label came
    /// first (or inside it).
    pub completed_by: Position,
}

/// What became of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<R> {
    /// Waiting for its other half.
    Held,
    Matched(Joined<R>),
    /// The same record again (read twice after a restart): nothing changes.
    Replayed,
    /// A request without a label whose id another request has (the first keeps it), or a dead
    /// label (see [`Join::take_dead`]).
    Refused,
}

/// A change of state, as the journal keeps it; replaying them in order rebuilds the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op<R> {
    Request {
        id: String,
        at_ms: i64,
        position: Position,
        value: R,
    },
    Label {
        id: String,
        at_ms: i64,
        label: LabelIn,
    },
    /// Ends whatever was held for `id`; the id is remembered one window.
    Matched {
        id: String,
        at_ms: i64,
        request: Position,
        label: Position,
    },
    /// A held label was dead-lettered.
    LabelDropped { id: String },
    /// A request that expired unlabelled, remembered one more window (compaction writes it).
    Expired { id: String, at_ms: i64 },
    /// The join's clock moved to `now_ms`: what waited a window by then expired.
    Clock { now_ms: i64 },
}

#[derive(Debug, Clone)]
struct Held<R> {
    at_ms: i64,
    position: Position,
    value: R,
}

#[derive(Debug, Clone)]
struct Matched {
    at_ms: i64,
    request: Position,
    label: Position,
}

/// Counts since the join was built (a restart starts them again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinCounts {
    pub matched: u64,
    /// Requests whose label never came within the window.
    pub expired_requests: u64,
    pub unmatched_labels: u64,
    pub duplicate_labels: u64,
    /// Requests with an id another request had.
    pub duplicate_requests: u64,
    pub replayed: u64,
}

/// Requests ⋈ labels by request id, within a window.
pub struct Join<R> {
    window_ms: i64,
    requests: HashMap<String, Held<R>>,
    labels: HashMap<String, Held<LabelIn>>,
    matched: HashMap<String, Matched>,
    /// Requests that expired unlabelled: a label for one is dead-lettered at once.
    expired: HashMap<String, i64>,
    /// (time, id) of every entry put in a map, oldest first: what may expire next.
    queue: VecDeque<(i64, String)>,
    /// The latest entry time: an entry's time never goes back.
    stamp_ms: i64,
    /// The join's clock: never goes back.
    now_ms: i64,
    /// Replaying a journal that has journalled the clock's moves (one written before they were
    /// journalled timed its entries by the clock: each replays its expiry).
    clock_journalled: bool,
    ops: Vec<Op<R>>,
    dead: Vec<DeadLabel>,
    counts: JoinCounts,
}

impl<R: Clone> Join<R> {
    pub fn new(window: std::time::Duration) -> Self {
        Join {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1),
            requests: HashMap::new(),
            labels: HashMap::new(),
            matched: HashMap::new(),
            expired: HashMap::new(),
            queue: VecDeque::new(),
            stamp_ms: i64::MIN,
            now_ms: i64::MIN,
            clock_journalled: false,
            ops: Vec::new(),
            dead: Vec::new(),
            counts: JoinCounts::default(),
        }
    }

    fn stamp(&mut self, at_ms: i64) -> i64 {
        self.stamp_ms = self.stamp_ms.max(at_ms);
        self.stamp_ms
    }

    /// A request of time `at_ms`, with its label when it carries one.
    pub fn request(
        &mut self,
        id: &str,
        position: Position,
        value: R,
        inline: Option<bool>,
        at_ms: i64,
    ) -> Outcome<R> {
        let at_ms = self.stamp(at_ms);
        let known = match (self.matched.get(id), self.requests.get(id)) {
            (Some(m), _) => Some(m.request == position),
            (None, Some(h)) => Some(h.position == position),
            (None, None) => None,
        };
        match (known, inline) {
            (Some(true), _) => {
                self.counts.replayed += 1;
                return Outcome::Replayed;
            }
            // Another request with this id: one that carries its label needs nothing of the
            // state to be joined; one that does not cannot be told from the first.
            (Some(false), Some(truth)) => {
                self.counts.matched += 1;
                return Outcome::Matched(Joined {
                    request_id: id.to_owned(),
                    value,
                    request: position.clone(),
                    label: truth,
                    completed_by: position,
                });
            }
            (Some(false), None) => {
                self.counts.duplicate_requests += 1;
                return Outcome::Refused;
            }
            (None, _) => {}
        }
        let early = self.labels.remove(id);
        let label = match (inline, early) {
            (Some(truth), early) => {
                if let Some(early) = early {
                    self.dead_label(
                        id,
                        early.value,
                        LabelFault::Duplicate,
                        "its request carries its own label".into(),
                        true,
                    );
                }
                Some((truth, position.clone()))
            }
            (None, Some(early)) => Some((early.value.label, early.value.position)),
            (None, None) => None,
        };
        self.expired.remove(id);
        match label {
            Some((truth, label_position)) => {
                self.matched(id, at_ms, position.clone(), label_position);
                Outcome::Matched(Joined {
                    request_id: id.to_owned(),
                    value,
                    request: position.clone(),
                    label: truth,
                    completed_by: position,
                })
            }
            None => {
                self.ops.push(Op::Request {
                    id: id.to_owned(),
                    at_ms,
                    position: position.clone(),
                    value: value.clone(),
                });
                self.hold_request(id, at_ms, position, value);
                Outcome::Held
            }
        }
    }

    /// A label of time `at_ms`.
    pub fn label(&mut self, id: &str, label: LabelIn, at_ms: i64) -> Outcome<R> {
        let at_ms = self.stamp(at_ms);
        if let Some(m) = self.matched.get(id) {
            if m.label == label.position {
                self.counts.replayed += 1;
                return Outcome::Replayed;
            }
            let detail = match m.label == m.request {
                true => "its request carried its own label".into(),
                false => format!(
                    "its request was labelled already, by {}/{} offset {}",
                    m.label.topic, m.label.partition, m.label.offset
                ),
            };
            self.dead_label(id, label, LabelFault::Duplicate, detail, false);
            return Outcome::Refused;
        }
        if let Some(h) = self.labels.get(id) {
            if h.position == label.position {
                self.counts.replayed += 1;
                return Outcome::Replayed;
            }
            let detail = format!(
                "another label for this request came first ({}/{} offset {})",
                h.position.topic, h.position.partition, h.position.offset
            );
            self.dead_label(id, label, LabelFault::Duplicate, detail, false);
            return Outcome::Refused;
        }
        if self.expired.contains_key(id) {
            let detail = format!(
                "its request waited longer than the window ({} s) and expired",
                self.window_ms / 1000
            );
            self.dead_label(id, label, LabelFault::Unmatched, detail, false);
            return Outcome::Refused;
        }
        let Some(request) = self.requests.remove(id) else {
            self.ops.push(Op::Label {
                id: id.to_owned(),
                at_ms,
                label: label.clone(),
            });
            self.labels.insert(
                id.to_owned(),
                Held {
                    at_ms,
                    position: label.position.clone(),
                    value: label,
                },
            );
            self.queue.push_back((at_ms, id.to_owned()));
            return Outcome::Held;
        };
        self.matched(id, at_ms, request.position.clone(), label.position.clone());
        Outcome::Matched(Joined {
            request_id: id.to_owned(),
            value: request.value,
            request: request.position,
            label: label.label,
            completed_by: label.position,
        })
    }

    fn hold_request(&mut self, id: &str, at_ms: i64, position: Position, value: R) {
        self.requests.insert(
            id.to_owned(),
            Held {
                at_ms,
                position,
                value,
            },
        );
        self.queue.push_back((at_ms, id.to_owned()));
    }

    fn matched(&mut self, id: &str, at_ms: i64, request: Position, label: Position) {
        self.counts.matched += 1;
        self.ops.push(Op::Matched {
            id: id.to_owned(),
            at_ms,
            request: request.clone(),
            label: label.clone(),
        });
        self.insert_matched(id, at_ms, request, label);
    }

    fn insert_matched(&mut self, id: &str, at_ms: i64, request: Position, label: Position) {
        self.requests.remove(id);
        self.labels.remove(id);
        self.matched.insert(
            id.to_owned(),
            Matched {
                at_ms,
                request,
                label,
            },
        );
        self.queue.push_back((at_ms, id.to_owned()));
    }

    fn dead_label(
        &mut self,
        id: &str,
        label: LabelIn,
        fault: LabelFault,
        detail: String,
        was_held: bool,
    ) {
        match fault {
            LabelFault::Unmatched => self.counts.unmatched_labels += 1,
            LabelFault::Duplicate => self.counts.duplicate_labels += 1,
        }
        self.dead.push(DeadLabel {
            request_id: id.to_owned(),
            label,
            fault,
            detail,
            was_held,
        });
    }

    /// Moves the clock to `now_ms` (never back) and expires what waited a window by then: a
    /// request becomes an expired id (remembered one more window), a label a dead letter;
    /// matched and expired ids are forgotten. Returns how many requests expired unlabelled.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        if now_ms > self.now_ms {
            self.ops.push(Op::Clock { now_ms });
        }
        let expired = self.expire_by(now_ms, false);
        self.counts.expired_requests += expired as u64;
        expired
    }

    /// [`Self::expire`]'s work. While `replaying` the journal, held labels stay (they leave by
    /// their journalled drop, once their dead letter was sent).
    fn expire_by(&mut self, now_ms: i64, replaying: bool) -> usize {
        self.now_ms = self.now_ms.max(now_ms);
        let now_ms = self.now_ms;
        let mut expired_requests = 0;
        let mut kept = Vec::new();
        while let Some((at_ms, _)) = self.queue.front() {
            if now_ms.saturating_sub(*at_ms) < self.window_ms {
                break;
            }
            let (at_ms, id) = self.queue.pop_front().expect("a front");
            if self.requests.get(&id).is_some_and(|h| h.at_ms == at_ms) {
                self.requests.remove(&id);
                // Remembered from the latest entry's time, so that the queue stays in order.
                let at = self.stamp(now_ms);
                self.expired.insert(id.clone(), at);
                self.queue.push_back((at, id));
                expired_requests += 1;
            } else if self.labels.get(&id).is_some_and(|h| h.at_ms == at_ms) {
                if replaying {
                    kept.push((at_ms, id));
                    continue;
                }
                let held = self.labels.remove(&id).expect("held");
                let detail = format!(
                    "no request with this id came within the window ({} s)",
                    self.window_ms / 1000
                );
                self.dead_label(&id, held.value, LabelFault::Unmatched, detail, true);
            } else if self.matched.get(&id).is_some_and(|m| m.at_ms == at_ms) {
                self.matched.remove(&id);
            } else if self.expired.get(&id) == Some(&at_ms) {
                self.expired.remove(&id);
            }
        }
        for k in kept.into_iter().rev() {
            self.queue.push_front(k);
        }
        expired_requests
    }

    /// When (on the join's clock) the oldest entry may expire, if any waits.
    pub fn next_expiry_ms(&self) -> Option<i64> {
        self.queue
            .front()
            .map(|(at_ms, _)| at_ms.saturating_add(self.window_ms))
    }

    /// The changes made since the last call, for the journal.
    pub fn take_ops(&mut self) -> Vec<Op<R>> {
        std::mem::take(&mut self.ops)
    }

    /// Labels refused since the last call, for the dead-letter queue.
    pub fn take_dead(&mut self) -> Vec<DeadLabel> {
        std::mem::take(&mut self.dead)
    }

    /// Replays one journalled change (at start). Expiry replays with the clock's moves (in a
    /// journal from before they were journalled, with each entry's time, the clock then); a
    /// held label leaves only by its match or its `LabelDropped`.
    pub fn replay(&mut self, op: Op<R>) {
        if !self.clock_journalled {
            match &op {
                Op::Request { at_ms, .. }
                | Op::Label { at_ms, .. }
                | Op::Matched { at_ms, .. }
                | Op::Expired { at_ms, .. } => {
                    self.expire_by(*at_ms, true);
                }
                Op::LabelDropped { .. } | Op::Clock { .. } => {}
            }
        }
        match op {
            Op::Request {
                id,
                at_ms,
                position,
                value,
            } => {
                let at_ms = self.stamp(at_ms);
                self.hold_request(&id, at_ms, position, value);
            }
            Op::Label { id, at_ms, label } => {
                let at_ms = self.stamp(at_ms);
                self.labels.insert(
                    id.clone(),
                    Held {
                        at_ms,
                        position: label.position.clone(),
                        value: label,
                    },
                );
                self.queue.push_back((at_ms, id));
            }
            Op::Matched {
                id,
                at_ms,
                request,
                label,
            } => {
                let at_ms = self.stamp(at_ms);
                self.insert_matched(&id, at_ms, request, label);
            }
            Op::LabelDropped { id } => {
                self.labels.remove(&id);
            }
            Op::Expired { id, at_ms } => {
                let at_ms = self.stamp(at_ms);
                self.expired.insert(id.clone(), at_ms);
                self.queue.push_back((at_ms, id));
            }
            Op::Clock { now_ms } => {
                self.clock_journalled = true;
                self.expire_by(now_ms, true);
            }
        }
    }

    /// The whole state as journal changes: what a compacted journal holds.
    pub fn snapshot(&self) -> Vec<Op<R>> {
        let mut ops = Vec::with_capacity(self.len() + 1);
        if self.now_ms > i64::MIN {
            ops.push(Op::Clock {
                now_ms: self.now_ms,
            });
        }
        let mut written = std::collections::HashSet::new();
        for (at_ms, id) in &self.queue {
            let at_ms = *at_ms;
            if !written.insert((at_ms, id)) {
                continue;
            }
            if let Some(h) = self.requests.get(id).filter(|h| h.at_ms == at_ms) {
                ops.push(Op::Request {
                    id: id.clone(),
                    at_ms,
                    position: h.position.clone(),
                    value: h.value.clone(),
                });
            } else if let Some(h) = self.labels.get(id).filter(|h| h.at_ms == at_ms) {
                ops.push(Op::Label {
                    id: id.clone(),
                    at_ms,
                    label: h.value.clone(),
                });
            } else if let Some(m) = self.matched.get(id).filter(|m| m.at_ms == at_ms) {
                ops.push(Op::Matched {
                    id: id.clone(),
                    at_ms,
                    request: m.request.clone(),
                    label: m.label.clone(),
                });
            } else if self.expired.get(id) == Some(&at_ms) {
                ops.push(Op::Expired {
                    id: id.clone(),
                    at_ms,
                });
            }
        }
        ops
    }

    /// Entries held: requests and labels waiting, ids remembered.
    pub fn len(&self) -> usize {
        self.requests.len() + self.labels.len() + self.matched.len() + self.expired.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests waiting for their label.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// Labels waiting for their request.
    pub fn pending_labels(&self) -> usize {
        self.labels.len()
    }

    pub fn counts(&self) -> JoinCounts {
        self.counts
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }
}
