//! The stream end to end: producer, predictor group, retrainer, dead letters and hot swap, on
//! the embedded broker (or on the Kafka named by `KAFKA_BROKERS`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use census_stream::predictor;
use census_stream::producer::{self, Input, ProducerConfig};
use census_stream::retrainer::{self, Event, Promotion, RetrainEvent};
use census_stream::settings::Rate;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    adult_dir, own_predictor, own_retrainer, publish_champion, small_search, store_with_v1,
    test_kafka,
};

fn adult_test() -> Option<std::path::PathBuf> {
    adult_dir().map(|d| d.join("adult.test"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_rows_all_predicted_with_a_retrain_and_swap_mid_stream() {
    let (Some(test_file), Some((dir, store))) = (adult_test(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(6).await;
    let stop = CancellationToken::new();
    let mut pconf = own_predictor(&kafka.settings);
    pconf.store = Some(store.clone());
    let predictor = tokio::spawn(predictor::run(pconf, stop.clone()));

    let events: Arc<Mutex<Vec<RetrainEvent>>> = Arc::default();
    let mut rconf = own_retrainer(&kafka.settings, store.clone());
    // Every retrain becomes the champion: this test is about the swap (the gate has its own).
    rconf.promotion = Promotion::Always;
    rconf.data_dir = adult_dir().unwrap();
    rconf.rows_file = dir.path().join("rows.jsonl");
    // The stream (10,000 rows at 500/s, 20 s) must outlast a retrain started after 1,000 rows,
    // even while the other tests of the suite train on the same 2 cores (a retrain cross-
    // validates the search's anchor, about 300 rounds, before anything else).
    rconf.retrain_every = 1000.try_into().unwrap();
    rconf.search = small_search(2);
    // One core for the search, one for the predictor: the suite runs other pipelines meanwhile.
    rconf.search.threads = 1.try_into().unwrap();
    let seen = events.clone();
    let retrainer = tokio::spawn(retrainer::run(rconf, stop.clone(), move |e| {
        if let Event::Retrained(e) = e {
            seen.lock().unwrap().push(e.clone())
        }
    }));

    let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::Uci(test_file));
    prod.limit = Some(10_000);
    prod.rate = Rate::new(500.0).unwrap();
    prod.show_per_sec = 0;
    prod.wait = Duration::from_secs(60);
    let summary = producer::run(prod, CancellationToken::new()).await.unwrap();
    stop.cancel();
    let pstats = predictor.await.unwrap().unwrap();
    let rstats = retrainer.await.unwrap().unwrap();

    assert_eq!(summary.sent, 10_000);
    assert!(
        summary.missing.is_empty(),
        "missing: {:?}",
        &summary.missing[..5.min(summary.missing.len())]
    );
    assert_eq!(summary.predicted, 10_000);
    assert_eq!(summary.dead_lettered, 0);
    assert!(pstats.predicted >= 10_000);
    assert_eq!(pstats.predicted as usize, 10_000 + summary.duplicates);

    let events = events.lock().unwrap().clone();
    assert!(!events.is_empty(), "a retrain happened");
    assert_eq!(
        rstats.versions,
        events.iter().map(|e| e.version).collect::<Vec<_>>()
    );
    let first = &events[0];
    assert_eq!(first.version, 2);
    // Predictions kept flowing while the retrainer trained.
    let during = summary
        .predictions
        .iter()
        .filter(|p| {
            p.predicted_at_ms >= first.started_at_ms && p.predicted_at_ms <= first.finished_at_ms
        })
        .count();
    assert!(
        during > 0,
        "no prediction inside the training window {first:?}"
    );
    // After the swap, predictions carry the new version: a few seconds after each retrain
    // every prediction is made with it or a newer one.
    assert!(summary
        .predictions
        .iter()
        .any(|p| p.model_version == first.version));
    for e in &events {
        let settled = e.finished_at_ms + 3000;
        assert!(summary
            .predictions
            .iter()
            .filter(|p| p.predicted_at_ms > settled)
            .all(|p| p.model_version >= e.version));
    }
    assert!(
        pstats.versions.starts_with(&[1, 2]),
        "{:?}",
        pstats.versions
    );
    // The new version's manifest records what it trained on.
    let m = store.read_files(2).unwrap().manifest;
    assert_eq!(m.parent_version, Some(1));
    assert!(m.training_data.stream_rows >= 1000);
    // And what started it.
    let trigger = m.trigger.as_ref().expect("the trigger is recorded");
    assert_eq!(trigger.kind, census_stream::lifecycle::TriggerKind::Rows);
    assert!(trigger.figures.contains("new labeled rows"), "{trigger:?}");
    assert_eq!(
        m.training_data.stream_offsets.values().sum::<i64>() as usize,
        m.training_data.stream_rows
    );
}

const GOOD: &str = r#"{"income_bracket": ">50K", "record": {"age": 52, "workclass": "Self-emp-inc", "fnlwgt": 287927, "education": "HS-grad", "education_num": 9, "marital_status": "Married-civ-spouse", "occupation": "Exec-managerial", "relationship": "Wife", "race": "White", "sex": "Female", "capital_gain": 15024, "capital_loss": 0, "hours_per_week": 40, "native_country": "Atlantis"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_record_lands_in_the_dlq_with_its_reason_and_bytes() {
    let Some((dir, store)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(2).await;
    let stop = CancellationToken::new();
    let mut pconf = own_predictor(&kafka.settings);
    pconf.store = Some(store);
    let predictor = tokio::spawn(predictor::run(pconf, stop.clone()));

    let bad = [
        ("not_json", "{\"record\": oops".to_string()),
        ("missing_field", GOOD.replace(r#""age": 52, "#, "")),
        (
            "wrong_type",
            GOOD.replace(r#""age": 52"#, r#""age": "fifty""#),
        ),
        (
            "impossible_value",
            GOOD.replace(r#""age": 52"#, r#""age": -1"#),
        ),
        (
            "impossible_value",
            GOOD.replace(r#""hours_per_week": 40"#, r#""hours_per_week": 169"#),
        ),
    ];
    let mut lines = vec![GOOD.to_string()];
    for (_, b) in &bad {
        lines.push(b.clone());
        lines.push(GOOD.to_string());
    }
    let input = dir.path().join("requests.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();

    // An empty payload cannot be written as a line: send it directly.
    let raw = kafka.settings.producer().unwrap();
    raw.send(
        FutureRecord::<str, [u8]>::to(&kafka.settings.topics.requests).key("empty-1"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();

    let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::JsonLines(input));
    // The line that is not JSON goes as it is, for the predictor to dead-letter.
    prod.send_non_json = true;
    prod.rate = Rate::UNLIMITED;
    prod.show_per_sec = 0;
    let summary = producer::run(prod, CancellationToken::new()).await.unwrap();
    assert_eq!(summary.sent, lines.len());
    assert_eq!(summary.sent, summary.predicted + summary.dead_lettered);
    assert_eq!(summary.dead_lettered, bad.len());
    assert!(summary.missing.is_empty());
    // The unseen country (Atlantis) is scored, not rejected.
    assert_eq!(summary.predicted, bad.len() + 1);

    let reader: StreamConsumer = kafka.settings.reader().unwrap();
    kafka
        .settings
        .assign_all(&reader, &kafka.settings.topics.dlq, false)
        .await
        .unwrap();
    let mut letters = Vec::new();
    while letters.len() < bad.len() + 1 {
        let m = tokio::time::timeout(Duration::from_secs(20), reader.recv())
            .await
            .expect("dead letters arrive")
            .unwrap();
        let headers = crate::helpers::headers_of(&m);
        letters.push((m.payload().map(<[u8]>::to_vec), headers));
    }
    stop.cancel();
    predictor.await.unwrap().unwrap();

    let empty = letters
        .iter()
        .find(|(p, _)| p.as_deref().is_none_or(|p| p.is_empty()))
        .expect("the empty payload was dead-lettered");
    assert_eq!(empty.1["dlq.reason"], "empty_payload");
    // The producer adds request_id and sent_at_ms to JSON lines; the dead letter holds the bytes
    // it sent, so compare with those fields taken out.
    let strip = |bytes: &[u8]| -> Option<serde_json::Value> {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let o = v.as_object_mut()?;
        o.remove("request_id")?;
        o.remove("sent_at_ms")?;
        Some(v)
    };
    for (reason, payload) in &bad {
        let original = serde_json::from_str::<serde_json::Value>(payload)
            .ok()
            .filter(|v| v.is_object());
        let letter = letters
            .iter()
            .find(|(p, _)| match (p, &original) {
                (Some(p), Some(o)) => strip(p).as_ref() == Some(o),
                (Some(p), None) => p.as_slice() == payload.as_bytes(),
                (None, _) => false,
            })
            .unwrap_or_else(|| panic!("{reason} record not in the DLQ with its original bytes"));
        assert_eq!(&letter.1["dlq.reason"], reason);
        assert_eq!(letter.1["dlq.source.topic"], kafka.settings.topics.requests);
        assert!(letter.1["dlq.source.offset"].parse::<i64>().is_ok());
        assert!(letter.1["dlq.source.partition"].parse::<i32>().is_ok());
        assert!(!letter.1["dlq.error"].is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_lines_are_skipped_with_their_line_numbers_and_the_rest_is_sent() {
    let kafka = test_kafka(2).await;
    let dir = tempfile::tempdir().unwrap();
    let good = |age: u32| GOOD.replace(r#""age": 52"#, &format!(r#""age": {age}"#));
    let mut not_utf8 = good(30).into_bytes();
    not_utf8[60] = 0xff;
    // Over the default limit (1,000,000 bytes), and over what census.requests takes.
    let oversized = good(31).replace("Atlantis", &"x".repeat(2 << 20));
    let lines: Vec<Vec<u8>> = vec![
        good(20).into_bytes(),
        not_utf8,
        good(21).into_bytes(),
        oversized.into_bytes(),
        good(22).into_bytes(),
        b"{\"record\": oops".to_vec(),
        good(23).into_bytes(),
    ];
    let input = dir.path().join("requests.jsonl");
    std::fs::write(&input, lines.join(&b"\n"[..])).unwrap();

    let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::JsonLines(input.clone()));
    prod.rate = Rate::UNLIMITED;
    // No predictor: nothing to wait for.
    prod.wait = Duration::from_millis(10);
    prod.show_per_sec = 0;
    let summary = producer::run(prod, CancellationToken::new()).await.unwrap();
    assert_eq!(summary.sent, 4);
    assert_eq!(summary.skipped_lines, 3);
    let skipped: Vec<usize> = summary.first_skipped.iter().map(|s| s.line).collect();
    assert_eq!(skipped, [2, 4, 6]);
    let report = summary.report();
    let file = input.display();
    for expected in [
        "input lines skipped: 3\n".to_owned(),
        format!("{file}:2: not UTF-8"),
        format!("{file}:4: 2097509 bytes, longer than the limit of 1000000"),
        format!("{file}:6: not JSON"),
    ] {
        assert!(report.contains(&expected), "{expected} not in:\n{report}");
    }

    // The four good lines are on census.requests, in full.
    let reader: StreamConsumer = kafka.settings.reader().unwrap();
    kafka
        .settings
        .assign_all(&reader, &kafka.settings.topics.requests, false)
        .await
        .unwrap();
    let mut ages = Vec::new();
    while ages.len() < 4 {
        let m = tokio::time::timeout(Duration::from_secs(20), reader.recv())
            .await
            .expect("the requests arrive")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(v["record"]["native_country"], "Atlantis");
        ages.push(v["record"]["age"].as_u64().unwrap());
    }
    ages.sort();
    assert_eq!(ages, [20, 21, 22, 23]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_predictors_split_the_partitions_and_both_switch_versions() {
    let (Some(test_file), Some((_dir, store))) = (adult_test(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(6).await;
    let stop = CancellationToken::new();
    let start = |name: &str| {
        let mut c = own_predictor(&kafka.settings);
        c.store = Some(store.clone());
        c.name = name.into();
        tokio::spawn(predictor::run(c, stop.clone()))
    };
    let (a, b) = (start("predictor-a"), start("predictor-b"));

    let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::Uci(test_file));
    prod.limit = Some(4000);
    prod.rate = Rate::new(500.0).unwrap();
    prod.show_per_sec = 0;
    prod.wait = Duration::from_secs(60);
    let producing = tokio::spawn(producer::run(prod, CancellationToken::new()));

    // Mid-stream, a new version becomes the champion.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let v2 = store.save(store.read_files(1).unwrap(), true).unwrap();
    let files = store.read_files(v2.version).unwrap();
    publish_champion(&kafka.settings, &files).await;

    let summary = producing.await.unwrap().unwrap();
    stop.cancel();
    let (sa, sb) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert!(
        summary.missing.is_empty(),
        "{} missing",
        summary.missing.len()
    );
    assert_eq!(summary.predicted, 4000);
    assert!(sa.predicted > 0 && sb.predicted > 0, "{sa:?} {sb:?}");
    assert_eq!(
        (sa.predicted + sb.predicted) as usize,
        4000 + summary.duplicates
    );
    assert!(
        sa.versions.contains(&2) && sb.versions.contains(&2),
        "{sa:?} {sb:?}"
    );
    assert!(summary.per_version.contains_key(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictor_killed_mid_stream_and_restarted_leaves_no_request_unanswered() {
    let (Some(test_file), Some((_dir, store))) = (adult_test(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(3).await;
    let config = {
        let mut c = own_predictor(&kafka.settings);
        c.store = Some(store.clone());
        c
    };
    let first_stop = CancellationToken::new();
    let first = tokio::spawn(predictor::run(config.clone(), first_stop.clone()));

    let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::Uci(test_file));
    prod.limit = Some(3000);
    prod.rate = Rate::new(500.0).unwrap();
    prod.show_per_sec = 0;
    prod.wait = Duration::from_secs(60);
    let producing = tokio::spawn(producer::run(prod, CancellationToken::new()));

    tokio::time::sleep(Duration::from_secs(5)).await;
    // A crash: the task is dropped wherever it is, with no final commit.
    first.abort();
    let _ = first.await;
    let second_stop = CancellationToken::new();
    let second = tokio::spawn(predictor::run(config, second_stop.clone()));

    let summary = producing.await.unwrap().unwrap();
    second_stop.cancel();
    let stats = second.await.unwrap().unwrap();
    assert!(
        summary.missing.is_empty(),
        "{} missing",
        summary.missing.len()
    );
    assert_eq!(summary.predicted, 3000);
    assert!(stats.predicted > 0, "the restarted predictor took over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrainer_restarted_after_storing_rows_trains_on_all_of_them() {
    let (Some(test_file), Some((dir, store))) = (adult_test(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(2).await;
    let mut rconf = own_retrainer(&kafka.settings, store.clone());
    // Every retrain becomes the champion: this test is about the swap (the gate has its own).
    rconf.promotion = Promotion::Always;
    rconf.data_dir = adult_dir().unwrap();
    rconf.rows_file = dir.path().join("rows.jsonl");
    rconf.retrain_every = 500.try_into().unwrap();
    rconf.search = small_search(2);

    let send = |skip: usize| {
        let file = dir.path().join(format!("part{skip}.jsonl"));
        let rows = census_stream::data::read_labeled(&test_file).unwrap();
        let lines: Vec<String> = rows[skip..skip + 300]
            .iter()
            .map(|r| {
                serde_json::json!({"income_bracket": census_stream::data::label_text(r.label), "record": r.row})
                    .to_string()
            })
            .collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::JsonLines(file));
        prod.rate = Rate::UNLIMITED;
        prod.wait = Duration::from_millis(10);
        prod.show_per_sec = 0;
        producer::run(prod, CancellationToken::new())
    };
    let rows_in_file = || {
        std::fs::read_to_string(dir.path().join("rows.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };

    let stop = CancellationToken::new();
    let first = tokio::spawn(retrainer::run(rconf.clone(), stop.clone(), |_| {}));
    send(0).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rows_in_file() < 300 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let stats = first.await.unwrap().unwrap();
    assert_eq!(stats.rows, 300);
    assert!(stats.versions.is_empty(), "300 < 500: no retrain yet");

    let events: Arc<Mutex<Vec<RetrainEvent>>> = Arc::default();
    let seen = events.clone();
    let stop = CancellationToken::new();
    let second = tokio::spawn(retrainer::run(rconf, stop.clone(), move |e| {
        if let Event::Retrained(e) = e {
            seen.lock().unwrap().push(e.clone())
        }
    }));
    send(300).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while events.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let stats = second.await.unwrap().unwrap();
    assert_eq!(stats.versions, vec![2]);
    let m = store.read_files(2).unwrap().manifest;
    assert_eq!(
        m.training_data.stream_rows, 600,
        "trained on the rows of both runs"
    );
    assert_eq!(m.training_data.stream_offsets.values().sum::<i64>(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictor_with_no_bundle_waits_then_loads_a_multi_megabyte_bundle_from_the_topic() {
    use census_stream::bundle::BundleFiles;
    use census_stream::train::space::Hyperparams;
    use census_stream::train::{matrix, train_final};

    let (Some(data), Some((_dir, store))) = (crate::helpers::adult(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(2).await;
    let stop = CancellationToken::new();
    let mut pconf = own_predictor(&kafka.settings);
    pconf.store = None;
    let predictor = tokio::spawn(predictor::run(pconf, stop.clone()));

    // A big model: 256 leaves, 400 rounds at a small learning rate, over 4 MiB of text. The
    // embedded broker keeps only the last 5 MiB of a partition (librdkafka's mock cluster), so
    // there the bundle has 100 rounds, which still makes megabytes.
    let (rounds, min_text) = if kafka.is_embedded() {
        (100, 1 << 20)
    } else {
        (400, 4 << 20)
    };
    let mut files: BundleFiles = store.read_files(1).unwrap();
    let processor =
        census_stream::features::FeatureProcessor::from_bytes(&files.processor).unwrap();
    let params = Hyperparams {
        learning_rate: 0.01,
        num_boost_round: rounds as u32,
        num_leaves: 256,
        min_child_weight: 0.1,
        colsample_bytree: 1.0,
        subsample: 1.0,
        reg_alpha: 0.01,
        reg_lambda: 0.01,
    };
    let text = tokio::task::spawn_blocking(move || {
        train_final(&matrix(&processor, &data.train), &params, rounds, 1).unwrap()
    })
    .await
    .unwrap();
    assert!(text.len() > min_text, "model text is {} bytes", text.len());
    files.model_text = text.into_bytes();
    let saved = store.save(files, true).unwrap();
    let files = store.read_files(saved.version).unwrap();

    // The predictor is still waiting: nothing scored, nothing loaded.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!predictor.is_finished());
    publish_champion(&kafka.settings, &files).await;

    let test_file = adult_test().unwrap();
    let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::Uci(test_file));
    prod.limit = Some(200);
    prod.rate = Rate::UNLIMITED;
    prod.show_per_sec = 0;
    prod.wait = Duration::from_secs(60);
    let summary = producer::run(prod, CancellationToken::new()).await.unwrap();
    stop.cancel();
    let stats = predictor.await.unwrap().unwrap();
    assert!(summary.missing.is_empty());
    assert_eq!(stats.versions, vec![saved.version]);
    assert!(summary
        .predictions
        .iter()
        .all(|p| p.model_version == saved.version));
}

/// On a real broker (`KAFKA_BROKERS`) the components create their topics: requests and
/// predictions with the configured partition count, the models topic compacted and able to hold
/// a 64 MiB bundle. (The embedded broker has no CreateTopics API: there is nothing to check.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topics_are_created_with_their_settings() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let kafka = test_kafka(4).await;
    if kafka.is_embedded() {
        eprintln!("skipping: topic creation needs a real broker (KAFKA_BROKERS)");
        return;
    }
    let s = &kafka.settings;
    // Creating again is a no-op, not an error.
    s.ensure_topics().await.expect("second ensure_topics");

    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &s.brokers)
        .create()
        .unwrap();
    let md = probe.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let partitions = |name: &str| {
        md.topics()
            .iter()
            .find(|t| t.name() == name)
            .map(|t| t.partitions().len())
    };
    assert_eq!(partitions(&s.topics.requests), Some(4));
    assert_eq!(partitions(&s.topics.predictions), Some(4));
    assert_eq!(partitions(&s.topics.dlq), Some(1));
    assert_eq!(partitions(&s.topics.models), Some(1));

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &s.brokers)
        .create()
        .unwrap();
    let described = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(&s.topics.models)],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let config = described
        .into_iter()
        .next()
        .unwrap()
        .expect("models config");
    let value = |key: &str| config.get(key).and_then(|e| e.value.clone());
    assert_eq!(value("cleanup.policy").as_deref(), Some("compact"));
    assert_eq!(
        value("segment.ms"),
        Some(census_stream::kafka::MODELS_SEGMENT_MS.to_string()),
        "a segment that rolls, so that compaction removes replaced bundles"
    );
    let max: usize = value("max.message.bytes").unwrap().parse().unwrap();
    assert!(
        max >= census_stream::kafka::MAX_MESSAGE_BYTES,
        "max.message.bytes {max}"
    );
    // The dead letters' limit is set, and read back as the predictor reads it.
    let limits = s.max_message_bytes(&[&s.topics.dlq]).await;
    assert_eq!(limits, [census_stream::kafka::DLQ_MAX_MESSAGE_BYTES]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_revoked_while_its_batch_lingers_does_not_stop_the_predictor() {
    let (Some(test_file), Some((_dir, store))) = (adult_test(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(4).await;
    let stop = CancellationToken::new();
    // A holds each batch for 4 s: the rebalance that B's arrival starts lands inside one.
    let mut a = own_predictor(&kafka.settings);
    a.store = Some(store.clone());
    a.linger = Duration::from_secs(4);
    a.max_batch = 100_000.try_into().unwrap();
    a.name = "lingering".into();
    let first = tokio::spawn(predictor::run(a, stop.clone()));

    let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::Uci(test_file));
    prod.limit = Some(1000);
    prod.rate = Rate::new(100.0).unwrap();
    prod.show_per_sec = 0;
    prod.wait = Duration::from_secs(60);
    let sending = tokio::spawn(producer::run(prod, CancellationToken::new()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut b = own_predictor(&kafka.settings);
    b.store = Some(store);
    b.name = "newcomer".into();
    let second = tokio::spawn(predictor::run(b, stop.clone()));

    let summary = sending.await.unwrap().unwrap();
    assert!(
        !first.is_finished(),
        "the lingering predictor still serves: {:?}",
        first.await
    );
    stop.cancel();
    let a = first
        .await
        .unwrap()
        .expect("the lingering predictor stops cleanly");
    let b = second.await.unwrap().unwrap();
    assert!(summary.missing.is_empty(), "every request answered");
    assert_eq!(summary.predicted, 1000);
    assert!(
        a.predicted > 0 && b.predicted > 0,
        "both served: {a:?} {b:?}"
    );
}

/// A writer whose bytes the test reads afterwards.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producers_status_line_follows_the_stream_to_its_end() {
    let (Some(test_file), Some((_dir, store))) = (adult_test(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(2).await;
    let stop = CancellationToken::new();
    let mut pconf = own_predictor(&kafka.settings);
    pconf.store = Some(store);
    let predictor = tokio::spawn(predictor::run(pconf, stop.clone()));

    let buf = SharedBuf::default();
    let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::Uci(test_file));
    prod.limit = Some(600);
    prod.rate = Rate::new(200.0).unwrap();
    prod.show_per_sec = 0;
    prod.wait = Duration::from_secs(60);
    prod.status = Some(producer::Status {
        sink: producer::Sink::new(buf.clone()),
        in_place: false,
        every: Duration::from_millis(300),
    });
    let summary = producer::run(prod, CancellationToken::new()).await.unwrap();
    stop.cancel();
    predictor.await.unwrap().unwrap();
    assert!(summary.missing.is_empty());

    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 5, "a line every 300 ms over 3 s: {text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("sent ") && !l.starts_with("sent 600/600")),
        "lines while the stream runs: {text}"
    );
    let accuracy = summary.per_version[&1].accuracy().unwrap();
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("sent 600/600 at ")
            && last.contains("| answered 600 (0 waiting) | dead letters 0 |")
            && last.contains(&format!("accuracy v1 {accuracy:.4} (600)")),
        "the last line says where the stream ended: {last}"
    );
    assert!(!text.contains('\x1b'), "plain text when not on a terminal");
}
