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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_beyond_those_kept_are_retired_on_the_registry_and_in_the_store() {
    use census_stream::registry::{read_registry, Alias};

    let (Some(data), Some((dir, store))) = (adult_dir(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;
    let mut rconf = own_retrainer(s, store.clone());
    rconf.promotion = Promotion::Always;
    rconf.data_dir = adult_dir().unwrap();
    rconf.rows_file = dir.path().join("rows.jsonl");
    rconf.retrain_every = 200.try_into().unwrap();
    rconf.keep_versions = 1.try_into().unwrap();
    rconf.search = small_search(1);
    let events: Arc<Mutex<Vec<RetrainEvent>>> = Arc::default();
    let seen = events.clone();
    let stop = CancellationToken::new();
    let run = tokio::spawn(retrainer::run(rconf, stop.clone(), move |e| {
        if let Event::Retrained(e) = e {
            seen.lock().unwrap().push(e.clone())
        }
    }));
    // Four bursts of 200 rows, each waited for: four retrains, v2 to v5, each the champion.
    for n in 1..=4 {
        let mut prod = ProducerConfig::new(s.clone(), Input::Uci(data.join("adult.test")));
        prod.limit = Some(200);
        prod.rate = Rate::UNLIMITED;
        prod.wait = Duration::from_millis(10);
        prod.show_per_sec = 0;
        producer::run(prod, CancellationToken::new()).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while events.lock().unwrap().len() < n && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.cancel();
    let stats = run.await.unwrap().unwrap();
    assert_eq!(stats.versions, vec![2, 3, 4, 5]);

    // The champion (the newest) and the one before it stay; v1 to v3 are retired.
    let registry = read_registry(s).await.unwrap();
    assert_eq!(registry.version_of(Alias::Champion), Some(5));
    let live: Vec<u32> = registry.versions().collect();
    assert_eq!(live, [4, 5], "versions with a bundle on the topic");
    for v in 1..=3 {
        assert!(
            registry.is_retired(v) && registry.bundle(v).is_none(),
            "v{v}"
        );
    }
    assert_eq!(registry.highest(), Some(5));
    assert_eq!(
        store.versions().unwrap(),
        [4, 5],
        "the local store pruned too"
    );
    assert_eq!(store.current().unwrap(), Some(5));
    assert!(
        store.highest_used().unwrap() >= 5,
        "numbers of retired versions are not reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_reads_the_stream_from_since_and_the_registry_whole() {
    use rdkafka::producer::FutureRecord;

    use crate::helpers::own_dashboard;

    let kafka = test_kafka(2).await;
    if kafka.is_embedded() {
        // librdkafka's mock cluster does not look offsets up by time: this test runs in the
        // real-broker stage of the test command.
        eprintln!("the real-broker stage runs this test: the mock cluster has no time index");
        return;
    }
    let s = &kafka.settings;
    let producer = s.producer().unwrap();
    let now = census_stream::stream::messages::now_ms();
    // Ten requests written two hours ago, four now.
    for (n, at) in (0..14).map(|n| (n, if n < 10 { now - 7_200_000 } else { now })) {
        let payload = format!(
            r#"{{"request_id":"r{n}","sent_at_ms":{at},"record":{{"age":39,"workclass":"State-gov","fnlwgt":77516,"education":"Bachelors","education_num":13,"marital_status":"Never-married","occupation":"Adm-clerical","relationship":"Not-in-family","race":"White","sex":"Male","capital_gain":0,"capital_loss":0,"hours_per_week":40,"native_country":"Peru"}}}}"#
        );
        let key = format!("r{n}");
        producer
            .send(
                FutureRecord::to(&s.topics.requests)
                    .key(&key)
                    .payload(&payload)
                    .timestamp(at),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let requests_shown = |since: Option<Duration>| {
        let mut config = own_dashboard(s, "127.0.0.1:0".parse().unwrap());
        config.since = since;
        async move {
            let stop = CancellationToken::new();
            let board = census_stream::dashboard::start(config, stop.clone())
                .await
                .unwrap();
            let url = format!("{}/state", board.url.trim_end_matches('/'));
            let read = || {
                let url = url.clone();
                async move {
                    let body = tokio::task::spawn_blocking(move || {
                        ureq::get(&url).call().unwrap().body_mut().read_to_string()
                    })
                    .await
                    .unwrap()
                    .unwrap();
                    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
                    state["totals"]["requests"].as_u64().unwrap()
                }
            };
            // Until the page shows at least the newest four, then a moment more for the rest.
            for _ in 0..50 {
                if read().await >= 4 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let shown = read().await;
            stop.cancel();
            shown
        }
    };
    assert_eq!(requests_shown(None).await, 14, "from the beginning: all");
    assert_eq!(
        requests_shown(Some(Duration::from_secs(3600))).await,
        4,
        "the last hour: the four written now"
    );
}
