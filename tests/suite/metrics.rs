//! The predictor's Prometheus endpoint: after a known stream, scraped over HTTP, its counters
//! equal what a reader of the topics finds, per model version and per dead-letter reason; and so
//! do the dashboard's figures, read from its `/state`.

use std::collections::BTreeMap;
use std::time::Duration;

use census_stream::dashboard;
use census_stream::predictor;
use census_stream::stream::messages::Prediction;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    headers_of, own_dashboard, own_predictor, publish_champion, store_with_v1, test_kafka,
};

const GOOD: &str = r#"{"request_id": "ID", "sent_at_ms": 1, "income_bracket": ">50K", "record": {"age": 52, "workclass": "Self-emp-inc", "fnlwgt": 287927, "education": "HS-grad", "education_num": 9, "marital_status": "Married-civ-spouse", "occupation": "Exec-managerial", "relationship": "Wife", "race": "White", "sex": "Female", "capital_gain": 15024, "capital_loss": 0, "hours_per_week": 40, "native_country": "United-States"}}"#;

/// What the topics say: predictions per model version, dead letters per reason.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    predictions: BTreeMap<String, u64>,
    dead_letters: BTreeMap<String, u64>,
    /// Labeled predictions by the champion version, and those it got right.
    labeled: BTreeMap<String, u64>,
    correct: BTreeMap<String, u64>,
}

/// The topics' tally once they hold `expected` answers (read again from their starts until they
/// do, for at most a minute).
async fn read_tally(s: &census_stream::kafka::KafkaSettings, expected: usize) -> Tally {
    for _ in 0..120 {
        let (tally, seen) = read_once(s).await;
        if seen >= expected {
            assert_eq!(seen, expected, "every request answered once");
            return tally;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the topics never held {expected} answers");
}

async fn read_once(s: &census_stream::kafka::KafkaSettings) -> (Tally, usize) {
    let mut tally = Tally::default();
    let mut seen = 0;
    for (topic, dlq) in [(&s.topics.predictions, false), (&s.topics.dlq, true)] {
        let reader: StreamConsumer = s.reader().unwrap();
        let n = s.assign_all(&reader, topic, false).await.unwrap();
        assert!(n > 0);
        let ends = s.end_offsets(topic).await.unwrap();
        let total: i64 = ends.iter().map(|(_, e)| e).sum();
        for _ in 0..total {
            let m = tokio::time::timeout(Duration::from_secs(30), reader.recv())
                .await
                .expect("a message")
                .unwrap();
            if dlq {
                let reason = headers_of(&m)["dlq.reason"].clone();
                *tally.dead_letters.entry(reason).or_default() += 1;
            } else {
                let p: Prediction = serde_json::from_slice(m.payload().unwrap()).unwrap();
                let v = p.model_version.to_string();
                *tally.predictions.entry(v.clone()).or_default() += 1;
                if let Some(label) = &p.income_bracket {
                    *tally.labeled.entry(v.clone()).or_default() += 1;
                    if (label == ">50K") == (p.probability >= 0.5) {
                        *tally.correct.entry(v).or_default() += 1;
                    }
                }
            }
            seen += 1;
        }
    }
    (tally, seen)
}

/// The counters of a scrape, as [`Tally`]: `name{label="value",…} n` lines.
fn scraped(text: &str) -> Tally {
    let mut tally = Tally::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let labels: BTreeMap<&str, &str> = labels
            .trim_end_matches('}')
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let value = value.parse::<f64>().unwrap() as u64;
        let champion = labels.get("role") == Some(&"champion");
        let (map, key) = match name {
            "census_predictions_total" => (&mut tally.predictions, "model_version"),
            // Every reason is exposed from the start, at 0.
            "census_dead_letters_total" if value > 0 => (&mut tally.dead_letters, "reason"),
            "census_labeled_predictions_total" if champion => (&mut tally.labeled, "model_version"),
            "census_correct_predictions_total" if champion => (&mut tally.correct, "model_version"),
            _ => continue,
        };
        map.insert(labels[key].to_owned(), value);
    }
    tally
}

async fn dashboard_state(url: &str) -> serde_json::Value {
    let u = format!("{url}state");
    tokio::task::spawn_blocking(move || {
        let text = ureq::get(&u)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    })
    .await
    .unwrap()
}

/// The dashboard's figures as [`Tally`].
fn dashboard_tally(state: &serde_json::Value) -> Tally {
    let mut tally = Tally::default();
    for v in state["versions"].as_array().unwrap() {
        let version = v["version"].to_string();
        let n = v["predictions"].as_u64().unwrap();
        if n > 0 {
            tally.predictions.insert(version.clone(), n);
        }
        if let Some(served) = v["served"].as_object() {
            let labeled = served["labeled"].as_u64().unwrap();
            let correct = (served["accuracy"].as_f64().unwrap() * labeled as f64).round() as u64;
            tally.labeled.insert(version.clone(), labeled);
            tally.correct.insert(version, correct);
        }
    }
    for (reason, n) in state["dead_letters"].as_object().unwrap() {
        tally
            .dead_letters
            .insert(reason.clone(), n.as_u64().unwrap());
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scraped_counters_and_the_dashboard_equal_the_topics_per_version_and_reason() {
    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;
    let stop = CancellationToken::new();
    let mut pconf = own_predictor(s);
    pconf.store = Some(store.clone());
    let addr = crate::helpers::serve_predictor_endpoints(&pconf, &stop).await;
    let running = tokio::spawn(predictor::run(pconf, stop.clone()));
    let board = dashboard::start(
        own_dashboard(s, "127.0.0.1:0".parse().unwrap()),
        stop.clone(),
    )
    .await
    .unwrap();

    let raw = s.producer().unwrap();
    let send = |key: String, payload: String| {
        let raw = raw.clone();
        let topic = s.topics.requests.clone();
        async move {
            raw.send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        }
    };
    let bad = [
        ("not json", 3),
        (
            r#"{"request_id": "w", "sent_at_ms": 1, "record": {"age": "old"}}"#,
            2,
        ),
        (&GOOD.replace(r#""age": 52"#, r#""age": -4"#), 4),
    ];
    let mut sent = 0;
    for i in 0..150 {
        send(format!("a{i}"), GOOD.replace("ID", &format!("a{i}"))).await;
        sent += 1;
    }
    for (payload, n) in &bad {
        for i in 0..*n {
            send(format!("bad{sent}-{i}"), payload.to_string()).await;
            sent += 1;
        }
    }
    // A second version once the first part is answered.
    read_tally(s, sent).await;
    let v2 = store.save(store.read_files(1).unwrap(), true).unwrap();
    publish_champion(s, &store.read_files(v2.version).unwrap()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..120 {
        send(format!("b{i}"), GOOD.replace("ID", &format!("b{i}"))).await;
        sent += 1;
    }

    let topics = read_tally(s, sent).await;
    assert_eq!(
        topics.predictions.len(),
        2,
        "two versions served: {topics:?}"
    );
    assert_eq!(
        topics.dead_letters,
        BTreeMap::from([
            ("impossible_value".into(), 4),
            ("not_json".into(), 3),
            ("wrong_type".into(), 2)
        ])
    );
    // A batch's counters move at its commit, just after its outputs can be read.
    let url = format!("http://{addr}/metrics");
    let mut last = Tally::default();
    for _ in 0..50 {
        let u = url.clone();
        let text = tokio::task::spawn_blocking(move || {
            ureq::get(&u)
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(text.contains("census_build_info{version=\""), "{text}");
        assert!(
            text.contains("census_prediction_latency_seconds_bucket"),
            "{text}"
        );
        last = scraped(&text);
        if last == topics {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last, topics, "the scrape against the topics");

    // The dashboard, a reader of its own, comes to the same figures; and once the predictors'
    // group has committed everything, to no lag.
    let mut state = serde_json::Value::Null;
    for _ in 0..50 {
        state = dashboard_state(&board.url).await;
        if dashboard_tally(&state) == topics && state["lag"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        dashboard_tally(&state),
        topics,
        "the dashboard against the topics"
    );
    assert_eq!(state["lag"], 0, "{}", state["lag"]);
    assert_eq!(state["totals"]["requests"], sent);
    assert_eq!(state["champion"]["version"], 2);
    let trained: Vec<_> = state["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "trained")
        .map(|m| m["version"].as_u64().unwrap())
        .collect();
    // v1 was served from the local store; the registry holds v2 only.
    assert_eq!(trained, [2]);
    stop.cancel();
    board.finished().await.unwrap();
    let stats = running.await.unwrap().unwrap();
    assert_eq!(stats.predicted, 270);
    assert_eq!(stats.dead_lettered, 9);
}

/// The metric names README's "Metrics" section lists after `marker` (up to the next service's).
fn readme_metrics(marker: &str, next: Option<&str>) -> std::collections::BTreeSet<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Metrics (Prometheus)").unwrap()..];
    let section = &section[..section[3..].find("\n## ").unwrap()];
    let from = section.find(marker).unwrap_or_else(|| panic!("{marker}"));
    let part = &section[from..];
    let part = match next.and_then(|n| part.find(n)) {
        Some(end) => &part[..end],
        None => part,
    };
    part.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|t| {
            let name = t.split('{').next()?;
            let ok = name.starts_with("census_")
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            ok.then(|| name.to_owned())
        })
        .collect()
}

/// The metric families a registry serves, as a scraper names them: a counter's samples end in
/// `_total`, a histogram's and a gauge's are its family's name.
fn served(
    register: impl FnOnce(&mut prometheus_client::registry::Registry),
) -> std::collections::BTreeSet<String> {
    let mut registry = prometheus_client::registry::Registry::default();
    register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| match l.split_once(' ').unwrap() {
            (name, "counter") => format!("{name}_total"),
            (name, _) => name.to_owned(),
        })
        .collect()
}

#[test]
fn readme_lists_exactly_the_metrics_each_service_serves() {
    use census_stream::telemetry::{
        CommandLabels, DashboardMetrics, GapLabels, GroupLabels, GroupRateLabels, PredictorMetrics,
        ReasonLabel, RetrainerMetrics, RoleLabel, ScoringLabels, VersionLabel,
    };
    // A family is served once it has a sample: one each.
    let reason = ReasonLabel { reason: "x".into() };
    let role = RoleLabel {
        role: "champion".into(),
    };
    let scoring = ScoringLabels {
        model_version: 1,
        role: "champion".into(),
    };
    let predictor = PredictorMetrics::default();
    predictor
        .predictions
        .get_or_create(&VersionLabel { model_version: 1 })
        .inc();
    predictor.registry.ignored("x");
    predictor
        .registry
        .bundles_refused
        .get_or_create(&reason)
        .inc();
    predictor.model_version.get_or_create(&role).set(1);
    predictor.labeled.get_or_create(&scoring).inc();
    predictor.correct.get_or_create(&scoring).inc();
    predictor.log_loss.get_or_create(&scoring).inc_by(0.3);
    let retrainer = RetrainerMetrics::default();
    for family in [
        &retrainer.retrains,
        &retrainer.triggers,
        &retrainer.gate_decisions,
    ] {
        family.get_or_create(&reason).inc();
    }
    retrainer.model_version.get_or_create(&role).set(1);
    retrainer.feature_drift("age", 0.1);
    retrainer
        .commands
        .get_or_create(&CommandLabels {
            action: "pin".into(),
            result: "applied".into(),
        })
        .inc();
    let dashboard = DashboardMetrics::default();
    dashboard.read("census.requests");
    dashboard.registry_ignored("x");
    dashboard.live(1, "served", 10, 0.8, 0.4);
    dashboard.estimated(1, 12, 0.82, 0.38);
    let group = || GroupLabels {
        attribute: "sex".into(),
        group: "Female".into(),
    };
    dashboard.group_labels.get_or_create(&group()).set(10);
    dashboard
        .group_rate
        .get_or_create(&GroupRateLabels {
            attribute: "sex".into(),
            group: "Female".into(),
            rate: "tpr".into(),
        })
        .set(0.5);
    dashboard
        .fairness_gap
        .get_or_create(&GapLabels {
            attribute: "sex".into(),
            gap: "equalized_odds".into(),
            bound: "lower".into(),
        })
        .set(0.1);
    for (marker, next, served) in [
        (
            "`predictor --metrics-addr",
            Some("`retrainer --metrics-addr"),
            served(|r| predictor.register(r)),
        ),
        (
            "`retrainer --metrics-addr",
            Some("`dashboard --metrics-addr"),
            served(|r| retrainer.register(r)),
        ),
        (
            "`dashboard --metrics-addr",
            None,
            served(|r| dashboard.register(r)),
        ),
    ] {
        assert_eq!(readme_metrics(marker, next), served, "{marker}");
    }
}
