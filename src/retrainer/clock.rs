//! The label join's clock: the input's own time, held back by the partition that lags.
//!
//! A request must wait for its label as long as the label may still be unread, however far
//! behind the retrainer is, however it reads one topic ahead of the other, and whether or not
//! it was stalled. So the join times its entries by the records' timestamps (never past the
//! wall clock), and expires them by the input's progress: the least, over the partitions it
//! reads, of how far each is known to be read. A partition is read up to the newest timestamp
//! read from it, or, once a look at the broker found all its records read, up to that look's
//! time (whatever comes after is newer). The clock never trails the wall clock by more than
//! its hold (the join's window), so a partition that never moves keeps the join's state to at
//! most two windows of records.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::kafka::{Ends, InMessage};

/// How far one partition is known to be read.
#[derive(Debug, Default, Clone, PartialEq)]
struct Progress {
    /// The newest timestamp read from it (each no later than the wall clock at its read).
    read_ms: Option<i64>,
    /// The offset after the last record read.
    next: Option<i64>,
    /// The wall clock at the last read.
    read_at_wall_ms: i64,
    /// The time of the last look that found every record of it read.
    caught_up_ms: Option<i64>,
}

impl Progress {
    fn at_ms(&self) -> Option<i64> {
        self.read_ms.max(self.caught_up_ms)
    }
}

type Key = (String, i32);

#[derive(Debug)]
pub struct InputClock {
    hold_ms: i64,
    partitions: HashMap<Key, Progress>,
    /// The partitions the last look found owned (None before the first look: which partitions
    /// lag is unknown then).
    owned: Option<HashSet<Key>>,
    /// A partition was read that the last look did not list: the assignment changed since, and
    /// partitions owned now may be missing from what the clock knows until the next look.
    unsure: bool,
}

impl InputClock {
    pub fn new(hold: Duration) -> Self {
        InputClock {
            hold_ms: i64::try_from(hold.as_millis()).unwrap_or(i64::MAX),
            partitions: HashMap::new(),
            owned: None,
            unsure: false,
        }
    }

    fn floor(&self, wall_ms: i64) -> i64 {
        wall_ms.saturating_sub(self.hold_ms)
    }

    /// A record read at `wall_ms`: its time for the join (its timestamp, or the wall clock when
    /// it has none, within the hold below the wall clock and never past it).
    pub fn read(&mut self, m: &InMessage, wall_ms: i64) -> i64 {
        let at = m.timestamp_ms.unwrap_or(wall_ms).min(wall_ms);
        let key = (m.topic.clone(), m.partition);
        if self.owned.as_ref().is_some_and(|o| !o.contains(&key)) {
            self.unsure = true;
        }
        let p = self.partitions.entry(key).or_default();
        p.read_ms = p.read_ms.max(Some(at));
        p.next = p.next.max(Some(m.offset + 1));
        p.read_at_wall_ms = wall_ms;
        at.max(self.floor(wall_ms))
    }

    /// A look at the broker: the partitions owned then (others were revoked), and which were
    /// read to their end (by the join: records the consumer delivered that the join has not
    /// read yet are not read). The same look given twice changes nothing more.
    pub fn looked(&mut self, ends: &Ends) {
        let mut partitions = HashMap::with_capacity(ends.partitions.len());
        let mut owned = HashSet::with_capacity(ends.partitions.len());
        for e in &ends.partitions {
            let key = (e.topic.clone(), e.partition);
            let mut p = self.partitions.remove(&key).unwrap_or_default();
            // Before the join read anything of it: the group's committed offset says where it
            // is, but not a position of records delivered (they are in a batch on its way).
            let read_to = p.next.or((!e.delivered).then_some(e.next));
            if read_to.is_some_and(|n| n >= e.end) {
                p.caught_up_ms = p.caught_up_ms.max(Some(ends.at_ms));
            }
            owned.insert(key.clone());
            partitions.insert(key, p);
        }
        // A partition read since the look began, not in it: assigned since; it counts too, and
        // others assigned with it may not be known yet.
        self.unsure = false;
        for (key, p) in self.partitions.drain() {
            if p.read_at_wall_ms >= ends.at_ms {
                self.unsure = true;
                partitions.insert(key, p);
            }
        }
        self.partitions = partitions;
        self.owned = Some(owned);
    }

    /// The join's time at `wall_ms`: the least progress over the partitions read, between the
    /// hold below the wall clock and the wall clock. Owning no partition (before the first
    /// look, or in a rebalance), or reading one the last look did not list, tells nothing of
    /// what is left to read: the hold's floor then, until a look lists what is owned.
    pub fn now(&self, wall_ms: i64) -> i64 {
        let floor = self.floor(wall_ms);
        if self.owned.is_none() || self.unsure {
            return floor;
        }
        let least = self
            .partitions
            .values()
            .map(|p| p.at_ms().unwrap_or(floor))
            .min()
            .unwrap_or(floor);
        least.clamp(floor, wall_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::PartitionEnd;

    const HOLD: Duration = Duration::from_secs(100);

    fn record(topic: &str, offset: i64, timestamp_ms: i64) -> InMessage {
        InMessage {
            topic: topic.into(),
            partition: 0,
            offset,
            key: None,
            payload: None,
            timestamp_ms: Some(timestamp_ms),
        }
    }

    fn ends(at_ms: i64, partitions: &[(&str, i64, i64)]) -> Ends {
        Ends {
            at_ms,
            partitions: partitions
                .iter()
                .map(|&(topic, next, end)| PartitionEnd {
                    topic: topic.into(),
                    partition: 0,
                    next,
                    end,
                    delivered: false,
                })
                .collect(),
        }
    }

    #[test]
    fn the_topic_read_behind_holds_the_clock_at_its_records_times() {
        let mut c = InputClock::new(HOLD);
        // Before any look: the hold below the wall clock.
        assert_eq!(c.now(500_000), 400_000);
        // Requests read up to t=300 s; labels read only up to t=250 s, with more waiting.
        c.read(&record("requests", 9, 300_000), 310_000);
        c.read(&record("labels", 4, 250_000), 310_000);
        c.looked(&ends(305_000, &[("requests", 10, 10), ("labels", 5, 80)]));
        assert_eq!(c.now(320_000), 250_000);
        // The labels read further: the clock follows them, not the wall clock.
        c.read(&record("labels", 40, 290_000), 330_000);
        assert_eq!(c.now(330_000), 290_000);
        // Read to their end: both topics caught up at the look's time.
        c.read(&record("labels", 79, 300_500), 331_000);
        c.looked(&ends(332_000, &[("requests", 10, 10), ("labels", 80, 80)]));
        assert_eq!(c.now(333_000), 332_000);
    }

    #[test]
    fn a_stalled_reader_does_not_take_the_wall_clock_for_progress() {
        let mut c = InputClock::new(HOLD);
        c.read(&record("requests", 0, 1_000), 1_000);
        c.looked(&ends(2_000, &[("requests", 1, 1)]));
        assert_eq!(c.now(2_500), 2_000);
        // The reader stops for 60 s (no look either): the clock stays at what it knew.
        assert_eq!(c.now(62_500), 2_000);
        // But never more than the hold behind the wall clock.
        assert_eq!(c.now(150_000), 50_000);
    }

    #[test]
    fn record_times_stay_within_the_hold_and_never_pass_the_wall_clock() {
        let mut c = InputClock::new(HOLD);
        // A producer's clock ahead: its record counts as read now.
        assert_eq!(c.read(&record("requests", 0, 900_000), 500_000), 500_000);
        // One far behind: no older than the hold.
        assert_eq!(c.read(&record("requests", 1, 1_000), 500_000), 400_000);
        // None: the wall clock.
        let mut m = record("labels", 0, 0);
        m.timestamp_ms = None;
        assert_eq!(c.read(&m, 500_000), 500_000);
    }

    #[test]
    fn revoked_partitions_stop_counting_and_new_ones_start() {
        let mut c = InputClock::new(HOLD);
        c.read(&record("requests", 0, 10_000), 10_000);
        c.read(&record("labels", 0, 5_000), 10_000);
        c.looked(&ends(11_000, &[("requests", 1, 1), ("labels", 1, 9)]));
        assert_eq!(c.now(12_000), 5_000);
        // The lagging labels partition is revoked: only the requests count.
        c.looked(&ends(20_000, &[("requests", 1, 1)]));
        assert_eq!(c.now(21_000), 20_000);
        // One assigned since the last look: others may have come with it, the floor until a
        // look lists what is owned.
        c.read(&record("labels", 50, 15_000), 21_000);
        assert_eq!(c.now(22_000), 22_000 - 100_000);
        // Listed, read behind: it holds the clock.
        c.looked(&ends(21_500, &[("requests", 1, 1), ("labels", 51, 90)]));
        assert_eq!(c.now(22_000), 15_000);
        // A partition owned but not read yet, with records waiting: the hold's floor.
        c.looked(&ends(30_000, &[("requests", 1, 1), ("dlq", 0, 7)]));
        assert_eq!(c.now(140_000), 40_000);
        // None owned (a rebalance under way): nothing is known read, the floor again.
        c.looked(&ends(150_000, &[]));
        assert_eq!(c.now(151_000), 51_000);
    }

    #[test]
    fn a_partition_the_last_look_did_not_list_holds_the_clock_until_a_look_lists_it() {
        let mut c = InputClock::new(HOLD);
        c.read(&record("requests", 0, 10_000), 10_000);
        c.looked(&ends(11_000, &[("requests", 1, 1)]));
        assert_eq!(c.now(12_000), 11_000);
        // The assignment changed: a labels partition came; others may have come with it.
        c.read(&record("labels", 0, 11_500), 12_000);
        assert_eq!(c.now(120_000), 20_000, "the floor");
        // A look that began before the read does not list it either.
        c.looked(&ends(11_900, &[("requests", 1, 1)]));
        assert_eq!(c.now(120_000), 20_000);
        // One that lists what is owned now.
        c.looked(&ends(13_000, &[("requests", 1, 1), ("labels", 1, 1)]));
        assert_eq!(c.now(120_000), 20_000, "the floor, still: 13 s is older");
        assert_eq!(c.now(14_000), 13_000);
    }

    #[test]
    fn records_delivered_but_not_yet_joined_are_not_read() {
        let mut c = InputClock::new(HOLD);
        let mut look = ends(50_000, &[("requests", 40, 40)]);
        // The consumer's position is past records it delivered that the join has not read yet.
        look.partitions[0].delivered = true;
        c.looked(&look);
        assert_eq!(c.now(60_000), 60_000 - 100_000, "not caught up: the floor");
        // The join read them: caught up at the next look.
        c.read(&record("requests", 39, 49_000), 61_000);
        look.at_ms = 62_000;
        c.looked(&look);
        assert_eq!(c.now(63_000), 62_000);
        // Before anything was delivered, the committed offset counts.
        let mut fresh = InputClock::new(HOLD);
        fresh.looked(&ends(70_000, &[("labels", 12, 12)]));
        assert_eq!(fresh.now(71_000), 70_000);
    }
}
