//! The fault suite: the real binaries as child processes on a real Kafka broker, killed with
//! SIGKILL at named points and at random moments, the broker itself killed and restarted, group
//! members added and killed under load. The oracle reads every topic to its end: every request
//! has a prediction or a dead letter, a commit never passes an unanswered request, duplicates
//! stay within kills × max batch, the group ends at lag 0. Each scenario prints its figures.
//!
//! Run by `scripts/test.sh` on its real broker and its cluster of three (`cargo test --release
//! --test faults`), one scenario at a time: they kill processes and brokers.

mod cluster;
mod control;
mod harness;
mod join;
mod retention;
mod stuck;

use std::time::{Duration, Instant};

use harness::{
    committed, first_after, now_ms, oracle, predictor, predictor_with, report, scenario_settings,
    stream, wait_for_lag_zero, wait_until, Broker, DEFAULT_IDENTITY,
};

/// The predictor's default batch bound and batches in flight: duplicates after a kill are at
/// most the batches in flight (answered, not yet committed).
const MAX_BATCH: usize = 1024;
const IN_FLIGHT: usize = census_stream::defaults::PREDICTOR_IN_FLIGHT.get();

/// Records of the random-kill scenario.
const RANDOM_RECORDS: usize = 30_000;

/// The predictor's delivery guarantee in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AtLeastOnce,
    ExactlyOnce,
}

impl Mode {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Mode::AtLeastOnce => &[],
            Mode::ExactlyOnce => &["--exactly-once"],
        }
    }

    /// Most duplicates `kills` may leave: the batches in flight at each, or none in
    /// transactions.
    fn duplicates_bound(self, kills: usize) -> usize {
        match self {
            Mode::AtLeastOnce => kills * IN_FLIGHT * MAX_BATCH,
            Mode::ExactlyOnce => 0,
        }
    }

    fn label(self, scenario: &str) -> String {
        match self {
            Mode::AtLeastOnce => scenario.to_owned(),
            Mode::ExactlyOnce => format!("exactly-once: {scenario}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictor_killed_at_each_named_point_and_restarted_at_once_loses_nothing() {
    named_points(Mode::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_exactly_once_mode_a_predictor_killed_at_each_named_point_answers_each_request_once() {
    named_points(Mode::ExactlyOnce).await;
}

async fn named_points(mode: Mode) {
    let broker = Broker::from_env();
    let work = harness::work_dir(&mode.label("named-points").replace(": ", "-"));
    for point in [
        "after_fetch",
        "after_step",
        "mid_delivery",
        "after_acks",
        "after_store",
    ] {
        let s = scenario_settings(&broker, 3).await;
        let group = format!("{}-{point}", s.topics.requests);
        let fault = format!("{point}:30");
        let mut first = predictor_with(&s, &work, &group, "p1", Some(&fault), mode.flags());
        let sending = stream(&s, 4000, 1000.0, Duration::from_secs(60));
        // The predictor kills itself at the point, on its 30th batch.
        tokio::task::block_in_place(|| {
            wait_until(&format!("the kill at {point}"), 60, || first.exited())
        });
        let killed_ms = now_ms();
        let killed_at = Instant::now();
        let at_kill = committed(&s, &group).await;
        let mut second = predictor_with(&s, &work, &group, "p1", None, mode.flags());
        let summary = sending.await.unwrap();
        wait_for_lag_zero(&s, &group, 60).await.unwrap();
        second.sigterm_and_wait();

        let v = oracle(&s).await;
        let recovered =
            first_after(&v, killed_ms).map(|t| Duration::from_millis((t - killed_ms) as u64));
        let recovery = recovered.expect("predictions after the kill");
        report(
            &mode.label(&format!("predictor SIGKILL {point}")),
            &v,
            1,
            &[recovery],
        );
        assert!(
            first.log().contains(&format!("fault point {point}")),
            "{}",
            first.log()
        );
        assert_eq!(v.requests, 4000);
        assert!(
            v.lost.is_empty(),
            "{point}: lost {:?}",
            &v.lost[..v.lost.len().min(5)]
        );
        assert!(
            v.duplicates <= mode.duplicates_bound(1),
            "{point}: {} duplicates",
            v.duplicates
        );
        assert!(
            v.unanswered_below(&at_kill).is_empty(),
            "{point}: committed past unanswered requests: {:?}",
            v.unanswered_below(&at_kill)
        );
        assert!(summary.missing.is_empty());
        assert!(
            recovery < Duration::from_secs(5),
            "{point}: predictions resumed {recovery:?} after the kill ({:?} after the restart)",
            killed_at.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictor_killed_at_random_moments_and_restarted_without_an_instance_id_loses_nothing() {
    random_kills(Mode::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_exactly_once_mode_a_predictor_killed_at_random_moments_and_restarted_answers_each_request_once(
) {
    random_kills(Mode::ExactlyOnce).await;
}

async fn random_kills(mode: Mode) {
    let broker = Broker::from_env();
    let work = harness::work_dir(&mode.label("random").replace(": ", "-"));
    let s = scenario_settings(&broker, 6).await;
    let group = &format!("{}-group", s.topics.requests);
    // Started as README starts it, without --instance-id: restarted on the same host, it takes
    // the same name, and its partitions back at once.
    let start = || predictor_with(&s, &work, group, DEFAULT_IDENTITY, None, mode.flags());
    let mut current = start();
    // 15 s of stream: the four kills land within the first 11.5 s, each followed by traffic.
    let sending = stream(&s, RANDOM_RECORDS, 2000.0, Duration::from_secs(60));
    let mut kills = Vec::new();
    let mut unanswered_committed = Vec::new();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..4 {
        let pause = Duration::from_millis(800 + rand::random::<u64>() % 1700);
        tokio::time::sleep(pause).await;
        assert!(
            !sending.is_finished(),
            "each kill lands while the stream runs"
        );
        current.sigkill();
        kills.push(now_ms());
        let at_kill = committed(&s, group).await;
        current = start();
        unanswered_committed.push(at_kill);
    }
    let summary = sending.await.unwrap();
    wait_for_lag_zero(&s, group, 60).await.unwrap();
    current.sigterm_and_wait();

    let v = oracle(&s).await;
    let recovery: Vec<Duration> = kills
        .iter()
        .map(|&k| {
            let t = first_after(&v, k).expect("predictions after each kill");
            Duration::from_millis((t - k) as u64)
        })
        .collect();
    report(
        &mode.label("predictor SIGKILL at random moments, no --instance-id"),
        &v,
        kills.len(),
        &recovery,
    );
    assert_eq!(v.requests, RANDOM_RECORDS);
    assert!(
        v.lost.is_empty(),
        "lost {:?}",
        &v.lost[..v.lost.len().min(5)]
    );
    assert!(
        v.duplicates <= mode.duplicates_bound(kills.len()),
        "{} duplicates",
        v.duplicates
    );
    for at_kill in &unanswered_committed {
        assert!(v.unanswered_below(at_kill).is_empty());
    }
    assert!(summary.missing.is_empty());
    for r in &recovery {
        assert!(*r < Duration::from_secs(5), "recovery {recovery:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_and_restarted_on_its_data_loses_nothing() {
    broker_restart(Mode::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_exactly_once_mode_the_broker_killed_and_restarted_answers_each_request_once() {
    broker_restart(Mode::ExactlyOnce).await;
}

async fn broker_restart(mode: Mode) {
    let broker = Broker::from_env();
    let work = harness::work_dir(&mode.label("broker").replace(": ", "-"));
    let s = scenario_settings(&broker, 3).await;
    let group = &format!("{}-group", s.topics.requests);
    let mut p = predictor_with(&s, &work, group, "p1", None, mode.flags());
    let sending = stream(&s, 10_000, 1000.0, Duration::from_secs(120));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down = Instant::now();
    tokio::task::block_in_place(|| broker.kill());
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| broker.start());
    let back_ms = now_ms();
    eprintln!("broker down for {:.1} s", down.elapsed().as_secs_f64());
    // A static member whose session expired while the broker was down may be fenced: the
    // predictor then ends with an error instead of hanging, and its supervisor (this loop)
    // restarts it at once.
    let mut restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if p.exited() {
            assert!(p.log().contains("fatal error"), "{}", p.log());
            p = predictor_with(&s, &work, group, "p1", None, mode.flags());
            restarts += 1;
        }
        if sending.is_finished() && harness::lag(&s, group).await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag left; the predictor's log:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let summary = sending.await.unwrap();
    eprintln!("predictor restarts after the outage: {restarts}");
    p.sigterm_and_wait();

    let v = oracle(&s).await;
    let recovery = first_after(&v, back_ms)
        .map(|t| Duration::from_millis((t - back_ms).max(0) as u64))
        .expect("predictions after the broker came back");
    report(
        &mode.label("broker SIGKILL and restart"),
        &v,
        1,
        &[recovery],
    );
    assert_eq!(v.requests, 10_000);
    assert!(
        v.lost.is_empty(),
        "lost {:?}",
        &v.lost[..v.lost.len().min(5)]
    );
    assert!(
        v.duplicates <= mode.duplicates_bound(1),
        "{} duplicates",
        v.duplicates
    );
    assert!(summary.missing.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictors_added_and_one_killed_for_good_under_load_lose_nothing() {
    let broker = Broker::from_env();
    let work = harness::work_dir("members");
    let s = scenario_settings(&broker, 6).await;
    let group = &format!("{}-group", s.topics.requests);
    let mut a = predictor(&s, work.as_path(), group, "a", None);
    let mut b = predictor(&s, work.as_path(), group, "b", None);
    let sending = stream(&s, 24_000, 1500.0, Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut c = predictor(&s, work.as_path(), group, "c", None);
    tokio::time::sleep(Duration::from_secs(4)).await;
    b.sigkill();
    let killed_ms = now_ms();
    let at_kill = committed(&s, group).await;
    let summary = sending.await.unwrap();
    wait_for_lag_zero(&s, group, 60).await.unwrap();
    a.sigterm_and_wait();
    c.sigterm_and_wait();

    let v = oracle(&s).await;
    // The dead member's partitions go to the others when its session times out: the longest
    // silence of any partition after the kill says how long that took.
    let recovery = partition_silence_after(&v, killed_ms);
    report(
        "predictor added, then one SIGKILLed for good",
        &v,
        1,
        &[recovery],
    );
    assert_eq!(v.requests, 24_000);
    assert!(
        v.lost.is_empty(),
        "lost {:?}",
        &v.lost[..v.lost.len().min(5)]
    );
    assert!(v.duplicates <= Mode::AtLeastOnce.duplicates_bound(1));
    assert!(v.unanswered_below(&at_kill).is_empty());
    assert!(summary.missing.is_empty());
    let bound = census_stream::defaults::SESSION_TIMEOUT + Duration::from_secs(5);
    assert!(recovery < bound, "the others took over after {recovery:?}");
}

/// The longest a request waited for its prediction among those sent after `after_ms`: with
/// a dead member, its partitions' requests wait until the group gives them to the others.
fn partition_silence_after(v: &harness::Verdict, after_ms: i64) -> Duration {
    let worst = v
        .waits_ms()
        .filter(|&(sent, _)| sent > after_ms)
        .map(|(_, wait)| wait)
        .max()
        .unwrap_or(0);
    Duration::from_millis(worst.max(0) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retrainer_killed_mid_write_and_mid_search_keeps_each_row_once() {
    use census_stream::model::Scoring;
    use census_stream::registry::{load_bundle, read_registry, Alias};
    use census_stream::retrainer::RowLog;

    let broker = Broker::from_env();
    let work = harness::work_dir("retrainer");
    let store = work.as_path().join("store");
    harness::store_copy(&store);
    let s = scenario_settings(&broker, 3).await;
    let group = &format!("{}-retrainer", s.topics.requests);
    let rows_file = store.join("rows.jsonl");
    let mut args = harness::retrainer_flags(&s, group, "r1", &store, &rows_file);
    args.extend([
        "--retrain-every=400".to_owned(),
        "--max-evals=2".to_owned(),
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
    let mut kills = 0;
    // Killed in the middle of its third write to the rows file: a torn line.
    let mut r = retrainer(Some("rows_mid_write:3"));
    let sending = stream(&s, 1500, 500.0, Duration::from_millis(1));
    tokio::task::block_in_place(|| wait_until("the kill mid-write", 60, || r.exited()));
    assert!(
        r.log().contains("fault point rows_mid_write"),
        "{}",
        r.log()
    );
    kills += 1;
    let mut r = retrainer(None);
    // Killed in the middle of a search.
    tokio::task::block_in_place(|| {
        wait_until("a search", 120, || r.log().contains("retraining after v"))
    });
    r.sigkill();
    kills += 1;
    // Restarted after the stream ended: with every row stored already, a retrain must start
    // with no new record to prompt it.
    sending.await.unwrap();
    let mut r = retrainer(None);
    let expected = harness::labeled_requests(&s).await;
    let lines = || std::fs::read_to_string(&rows_file).map_or(0, |t| t.lines().count());
    let deadline = Instant::now() + Duration::from_secs(180);
    while lines() < expected.len() || !r.log().contains("stored and published") {
        assert!(
            Instant::now() < deadline,
            "{} of {} rows stored; the retrainer's log:\n{}",
            lines(),
            expected.len(),
            r.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Err(e) = wait_for_lag_zero(&s, group, 60).await {
        panic!("{e}; the retrainer's log:\n{}", r.log());
    }
    r.sigterm_and_wait();

    // The rows file reopens and holds each labeled request once.
    let log = RowLog::open(&rows_file).expect("the rows file reopens");
    let stored: Vec<(i32, i64)> = log.rows().iter().map(|r| (r.partition, r.offset)).collect();
    let unique: std::collections::BTreeSet<_> = stored.iter().copied().collect();
    assert_eq!(stored.len(), unique.len(), "a row stored twice");
    assert_eq!(
        unique, expected,
        "the rows file holds exactly the labeled requests"
    );
    // Versions only increase on the topic, and its champion is a complete bundle.
    let records = harness::read_registry_records(&s).await;
    let versions: Vec<u32> = records
        .iter()
        .filter_map(|(k, _)| k.strip_prefix("bundle/v")?.parse().ok())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let registry = read_registry(&s).await.unwrap();
    let champion = registry.version_of(Alias::Champion).expect("a champion");
    let payload = registry.bundle(champion).expect("the champion's bundle");
    // Strictly, as the services the suite starts load it (the test script sets the variable).
    let strict = std::env::var("CENSUS_SCORER_STRICT").is_ok_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "" | "0" | "n" | "no" | "f" | "false" | "off"
        )
    });
    load_bundle(champion, payload, Scoring::strict(strict)).expect("the champion loads");
    eprintln!(
        "fault suite | retrainer SIGKILL mid-write and mid-search: labeled rows {}, kills {kills}, \
         lost 0, stored twice 0, versions {versions:?}, champion v{champion}",
        expected.len()
    );
}
