//! The rows file's retention across a crash: a retrainer SIGKILLed in the middle of compacting
//! its rows file (the copy half written) and restarted keeps every row within its retention:
//! per partition, the rows kept are the newest labeled requests, with no hole and none twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use census_stream::retrainer::RowLog;

use crate::harness::{self, scenario_settings, stream, wait_for_lag_zero, wait_until, Broker};

/// Rows the retrainer keeps; it compacts once it holds 100 more (the retention's slack).
const KEEP: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retrainer_killed_mid_compaction_keeps_every_retained_row_once() {
    let broker = Broker::from_env();
    let work = harness::work_dir("retention");
    let store = work.as_path().join("store");
    harness::store_copy(&store);
    let s = scenario_settings(&broker, 3).await;
    let group = &format!("{}-retrainer", s.topics.requests);
    let rows_file = store.join("rows.jsonl");
    let mut args = harness::retrainer_flags(&s, group, "c1", &store, &rows_file);
    args.extend([
        format!("--rows-keep={KEEP}"),
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
    // Killed in the middle of its third compaction, when most of the rows it keeps come from
    // batches committed long before.
    let mut r = retrainer(Some("rows_mid_compaction:3"));
    let sending = stream(&s, 2000, 500.0, Duration::from_millis(1));
    tokio::task::block_in_place(|| wait_until("the kill mid-compaction", 60, || r.exited()));
    assert!(
        r.log().contains("fault point rows_mid_compaction"),
        "{}",
        r.log()
    );
    // What the kill left: the file as it was before the compaction, whole (the copy was half
    // written beside it). Per partition its rows run without a hole.
    let left = RowLog::open(&rows_file).expect("the rows file reopens");
    assert!(
        left.len() >= KEEP + 100,
        "{} rows left by a kill while compacting past {} rows",
        left.len(),
        KEEP + 100
    );
    let left_keys: BTreeSet<(i32, i64)> = left
        .rows()
        .iter()
        .map(|r| (r.partition, r.offset))
        .collect();
    assert_no_hole(&harness::labeled_requests(&s).await, &left_keys, false);
    drop(left);
    let mut r = retrainer(None);
    sending.await.unwrap();
    if let Err(e) = wait_for_lag_zero(&s, group, 60).await {
        panic!("{e}; the retrainer's log:\n{}", r.log());
    }
    r.sigterm_and_wait();
    assert!(
        r.log().contains("rows file compacted"),
        "compacted after the restart: {}",
        r.log()
    );

    let labeled = harness::labeled_requests(&s).await;
    let log = RowLog::open(&rows_file).expect("the rows file reopens");
    let kept: Vec<(i32, i64)> = log.rows().iter().map(|r| (r.partition, r.offset)).collect();
    let unique: BTreeSet<(i32, i64)> = kept.iter().copied().collect();
    assert_eq!(kept.len(), unique.len(), "a row kept twice");
    assert!(
        (KEEP..KEEP + 100 + 500).contains(&kept.len()),
        "{} rows kept for a retention of {KEEP}",
        kept.len()
    );
    // Each partition's rows kept are its newest labeled requests: a suffix, without a hole.
    assert_no_hole(&labeled, &unique, true);
    eprintln!(
        "fault suite | retrainer SIGKILL mid-compaction: labeled rows {}, retention {KEEP}, \
         kept {}, lost within the retention 0, kept twice 0",
        labeled.len(),
        kept.len()
    );
}

/// Per partition, `kept` is a run of consecutive labeled requests (by offset), without a hole,
/// and, when `to_the_end`, the run (if any) ends at the partition's last labeled request.
fn assert_no_hole(labeled: &BTreeSet<(i32, i64)>, kept: &BTreeSet<(i32, i64)>, to_the_end: bool) {
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for &(p, o) in labeled {
        per_partition.entry(p).or_default().push(o);
    }
    for (p, offsets) in &per_partition {
        let mine: Vec<i64> = kept.iter().filter(|k| k.0 == *p).map(|k| k.1).collect();
        // A partition read early may have all its rows among the oldest, dropped.
        let Some(first) = mine.first() else {
            continue;
        };
        let start = offsets
            .iter()
            .position(|o| o == first)
            .expect("a labeled request");
        let run = &offsets[start..(start + mine.len()).min(offsets.len())];
        assert_eq!(mine, run, "partition {p}: a hole in the rows kept");
        if to_the_end {
            assert_eq!(
                mine.last(),
                offsets.last(),
                "partition {p}: its newest rows kept"
            );
        }
    }
}
