//! Records that used to stop the predictor for good (its batch came back to whoever took the
//! partition): each now ends as a dead letter that fits its topic, and the stream goes on.

use std::collections::HashMap;
use std::time::Duration;

use census_stream::kafka::KafkaSettings;
use census_stream::predictor::{self, Mode};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use crate::helpers::{headers_of, own_predictor, set_topic_limit, store_with_v1, test_kafka};

const GOOD: &str = r#"{"request_id": "ID", "sent_at_ms": 1, "income_bracket": ">50K", "record": {"age": 52, "workclass": "Self-emp-inc", "fnlwgt": 287927, "education": "HS-grad", "education_num": 9, "marital_status": "Married-civ-spouse", "occupation": "Exec-managerial", "relationship": "Wife", "race": "White", "sex": "Female", "capital_gain": 15024, "capital_loss": 0, "hours_per_week": 40, "native_country": "United-States"}}"#;

fn request(id: &str) -> String {
    GOOD.replace("\"ID\"", &format!("\"{id}\""))
}

/// A received message: key, payload size, headers.
struct Got {
    key: String,
    payload_len: usize,
    headers: HashMap<String, String>,
    size: usize,
}

async fn read(s: &KafkaSettings, topic: &str, n: usize) -> Vec<Got> {
    let reader: StreamConsumer = s.reader().unwrap();
    s.assign_all(&reader, topic, false).await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .unwrap_or_else(|_| panic!("{topic}: {} of {n} messages arrived", out.len()))
            .unwrap();
        let headers = headers_of(&m);
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let payload_len = m.payload().map_or(0, <[u8]>::len);
        let size = key.len()
            + payload_len
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        out.push(Got {
            key,
            payload_len,
            headers,
            size,
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_get_dead_letters_that_fit_and_the_stream_goes_on() {
    poison_records(false).await;
}

/// In a transaction, one record the broker refuses fails the whole batch, every time it comes
/// back: each poison record must be dead-lettered before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_get_dead_letters_in_exactly_once_mode_too() {
    if std::env::var("KAFKA_BROKERS").is_ok_and(|b| !b.is_empty()) {
        poison_records(true).await;
    } else {
        eprintln!("skipping: exactly-once needs a real broker (KAFKA_BROKERS)");
    }
}

async fn poison_records(exactly_once: bool) {
    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;
    // On the real broker, small limits make every poison record bite; the embedded broker has
    // no topic configuration, so there the dead letter is held to Kafka's default limit.
    let (dlq_limit, huge_len) = if kafka.is_embedded() {
        (
            census_stream::kafka::KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
            1_500_000,
        )
    } else {
        set_topic_limit(s, &s.topics.dlq, 64 << 10).await;
        set_topic_limit(s, &s.topics.predictions, 700).await;
        (64 << 10, 200_000)
    };

    // A wrong-typed huge string (serde quotes it in the error), a request id over the limit,
    // one at the limit whose prediction the real broker refuses, then good requests.
    let huge = GOOD.replace(
        r#""age": 52"#,
        &format!(r#""age": "{}""#, "é".repeat(huge_len / 2)),
    );
    let long_id = "L".repeat(300);
    let limit_id = "M".repeat(256);
    let mut sends: Vec<(String, String)> = vec![
        ("huge".into(), huge.replace("\"ID\"", "\"huge\"")),
        (long_id.clone(), request(&long_id)),
        (limit_id.clone(), request(&limit_id)),
    ];
    for i in 0..20 {
        sends.push((format!("good-{i}"), request(&format!("good-{i}"))));
    }
    let raw = s.producer().unwrap();
    for (key, payload) in &sends {
        raw.send(
            FutureRecord::to(&s.topics.requests)
                .key(key.as_str())
                .payload(payload.as_str()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }

    let stop = CancellationToken::new();
    let mut pconf = own_predictor(s);
    pconf.store = Some(store);
    if exactly_once {
        // Exactly-once needs a name: its transactional id is `<group>-<instance id>`.
        pconf.mode = Mode::ExactlyOnce {
            instance_id: "poison-eos".into(),
        };
    }
    let running = tokio::spawn(predictor::run(pconf, stop.clone()));

    let embedded = kafka.is_embedded();
    let expected_dead = if embedded { 2 } else { 3 };
    let predictions = read(s, &s.topics.predictions, sends.len() - expected_dead).await;
    let letters = read(s, &s.topics.dlq, expected_dead).await;
    assert!(!running.is_finished(), "the predictor is still serving");
    stop.cancel();
    let stats = running.await.unwrap().expect("the predictor stops cleanly");
    assert_eq!(
        stats.predicted + stats.dead_lettered,
        sends.len() as u64,
        "every request answered once: {stats:?}"
    );

    let letter = |key: &str| {
        letters
            .iter()
            .find(|l| l.key == key)
            .unwrap_or_else(|| panic!("no dead letter for {}…", &key[..key.len().min(8)]))
    };
    let h = letter("huge");
    assert_eq!(h.headers["dlq.reason"], "wrong_type");
    assert!(
        h.size < dlq_limit,
        "{} bytes in a {dlq_limit}-byte topic",
        h.size
    );
    assert!(h.headers["dlq.error"].len() <= 1024);
    assert_eq!(
        h.headers["dlq.payload.bytes"],
        sends[0].1.len().to_string(),
        "the cut says how long the request was"
    );
    assert!(
        h.payload_len > dlq_limit / 2,
        "as much of the request as fits"
    );
    assert_eq!(letter(&long_id).headers["dlq.reason"], "impossible_value");
    if !embedded {
        let refused = letter(&limit_id);
        assert_eq!(refused.headers["dlq.reason"], "undeliverable");
        assert!(refused.headers["dlq.error"].contains("refused"));
    }
    for i in 0..20 {
        let id = format!("good-{i}");
        assert!(
            predictions.iter().any(|p| p.key == id),
            "{id} was predicted"
        );
    }
}

/// A topic's limit lowered while a predictor runs: its own check, made with the limit it read at
/// start, passes a prediction the broker then refuses. In a transaction nothing more can be sent
/// after a refusal: the batch is aborted, and when it comes again the refused prediction is a
/// dead letter. Without that, the same batch would be aborted forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_refused_inside_a_transaction_is_dead_lettered_when_its_batch_comes_again() {
    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(1).await;
    if kafka.is_embedded() {
        eprintln!("skipping: exactly-once and topic limits need a real broker (KAFKA_BROKERS)");
        return;
    }
    let s = &kafka.settings;
    let stop = CancellationToken::new();
    let mut pconf = own_predictor(s);
    pconf.store = Some(store);
    pconf.mode = Mode::ExactlyOnce {
        instance_id: "poison-refused".into(),
    };
    let running = tokio::spawn(predictor::run(pconf, stop.clone()));
    let raw = s.producer().unwrap();
    let send = |id: String| {
        let raw = raw.clone();
        let topic = s.topics.requests.clone();
        async move {
            raw.send(
                FutureRecord::to(&topic).key(&id).payload(&request(&id)),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        }
    };
    // Running: one request answered, then the predictions topic shrinks under it.
    send("before".into()).await;
    read(s, &s.topics.predictions, 1).await;
    set_topic_limit(s, &s.topics.predictions, 700).await;
    let limit_id = "M".repeat(256);
    send(limit_id.clone()).await;
    let letters = read(s, &s.topics.dlq, 1).await;
    assert_eq!(letters[0].key, limit_id);
    assert_eq!(letters[0].headers["dlq.reason"], "undeliverable");
    assert!(
        letters[0].headers["dlq.error"].contains("refused"),
        "{:?}",
        letters[0].headers
    );
    // The stream goes on, one small request at a time: a prediction fits the new limit alone,
    // not batched with others by a producer that still plans for the old one.
    let mut predictions = Vec::new();
    for i in 0..5 {
        send(format!("after-{i}")).await;
        predictions = read(s, &s.topics.predictions, 2 + i).await;
    }
    assert!(!running.is_finished(), "the predictor is still serving");
    stop.cancel();
    let stats = running.await.unwrap().expect("the predictor stops cleanly");
    assert_eq!((stats.predicted, stats.dead_lettered), (6, 1), "{stats:?}");
    for i in 0..5 {
        let id = format!("after-{i}");
        assert!(
            predictions.iter().any(|p| p.key == id),
            "{id} was predicted"
        );
    }
}
