//! Requests joined to their labels by `request_id`, within a window: labels may come late,
//! before their request, for some requests only, or twice. A label that cannot be used is a
//! dead letter with its reason (`unmatched_label`, `duplicate_label`), never matched wrongly.
//! The state is bounded by the window ([`Join`]) and durable ([`Journal`]).

mod journal;
mod state;

pub use journal::{Journal, JournalError};
pub use state::{DeadLabel, Join, JoinCounts, Joined, LabelFault, LabelIn, Op, Outcome, Position};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const WINDOW: Duration = Duration::from_secs(10);

    fn at(topic: &str, offset: i64) -> Position {
        Position {
            topic: topic.into(),
            partition: 0,
            offset,
        }
    }

    fn label(offset: i64, truth: bool) -> LabelIn {
        LabelIn {
            position: at("labels", offset),
            label: truth,
            labeled_at_ms: 0,
            key: None,
            payload: b"{}".to_vec(),
        }
    }

    fn matched<R: Clone>(o: Outcome<R>) -> Joined<R> {
        match o {
            Outcome::Matched(j) => j,
            other => panic!("not matched: {:?}", std::mem::discriminant(&other)),
        }
    }

    #[test]
    fn a_late_label_and_an_early_one_both_match_their_request() {
        let mut j = Join::new(WINDOW);
        assert_eq!(j.request("a", at("req", 1), 'a', None, 0), Outcome::Held);
        let a = matched(j.label("a", label(7, true), 5_000));
        assert_eq!((a.value, a.label, a.request.offset), ('a', true, 1));
        assert_eq!(a.completed_by, at("labels", 7));

        assert_eq!(j.label("b", label(8, false), 5_000), Outcome::Held);
        let b = matched(j.request("b", at("req", 2), 'b', None, 6_000));
        assert_eq!((b.value, b.label), ('b', false));
        assert_eq!(b.completed_by, at("req", 2));
        assert_eq!(j.counts().matched, 2);
        assert!(j.take_dead().is_empty());
        assert_eq!((j.pending_requests(), j.pending_labels()), (0, 0));
    }

    #[test]
    fn unknown_expired_and_duplicate_labels_are_dead_with_their_reasons() {
        let mut j = Join::new(WINDOW);
        j.request("a", at("req", 1), (), None, 0);
        matched(j.label("a", label(1, true), 1_000));
        // The same label read again is a replay; another one is a duplicate.
        assert_eq!(j.label("a", label(1, true), 1_500), Outcome::Replayed);
        assert_eq!(j.label("a", label(2, false), 2_000), Outcome::Refused);
        // A request labelled inline, then labelled apart.
        matched(j.request("i", at("req", 2), (), Some(true), 2_000));
        assert_eq!(j.label("i", label(3, true), 2_500), Outcome::Refused);
        // A label for a request never seen waits one window, then is dead.
        assert_eq!(j.label("ghost", label(4, true), 3_000), Outcome::Held);
        // A request that waits past the window expires; its label is then dead at once.
        j.request("late", at("req", 3), (), None, 3_000);
        assert_eq!(j.expire(12_999), 0);
        assert_eq!(j.expire(13_000), 1);
        assert_eq!(j.label("late", label(5, true), 13_500), Outcome::Refused);
        let dead: Vec<(String, &str, bool)> = j
            .take_dead()
            .into_iter()
            .map(|d| (d.request_id, d.fault.as_str(), d.was_held))
            .collect();
        assert_eq!(
            dead,
            [
                ("a".to_owned(), "duplicate_label", false),
                ("i".to_owned(), "duplicate_label", false),
                ("ghost".to_owned(), "unmatched_label", true),
                ("late".to_owned(), "unmatched_label", false),
            ]
        );
        let c = j.counts();
        assert_eq!(
            (c.matched, c.duplicate_labels, c.unmatched_labels),
            (2, 2, 2)
        );
        assert_eq!((c.expired_requests, c.replayed), (1, 1));
    }

    #[test]
    fn the_state_is_bounded_by_the_window() {
        let mut j = Join::new(WINDOW);
        for i in 0..1000 {
            let id = format!("r{i}");
            j.request(&id, at("req", i), (), None, i);
            if i % 2 == 0 {
                j.label(&id, label(i, true), i);
            }
        }
        assert_eq!((j.pending_requests(), j.counts().matched), (500, 500));
        // One window: the unlabelled expire (remembered one more window), the matched go.
        j.expire(10_999);
        assert_eq!(j.counts().expired_requests, 500);
        j.expire(30_000);
        assert!(j.is_empty(), "{} entries left", j.len());
    }

    #[test]
    fn a_request_id_reused_by_another_request_keeps_the_first() {
        let mut j = Join::new(WINDOW);
        j.request("a", at("req", 1), 1, None, 0);
        assert_eq!(j.request("a", at("req", 1), 1, None, 1), Outcome::Replayed);
        assert_eq!(j.request("a", at("req", 9), 2, None, 2), Outcome::Refused);
        // One that carries its own label is joined on its own; the first still waits.
        assert_eq!(
            matched(j.request("a", at("req", 10), 3, Some(true), 2)).value,
            3
        );
        assert_eq!(matched(j.label("a", label(1, true), 3)).value, 1);
        assert_eq!(j.counts().duplicate_requests, 1);
    }

    fn reopen(path: &std::path::Path) -> (Journal, Join<u32>) {
        Journal::open(path, WINDOW).unwrap()
    }

    #[test]
    fn a_reopened_journal_goes_on_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("join.jsonl");
        let (mut journal, mut j) = reopen(&path);
        j.request("a", at("req", 1), 10, None, 0);
        j.request("b", at("req", 2), 20, None, 0);
        j.label("c", label(1, true), 0);
        matched(j.label("b", label(2, false), 100));
        let ops = j.take_ops();
        journal.append(&ops, &j).unwrap();

        let (_, mut j) = reopen(&path);
        assert_eq!((j.pending_requests(), j.pending_labels()), (1, 1));
        // The held request and the held label match after the restart...
        assert_eq!(matched(j.label("a", label(3, true), 200)).value, 10);
        assert_eq!(
            matched(j.request("c", at("req", 3), 30, None, 200)).value,
            30
        );
        // ...a match made before it is neither made again nor lost.
        assert_eq!(j.label("b", label(2, false), 200), Outcome::Replayed);
        assert_eq!(j.label("b", label(9, false), 200), Outcome::Refused);
    }

    #[test]
    fn a_held_label_stays_until_its_dead_letter_is_journalled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("join.jsonl");
        let (mut journal, mut j) = reopen(&path);
        j.label("ghost", label(1, true), 0);
        journal.append(&j.take_ops(), &j).unwrap();
        j.expire(60_000);
        assert_eq!(j.take_dead().len(), 1);
        // A crash before the dead letter was acknowledged: the label is dead-lettered again.
        let (mut journal, mut j) = reopen(&path);
        assert_eq!(j.pending_labels(), 1);
        j.expire(60_000);
        let dead = j.take_dead();
        assert_eq!(dead.len(), 1);
        let dropped = [Op::LabelDropped {
            id: dead[0].request_id.clone(),
        }];
        journal.append(&dropped, &j).unwrap();
        let (_, j) = reopen(&path);
        assert!(j.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_cut_and_a_rewrite_keeps_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("join.jsonl");
        let (mut journal, mut j) = reopen(&path);
        for i in 0..50 {
            j.request(&format!("r{i}"), at("req", i), i as u32, None, i);
        }
        journal.append(&j.take_ops(), &j).unwrap();
        journal.rewrite(&j).unwrap();
        assert_eq!(journal.lines(), 50);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"request\":{\"id"))
            .unwrap();
        let (journal, mut j) = reopen(&path);
        // Rewritten: the clock (as the entries' own times moved it, in a journal without one)
        // and the 50 requests.
        assert_eq!((journal.lines(), j.pending_requests()), (51, 50));
        assert_eq!(matched(j.label("r7", label(1, true), 60)).value, 7);
    }

    #[test]
    fn expiry_replays_with_the_clocks_moves_or_in_an_older_journal_with_each_entry() {
        let request = |id: &str, at_ms, offset| Op::Request {
            id: id.into(),
            at_ms,
            position: at("req", offset),
            value: (),
        };
        // Journalled clock: entries wait for its moves, whatever their own times.
        let mut j: Join<()> = Join::new(WINDOW);
        j.replay(Op::Clock { now_ms: 0 });
        j.replay(request("a", 0, 1));
        j.replay(request("b", 20_000, 2));
        assert_eq!(j.pending_requests(), 2);
        j.replay(Op::Clock { now_ms: 15_000 });
        assert_eq!(j.pending_requests(), 1, "a waited its window by the clock");
        assert_eq!(j.label("a", label(9, true), 20_500), Outcome::Refused);
        // No clock in the journal (written before it was journalled): entries were timed by
        // the clock, and each replays the expiry it saw.
        let mut old: Join<()> = Join::new(WINDOW);
        old.replay(request("a", 0, 1));
        old.replay(request("b", 20_000, 2));
        assert_eq!(old.pending_requests(), 1);
        assert_eq!(old.label("a", label(9, true), 20_500), Outcome::Refused);
    }
}
