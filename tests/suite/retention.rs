//! Bounded state: a retrain trains on the retained window of stream rows, and the rows file
//! holds no more than the window and its slack.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use census_stream::producer::{self, Input, ProducerConfig};
use census_stream::retrainer::{self, Event, Promotion, Retention, RetrainEvent, RowLog};
use census_stream::settings::Rate;
use tokio_util::sync::CancellationToken;

use crate::helpers::{adult_dir, own_retrainer, small_search, store_with_v1, test_kafka};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrain_trains_on_the_newest_rows_kept_and_the_file_stays_bounded() {
    let (Some(data), Some((dir, store))) = (adult_dir(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(2).await;
    let mut rconf = own_retrainer(&kafka.settings, store.clone());
    rconf.promotion = Promotion::Always;
    rconf.data_dir = adult_dir().unwrap();
    rconf.rows_file = dir.path().join("rows.jsonl");
    rconf.retrain_every = 900.try_into().unwrap();
    rconf.retention = Retention {
        keep_rows: 250,
        max_age: None,
    };
    rconf.search = small_search(2);
    let events: Arc<Mutex<Vec<RetrainEvent>>> = Arc::default();
    let seen = events.clone();
    let stop = CancellationToken::new();
    let run = tokio::spawn(retrainer::run(rconf, stop.clone(), move |e| {
        if let Event::Retrained(e) = e {
            seen.lock().unwrap().push(e.clone())
        }
    }));
    let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::Uci(data.join("adult.test")));
    prod.limit = Some(1000);
    prod.rate = Rate::new(2000.0).unwrap();
    prod.wait = Duration::from_millis(10);
    prod.show_per_sec = 0;
    producer::run(prod, CancellationToken::new()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while events.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let stats = run.await.unwrap().unwrap();
    assert_eq!(stats.versions, vec![2], "one retrain after 900 new rows");
    let m = store.read_files(2).unwrap().manifest;
    assert_eq!(
        m.training_data.stream_rows, 250,
        "trained on the newest rows kept, not on all {} stored",
        stats.rows
    );
    // The file holds the window and at most its slack (100 rows) beyond it, and the batch that
    // went over.
    let log = RowLog::open(&dir.path().join("rows.jsonl")).unwrap();
    assert!(
        (250..=250 + 100 + 1024).contains(&log.len()),
        "{} rows in the file",
        log.len()
    );
    assert!(log.len() < 1000, "compacted: {} of 1000 rows", log.len());
}
