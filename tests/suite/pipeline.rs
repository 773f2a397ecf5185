//! The at-least-once loop with batches in flight, driven by a worker whose deliveries the test
//! acknowledges (or fails) by hand, in any order, on the embedded broker (or on the Kafka named
//! by `KAFKA_BROKERS`): the next batches are read and sent while earlier ones wait, offsets are
//! committed in order and never past a batch not acknowledged, and shutdown finishes what is in
//! flight.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use census_stream::kafka::{BrokerError, InMessage};
use census_stream::stream::worker::{self, Batching, Delivery, Guarantee, Worker};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::{test_kafka, TestKafka};

/// A batch whose delivery has started: its place in the read order, its offsets, and the
/// switch that acknowledges it (`true`) or fails it (`false`).
struct Started {
    index: usize,
    last: i64,
    ack: oneshot::Sender<bool>,
}

/// A worker whose deliveries wait for the test.
struct Gated {
    read: usize,
    started: mpsc::UnboundedSender<Started>,
    committed: mpsc::UnboundedSender<usize>,
}

impl Worker for Gated {
    type Output = (usize, i64);
    type Delivered = usize;
    type Error = BrokerError;

    fn step(&mut self, batch: &[InMessage]) -> Result<(usize, i64), BrokerError> {
        self.read += 1;
        Ok((self.read, batch.iter().map(|m| m.offset).max().unwrap()))
    }

    fn deliver(&mut self, (index, last): (usize, i64)) -> Delivery<usize, BrokerError> {
        let (ack, acked) = oneshot::channel();
        self.started.send(Started { index, last, ack }).unwrap();
        Box::pin(async move {
            match acked.await {
                Ok(true) => Ok(index),
                _ => Err(BrokerError::Canceled {
                    topic: format!("batch {index}"),
                }),
            }
        })
    }

    async fn after_commit(&mut self, index: usize) -> Result<(), BrokerError> {
        self.committed.send(index).unwrap();
        Ok(())
    }
}

/// The loop running a [`Gated`] worker on a one-partition topic holding `records` records.
struct Running {
    _kafka: TestKafka,
    topic: String,
    consumer: Arc<StreamConsumer>,
    started: mpsc::UnboundedReceiver<Started>,
    committed: mpsc::UnboundedReceiver<usize>,
    stop: CancellationToken,
    task: JoinHandle<Result<Gated, BrokerError>>,
}

async fn start(records: usize, max_batch: usize, in_flight: usize) -> Running {
    let kafka = test_kafka(1).await;
    let topic = kafka.settings.topics.requests.clone();
    let producer = kafka.settings.producer().unwrap();
    for i in 0..records {
        let key = i.to_string();
        let record = FutureRecord::to(&topic).key(&key).payload("{}");
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let group = format!("pipeline-{:08x}", rand::random::<u32>());
    let consumer = Arc::new(kafka.settings.consumer(&group).unwrap());
    consumer.subscribe(&[&topic]).unwrap();
    let (started_tx, started) = mpsc::unbounded_channel();
    let (committed_tx, committed) = mpsc::unbounded_channel();
    let worker = Gated {
        read: 0,
        started: started_tx,
        committed: committed_tx,
    };
    let batching = Batching {
        name: "gated".into(),
        max_batch: NonZeroUsize::new(max_batch).unwrap(),
        linger: Duration::ZERO,
        in_flight: NonZeroUsize::new(in_flight).unwrap(),
    };
    let stop = CancellationToken::new();
    let (c, s) = (consumer.clone(), stop.clone());
    let task = tokio::spawn(async move {
        worker::run(&c, &batching, &Guarantee::AtLeastOnce, worker, &s).await
    });
    Running {
        _kafka: kafka,
        topic,
        consumer,
        started,
        committed,
        stop,
        task,
    }
}

impl Running {
    async fn next_started(&mut self) -> Started {
        tokio::time::timeout(Duration::from_secs(30), self.started.recv())
            .await
            .expect("a batch starts its delivery")
            .expect("the worker lives")
    }

    async fn next_committed(&mut self) -> usize {
        tokio::time::timeout(Duration::from_secs(10), self.committed.recv())
            .await
            .expect("a batch is committed")
            .expect("the worker lives")
    }

    /// Nothing more starts nor is committed for a while.
    async fn assert_quiet(&mut self, what: &str) {
        tokio::time::sleep(Duration::from_millis(700)).await;
        if let Ok(s) = self.started.try_recv() {
            panic!("{what}: batch {} started its delivery", s.index);
        }
        if let Ok(i) = self.committed.try_recv() {
            panic!("{what}: batch {i} was committed");
        }
    }
}

/// The group's committed offset of the topic's partition, if any.
async fn committed_offset(consumer: &Arc<StreamConsumer>, topic: &str) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let c = consumer.clone();
    let committed =
        tokio::task::spawn_blocking(move || c.committed_offsets(tpl, Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
    match committed.find_partition(topic, 0).unwrap().offset() {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_flight_are_committed_in_read_order_and_never_past_one_unacknowledged() {
    let mut run = start(200, 10, 3).await;
    // Three batches read, stepped and sent while none is acknowledged; not a fourth.
    let b1 = run.next_started().await;
    let b2 = run.next_started().await;
    let b3 = run.next_started().await;
    assert_eq!((b1.index, b2.index, b3.index), (1, 2, 3));
    run.assert_quiet("3 batches in flight").await;

    // The later two acknowledged first: nothing is committed past the first.
    b3.ack.send(true).unwrap();
    b2.ack.send(true).unwrap();
    run.assert_quiet("batch 1 unacknowledged").await;
    assert_eq!(
        committed_offset(&run.consumer, &run.topic).await,
        None,
        "committed past batch 1"
    );

    // The first acknowledged: all three committed, in order, up to the third's end.
    let last = b3.last;
    b1.ack.send(true).unwrap();
    for expected in 1..=3 {
        assert_eq!(run.next_committed().await, expected);
    }
    assert_eq!(
        committed_offset(&run.consumer, &run.topic).await,
        Some(last + 1)
    );

    // Batch 5 acknowledged, then batch 4 fails: the loop ends with the error, and nothing past
    // batch 3 is committed, not even at its final commit.
    let b4 = run.next_started().await;
    let b5 = run.next_started().await;
    assert_eq!((b4.index, b5.index), (4, 5));
    b5.ack.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    b4.ack.send(false).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), run.task)
        .await
        .expect("the loop ends");
    assert!(
        matches!(result, Ok(Err(BrokerError::Canceled { .. }))),
        "the loop ends with the delivery's error"
    );
    assert!(
        run.committed.try_recv().is_err(),
        "nothing after batch 3 was committed"
    );
    assert_eq!(
        committed_offset(&run.consumer, &run.topic).await,
        Some(last + 1),
        "the commit stays after batch 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_batch_in_flight_the_next_is_read_after_the_commit_and_shutdown_finishes_it() {
    let mut run = start(100, 10, 1).await;
    let b1 = run.next_started().await;
    run.assert_quiet("1 batch in flight").await;
    b1.ack.send(true).unwrap();
    assert_eq!(run.next_committed().await, 1);
    assert_eq!(
        committed_offset(&run.consumer, &run.topic).await,
        Some(b1.last + 1)
    );

    // Shutdown with a batch in flight: it is acknowledged, stored and committed before the
    // loop returns.
    let b2 = run.next_started().await;
    run.stop.cancel();
    run.assert_quiet("shutdown, batch 2 unacknowledged").await;
    assert!(!run.task.is_finished(), "the loop waits for batch 2");
    b2.ack.send(true).unwrap();
    let worker = tokio::time::timeout(Duration::from_secs(10), run.task)
        .await
        .expect("the loop ends")
        .unwrap()
        .expect("a clean stop");
    assert_eq!(worker.read, 2, "no batch read after the shutdown");
    assert_eq!(run.committed.recv().await, Some(2));
    assert_eq!(
        committed_offset(&run.consumer, &run.topic).await,
        Some(b2.last + 1)
    );
}
