//! The labels join across real crashes: a retrainer process joining requests to labels that
//! come late and for part of the requests, SIGKILLed in the middle of a journal write and again
//! at a moment of the run, then restarted; it keeps exactly the labelled requests, each once,
//! each with its own label.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use census_stream::producer::{LabelPlan, Spread};
use census_stream::retrainer::RowLog;

use crate::harness::{self, scenario_settings, wait_for_lag_zero, wait_until, Broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retrainer_killed_mid_join_keeps_each_labelled_request_once() {
    let broker = Broker::from_env();
    let work = harness::work_dir("join");
    let store = work.as_path().join("store");
    harness::store_copy(&store);
    let s = scenario_settings(&broker, 3).await;
    let group = &format!("{}-retrainer", s.topics.requests);
    let rows_file = store.join("rows.jsonl");
    let mut args = harness::retrainer_flags(&s, group, "j1", &store, &rows_file);
    args.extend([
        // Retrains stay out of the way: the join is what is under test.
        "--retrain-every=100000".to_owned(),
        "--threads=1".to_owned(),
    ]);
    let retrainer = |fault: Option<&str>| {
        harness::spawn(
            env!("CARGO_BIN_EXE_retrainer"),
            &args,
            work.as_path(),
            "retrainer",
            fault,
        )
    };
    let plan = LabelPlan {
        delay: Duration::from_secs(3),
        spread: Spread::Uniform,
        fraction: 0.7,
        seed: 29,
    };
    let mut kills = 0;
    // Killed in the middle of its fifth journal write: a torn line in the join's journal.
    let mut r = retrainer(Some("join_mid_write:5"));
    let sending = harness::stream_labelled(&s, 3000, 300.0, Duration::from_millis(1), Some(plan));
    tokio::task::block_in_place(|| wait_until("the kill mid-write", 60, || r.exited()));
    assert!(
        r.log().contains("fault point join_mid_write"),
        "{}",
        r.log()
    );
    kills += 1;
    // Killed again while requests wait for their labels and labels wait for their requests.
    let mut r = retrainer(None);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!r.exited(), "{}", r.log());
    r.sigkill();
    kills += 1;
    let mut r = retrainer(None);
    let summary = sending.await.unwrap();
    let sent = summary.labels.expect("labels sent apart");
    assert_eq!(sent.unsent, 0, "{sent:?}");

    let expected = harness::labelled_apart(&s).await;
    assert_eq!(expected.len(), sent.sent, "one label per labelled request");
    let stored = || RowLog::open(&rows_file).map_or(0, |l| l.rows().len());
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} labelled rows stored; the retrainer's log:\n{}",
            stored(),
            expected.len(),
            r.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Err(e) = wait_for_lag_zero(&s, group, 60).await {
        panic!("{e}; the retrainer's log:\n{}", r.log());
    }
    // A moment more: a row stored twice would show now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.sigterm_and_wait();

    let log = RowLog::open(&rows_file).expect("the rows file reopens");
    let kept: Vec<((i32, i64), bool)> = log
        .rows()
        .iter()
        .map(|r| ((r.partition, r.offset), r.label))
        .collect();
    let unique: BTreeSet<(i32, i64)> = kept.iter().map(|k| k.0).collect();
    assert_eq!(kept.len(), unique.len(), "a request kept twice");
    let lost = expected.keys().filter(|k| !unique.contains(k)).count();
    let wrong = kept
        .iter()
        .filter(|(at, label)| expected.get(at) != Some(label))
        .count();
    eprintln!(
        "fault suite | retrainer SIGKILL mid-join: requests 3000, labelled {}, kills {kills}, \
         kept {}, lost {lost}, kept twice 0, kept wrongly {wrong}",
        expected.len(),
        kept.len()
    );
    assert_eq!(
        (lost, wrong),
        (0, 0),
        "exactly the labelled requests, each with its own label"
    );
    let dead = harness::dead_letters(&s).await;
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
}
