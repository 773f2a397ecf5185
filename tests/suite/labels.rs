//! Labels apart from their requests, end to end: the producer sends them late and for a share
//! of the requests; the retrainer joins them (across a crash), and dead-letters those it
//! cannot use.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use census_stream::kafka::KafkaSettings;
use census_stream::producer::{self, Input, LabelPlan, ProducerConfig, Spread};
use census_stream::retrainer::{self, Promotion, RetrainerConfig, RowLog};
use census_stream::settings::Rate;
use census_stream::stream::messages::{Label, Request};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use crate::helpers::{adult_dir, headers_of, own_retrainer, store_with_v1, test_kafka};

/// Every record of `topic`, read from its start.
async fn read_topic(s: &KafkaSettings, topic: &str) -> Vec<OwnedMessage> {
    let reader: rdkafka::consumer::StreamConsumer = s.reader().unwrap();
    s.assign_all(&reader, topic, false).await.unwrap();
    let total: i64 = s
        .end_offsets(topic)
        .await
        .unwrap()
        .iter()
        .map(|e| e.1)
        .sum();
    let mut out = Vec::new();
    for _ in 0..total {
        let m = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("a message")
            .unwrap();
        out.push(m.detach());
    }
    out
}

fn retrainer_config(
    s: &KafkaSettings,
    store: census_stream::bundle::BundleStore,
    dir: &std::path::Path,
) -> RetrainerConfig {
    let mut c = own_retrainer(s, store);
    c.promotion = Promotion::Always;
    c.data_dir = adult_dir().unwrap();
    c.rows_file = dir.join("rows.jsonl");
    c.join_file = dir.join("join.jsonl");
    // No retrain: this is about which rows are kept.
    c.retrain_every = 1_000_000.try_into().unwrap();
    c
}

/// Polls `rows.jsonl` until it holds `n` rows (or a minute passed); returns its rows.
async fn rows_when(dir: &std::path::Path, n: usize) -> Vec<retrainer::StoredRow> {
    for _ in 0..120 {
        let log = RowLog::open(&dir.join("rows.jsonl")).unwrap();
        if log.len() >= n {
            return log.rows().to_vec();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    RowLog::open(&dir.join("rows.jsonl"))
        .unwrap()
        .rows()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_late_and_partial_give_the_retrainer_exactly_the_labelled_rows_once_across_a_crash()
{
    let (Some(dir_data), Some((dir, store))) = (adult_dir(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(3).await;
    let s = &kafka.settings;
    let first = CancellationToken::new();
    let run = tokio::spawn(retrainer::run(
        retrainer_config(s, store.clone(), dir.path()),
        first.clone(),
        |_| {},
    ));

    let mut prod = ProducerConfig::new(s.clone(), Input::Uci(dir_data.join("adult.test")));
    prod.limit = Some(1500);
    prod.rate = Rate::new(250.0).unwrap();
    prod.show_per_sec = 0;
    prod.wait = Duration::from_millis(10);
    prod.labels = Some(LabelPlan {
        delay: Duration::from_secs(5),
        spread: Spread::Uniform,
        fraction: 0.7,
        seed: 11,
    });
    let producing = tokio::spawn(producer::run(prod, CancellationToken::new()));
    // Mid-stream, with requests waiting for their labels: a crash (the task dropped where it
    // is, no final commit), then a new retrainer over the same files.
    tokio::time::sleep(Duration::from_secs(5)).await;
    run.abort();
    let _ = run.await;
    let second = CancellationToken::new();
    let run = tokio::spawn(retrainer::run(
        retrainer_config(s, store.clone(), dir.path()),
        second.clone(),
        |_| {},
    ));
    let summary = producing.await.unwrap().unwrap();
    let sent = summary.labels.expect("labels sent apart");
    assert_eq!((sent.unsent, sent.sent + sent.withheld), (0, 1500));
    assert!(
        (900..1200).contains(&sent.sent),
        "about 70 % labelled: {sent:?}"
    );
    let rows = rows_when(dir.path(), sent.sent).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    second.cancel();
    run.await.unwrap().unwrap();

    // The labelled requests, by where they were read, with their labels.
    let requests: BTreeMap<(i32, i64), String> = read_topic(s, &s.topics.requests)
        .await
        .iter()
        .map(|m| {
            let r: Request = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert!(r.income_bracket.is_none(), "the label went apart");
            ((m.partition(), m.offset()), r.request_id)
        })
        .collect();
    let labels: BTreeMap<String, bool> = read_topic(s, &s.topics.labels)
        .await
        .iter()
        .map(|m| {
            let l: Label = serde_json::from_slice(m.payload().unwrap()).unwrap();
            (l.request_id, l.income_bracket.starts_with('>'))
        })
        .collect();
    assert_eq!(labels.len(), sent.sent, "one label per labelled request");
    let kept: Vec<(String, bool)> = rows
        .iter()
        .map(|r| (requests[&(r.partition, r.offset)].clone(), r.label))
        .collect();
    let ids: BTreeSet<&String> = kept.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), kept.len(), "no request kept twice");
    let kept: BTreeMap<String, bool> = kept.into_iter().collect();
    let lost: Vec<_> = labels.iter().filter(|l| !kept.contains_key(l.0)).collect();
    let wrong: Vec<_> = kept
        .iter()
        .filter(|k| labels.get(k.0) != Some(k.1))
        .collect();
    assert!(
        lost.is_empty() && wrong.is_empty(),
        "exactly the labelled requests, each with its own label: {} lost (first {:?}), {} kept \
         wrongly (first {:?})",
        lost.len(),
        lost.first(),
        wrong.len(),
        wrong.first()
    );
    assert!(
        read_topic(s, &s.topics.dlq).await.is_empty(),
        "no label was dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_expired_and_duplicate_labels_are_dead_lettered_with_their_reasons() {
    let Some((dir, store)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(1).await;
    let s = &kafka.settings;
    let stop = CancellationToken::new();
    let mut config = retrainer_config(s, store, dir.path());
    config.label_window = Duration::from_secs(3);
    let run = tokio::spawn(retrainer::run(config, stop.clone(), |_| {}));

    let producer = s.producer().unwrap();
    let send = |topic: String, key: String, payload: String| {
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    };
    let request = |id: &str| {
        let row = census_stream::data::read_labeled(&adult_dir().unwrap().join("adult.test"))
            .unwrap()
            .remove(0)
            .row;
        serde_json::json!({"request_id": id, "sent_at_ms": 1, "record": row}).to_string()
    };
    let label = |id: &str, b: &str| {
        serde_json::json!({"request_id": id, "income_bracket": b, "labeled_at_ms": 1}).to_string()
    };
    let (req, lab) = (s.topics.requests.clone(), s.topics.labels.clone());
    send(req.clone(), "a".into(), request("a")).await;
    send(req.clone(), "late".into(), request("late")).await;
    send(lab.clone(), "a".into(), label("a", ">50K")).await;
    send(lab.clone(), "a".into(), label("a", "<=50K")).await;
    send(lab.clone(), "ghost".into(), label("ghost", ">50K")).await;
    send(lab.clone(), "x".into(), "not json".into()).await;
    // Once the retrainer has read them, `late` waits past the window; its label then comes too
    // late. The ghost label expires with nothing else coming. A request waits at least one
    // window of its input's time: it expires once the consumer's look at the partitions' ends
    // (every 5 s) finds every input read a window past it, so the late label comes after the
    // window and one look more.
    assert_eq!(rows_when(dir.path(), 1).await.len(), 1, "a was joined");
    tokio::time::sleep(Duration::from_secs(10)).await;
    send(lab.clone(), "late".into(), label("late", ">50K")).await;

    let mut reasons = BTreeMap::new();
    for _ in 0..60 {
        reasons = read_topic(s, &s.topics.dlq)
            .await
            .iter()
            .map(|m| {
                let h = headers_of(m);
                (
                    m.key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    h["dlq.reason"].clone(),
                )
            })
            .collect::<BTreeMap<_, _>>();
        if reasons.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    run.await.unwrap().unwrap();
    let expected: BTreeMap<String, String> = [
        ("a", "duplicate_label"),
        ("ghost", "unmatched_label"),
        ("late", "unmatched_label"),
        ("x", "not_json"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    assert_eq!(reasons, expected);
    let rows = RowLog::open(&dir.path().join("rows.jsonl")).unwrap();
    let labels: Vec<bool> = rows.rows().iter().map(|r| r.label).collect();
    assert_eq!(labels, [true], "only a's first label was used");
}
