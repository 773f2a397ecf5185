//! What the label join costs the retrainer: its own code path (`LabelJoin`: decoding, the join,
//! the fsynced journal) fed 1,000,000 requests at 1,000 a second of stream time, half of them
//! labelled 60 s after their request (the labels topic read in the same batches, as the
//! retrainer reads both topics), on a simulated clock so that the 900 s window's expiries
//! happen. Prints the records joined a second of wall time, the state's peak (requests waiting,
//! labels waiting), the journal's size and the process's peak RSS.
//!
//!   cargo bench --bench join             (1,000,000 requests)
//!   cargo bench --bench join -- --short  (100,000)

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use census_stream::kafka::InMessage;
use census_stream::retrainer::LabelJoin;
use census_stream::util::peak_memory::peak_rss_bytes;

const RATE: i64 = 1_000;
const LABEL_DELAY_MS: i64 = 60_000;
const BATCH: usize = 1_024;
const WINDOW: Duration = Duration::from_secs(900);

fn request(i: usize, row: &serde_json::Value) -> InMessage {
    let id = format!("bench-{i:07}");
    let payload = serde_json::json!({
        "request_id": id,
        "sent_at_ms": 0,
        "record": row,
    });
    InMessage {
        topic: "census.requests".into(),
        partition: (i % 6) as i32,
        offset: (i / 6) as i64,
        key: Some(id.into_bytes()),
        payload: Some(serde_json::to_vec(&payload).expect("json")),
        timestamp_ms: None,
    }
}

fn label(i: usize, n: usize) -> InMessage {
    let id = format!("bench-{i:07}");
    let truth = if i.is_multiple_of(4) { ">50K" } else { "<=50K" };
    let payload = serde_json::json!({
        "request_id": id,
        "income_bracket": truth,
        "labeled_at_ms": 0,
    });
    InMessage {
        topic: "census.labels".into(),
        partition: (i % 6) as i32,
        offset: (n / 6) as i64,
        key: Some(id.into_bytes()),
        payload: Some(serde_json::to_vec(&payload).expect("json")),
        timestamp_ms: None,
    }
}

fn main() {
    let short = std::env::args().any(|a| a == "--short");
    let total: usize = if short { 100_000 } else { 1_000_000 };
    let row = serde_json::json!({
        "age": 39.0, "workclass": "State-gov", "fnlwgt": 77516.0, "education": "Bachelors",
        "education_num": 13.0, "marital_status": "Never-married", "occupation": "Adm-clerical",
        "relationship": "Not-in-family", "race": "White", "sex": "Male", "capital_gain": 2174.0,
        "capital_loss": 0.0, "hours_per_week": 40.0, "native_country": "United-States"
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("label_join.jsonl");
    let mut join = LabelJoin::open(&path, "census.labels", WINDOW).expect("opens");
    // Labels due: (stream time, request number).
    let mut due: VecDeque<(i64, usize)> = VecDeque::new();
    let (mut labels_sent, mut rows, mut records) = (0usize, 0usize, 0usize);
    let (mut peak_requests, mut peak_labels) = (0usize, 0usize);
    let mut journal_peak = 0u64;
    let started = Instant::now();
    let mut i = 0;
    while i < total || !due.is_empty() {
        let now = (i as i64) * 1000 / RATE;
        // The batch's clock: the stream time of its last record.
        let mut clock = now;
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            match due.front() {
                Some(&(at, k)) if at <= now || i >= total => {
                    due.pop_front();
                    clock = clock.max(at);
                    batch.push(label(k, labels_sent));
                    labels_sent += 1;
                }
                _ if i < total => {
                    batch.push(request(i, &row));
                    if i % 2 == 0 {
                        due.push_back((now + LABEL_DELAY_MS, i));
                    }
                    i += 1;
                }
                _ => break,
            }
        }
        let joined = join.join(&batch, clock);
        join.persist().expect("journal");
        rows += joined.rows.len();
        records += batch.len();
        let (r, l) = join.pending();
        peak_requests = peak_requests.max(r);
        peak_labels = peak_labels.max(l);
        journal_peak = journal_peak.max(std::fs::metadata(&path).map_or(0, |m| m.len()));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counts = join.counts();
    println!(
        "{total} requests at {RATE}/s of stream time, {labels_sent} labels {} s late, window {} s, \
         batches of {BATCH}",
        LABEL_DELAY_MS / 1000,
        WINDOW.as_secs()
    );
    println!(
        "joined {rows} rows ({} matched, {} requests expired unlabelled) from {records} records \
         in {elapsed:.1} s: {:.0} records/s",
        counts.matched,
        counts.expired_requests,
        records as f64 / elapsed
    );
    println!(
        "state at its peak: {peak_requests} requests waiting, {peak_labels} labels waiting; \
         journal at most {:.1} MB",
        journal_peak as f64 / 1e6
    );
    println!(
        "peak RSS {:.0} MB",
        peak_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
    );
    assert_eq!(rows, total / 2, "every labelled request joined once");
}
