//! The predictor's exactly-once mode: each batch's outputs and offsets in one transaction, so
//! that the producer's `read_committed` reader sees every request answered once — across a
//! rebalance, a crash and a restart, and an instance started twice with one id.

use std::time::Duration;

use census_stream::kafka::BrokerError;
use census_stream::predictor::{self, Mode, PredictorConfig, PredictorError};
use census_stream::producer::{self, Input, ProducerConfig, Summary};
use census_stream::settings::Rate;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::{adult_dir, own_predictor, store_with_v1, test_kafka, TestKafka};

/// The real broker named by `KAFKA_BROKERS`: librdkafka's mock cluster accepts a transaction's
/// offsets and forgets them, and shows aborted records (the test command runs these there).
async fn real_kafka(partitions: i32) -> Option<TestKafka> {
    let kafka = test_kafka(partitions).await;
    if kafka.is_embedded() {
        eprintln!("skipping: exactly-once needs a real broker (KAFKA_BROKERS)");
        return None;
    }
    Some(kafka)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_is_refused_on_the_embedded_broker() {
    let kafka = test_kafka(1).await;
    if !kafka.is_embedded() {
        return;
    }
    let (_dir, store) = crate::helpers::temp_store();
    let config = exactly_once(&kafka, &store, "eos-embedded");
    let err = predictor::run(config, CancellationToken::new())
        .await
        .expect_err("refused");
    assert!(
        matches!(err, PredictorError::NoTransactionalOffsets),
        "{err:?}"
    );
}

fn exactly_once(
    kafka: &TestKafka,
    store: &census_stream::bundle::BundleStore,
    id: &str,
) -> PredictorConfig {
    let mut c = own_predictor(&kafka.settings);
    c.store = Some(store.clone());
    c.mode = Mode::ExactlyOnce {
        instance_id: id.into(),
    };
    c.name = id.into();
    c
}

fn stream(
    kafka: &TestKafka,
    records: usize,
    rate: f64,
) -> JoinHandle<Result<Summary, producer::ProducerError>> {
    let test_file = adult_dir().unwrap().join("adult.test");
    let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::Uci(test_file));
    prod.limit = Some(records);
    prod.rate = Rate::new(rate).unwrap();
    prod.show_per_sec = 0;
    prod.wait = Duration::from_secs(90);
    tokio::spawn(producer::run(prod, CancellationToken::new()))
}

fn assert_once(summary: &Summary, records: usize) {
    assert!(
        summary.missing.is_empty(),
        "{} missing",
        summary.missing.len()
    );
    assert_eq!(summary.predicted, records);
    assert_eq!(summary.duplicates, 0, "no request answered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_while_a_batch_lingers_answers_every_request_once() {
    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let Some(kafka) = real_kafka(4).await else {
        return;
    };
    let stop = CancellationToken::new();
    // A holds each batch for 3 s: B's arrival rebalances the group inside one, and the
    // partitions A keeps are handed back at their committed offsets, behind the batch in hand.
    let mut a = exactly_once(&kafka, &store, "eos-a");
    a.linger = Duration::from_secs(3);
    a.max_batch = 100_000.try_into().unwrap();
    let first = tokio::spawn(predictor::run(a, stop.clone()));
    let sending = stream(&kafka, 1500, 150.0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = tokio::spawn(predictor::run(
        exactly_once(&kafka, &store, "eos-b"),
        stop.clone(),
    ));

    let summary = sending.await.unwrap().unwrap();
    stop.cancel();
    let a = first.await.unwrap().expect("A stops cleanly");
    let b = second.await.unwrap().expect("B stops cleanly");
    assert_once(&summary, 1500);
    assert!(
        a.predicted > 0 && b.predicted > 0,
        "both served: {a:?} {b:?}"
    );
    assert_eq!(
        a.predicted + b.predicted,
        1500,
        "the predictors count what they committed: {a:?} {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictor_dropped_mid_transaction_and_restarted_answers_every_request_once() {
    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let Some(kafka) = real_kafka(3).await else {
        return;
    };
    // Large batches, so that the crash most likely lands inside a transaction.
    let config = {
        let mut c = exactly_once(&kafka, &store, "eos-crash");
        c.linger = Duration::from_millis(500);
        c
    };
    let first = tokio::spawn(predictor::run(config.clone(), CancellationToken::new()));
    let sending = stream(&kafka, 3000, 500.0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    // A crash: the task is dropped wherever it is, its transaction left open.
    first.abort();
    let _ = first.await;
    let stop = CancellationToken::new();
    let second = tokio::spawn(predictor::run(config, stop.clone()));

    let summary = sending.await.unwrap().unwrap();
    stop.cancel();
    let stats = second
        .await
        .unwrap()
        .expect("the restarted predictor stops cleanly");
    assert_once(&summary, 3000);
    assert!(stats.predicted > 0, "the restarted predictor took over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_twice_with_one_id_fences_the_first() {
    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let Some(kafka) = real_kafka(3).await else {
        return;
    };
    let stop = CancellationToken::new();
    let first = tokio::spawn(predictor::run(
        exactly_once(&kafka, &store, "eos-twin"),
        stop.clone(),
    ));
    let sending = stream(&kafka, 3000, 500.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = tokio::spawn(predictor::run(
        exactly_once(&kafka, &store, "eos-twin"),
        stop.clone(),
    ));

    let ended = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("the first instance stops once fenced")
        .unwrap();
    match ended {
        Err(PredictorError::Broker(BrokerError::Fenced(_) | BrokerError::FatalConsumer { .. })) => {
        }
        other => panic!("the first instance should end fenced, not with {other:?}"),
    }
    let summary = sending.await.unwrap().unwrap();
    stop.cancel();
    let stats = second
        .await
        .unwrap()
        .expect("the second instance stops cleanly");
    assert_once(&summary, 3000);
    assert!(stats.predicted > 0, "the second instance took over");
}
