//! A consumer left stuck with no error: a commit that never returns, partitions that are no
//! longer fetched. The at-least-once loop's watchdog ends the predictor once the broker has
//! answered for 20 s meanwhile, and its restart answers everything. (The exactly-once loop has
//! no such consumer watchdog yet; its transactions' calls are bounded instead.)

use std::time::{Duration, Instant};

use crate::harness::{self, oracle, predictor, report, scenario_settings, stream, Broker};

/// A predictor whose consumer is stuck at `fault`; the log line its end must hold.
async fn ends_and_its_restart_answers_everything(fault: &str, says: &str) {
    let broker = Broker::from_env();
    let work = harness::work_dir(&format!("stuck-{}", fault.replace(':', "-")));
    let s = scenario_settings(&broker, 2).await;
    let group = &format!("{}-group", s.topics.requests);
    let records = 5_000;
    // 50 s of requests: the watchdog needs 20 s to take the consumer for stuck, 20 s more of
    // the broker answering; the rest is answered after the restart.
    let sending = stream(&s, records, 100.0, Duration::from_secs(120));
    let mut stuck = predictor(&s, &work, group, "p", Some(fault));
    let started = Instant::now();
    tokio::task::block_in_place(|| {
        harness::wait_until("the stuck predictor to end", 75, || stuck.exited())
    });
    let ended_after = started.elapsed();
    let log = stuck.log();
    assert!(
        log.contains(&format!("fault point {}", fault.split(':').next().unwrap())),
        "{log}"
    );
    assert!(
        log.contains("fatal error: the consumer is stuck") && log.contains(says),
        "{log}"
    );
    // Its supervisor (here) starts it again.
    let _restarted = predictor(&s, &work, group, "p", None);
    let summary = sending.await.unwrap();
    assert!(
        summary.missing.is_empty(),
        "{} never answered",
        summary.missing.len()
    );
    harness::wait_for_lag_zero(&s, group, 60).await.unwrap();
    let v = oracle(&s).await;
    report(
        &format!("predictor consumer stuck ({fault}), ended by its watchdog"),
        &v,
        1,
        &[ended_after],
    );
    eprintln!("(recovery here: from the stuck predictor's start to its end)");
    assert!(v.lost.is_empty(), "lost {}", v.lost.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictor_whose_commit_never_returns_ends_and_its_restart_answers_everything() {
    ends_and_its_restart_answers_everything("in_commit:3:hang", "a commit has not returned").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictor_whose_consumer_stops_fetching_ends_and_its_restart_answers_everything() {
    ends_and_its_restart_answers_everything(
        "stop_fetching:2",
        "records wait on its partitions and none was read",
    )
    .await;
}
