//! Champion and challenger end to end: the gate keeps a bad challenger from ever serving, and
//! promotes a clearly better one, which every predictor then serves (on the embedded broker, or
//! on the Kafka named by `KAFKA_BROKERS`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use census_stream::bundle::BundleStore;
use census_stream::lifecycle::{Decided, GateOutcome, RetrainOutcome, TriggerKind};
use census_stream::predictor::{self, PredictorStats};
use census_stream::producer::{self, Input, ProducerConfig, Summary};
use census_stream::registry::{read_registry, Alias};
use census_stream::retrainer::{self, Event, RetrainerStats};
use census_stream::settings::Rate;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    adult_dir, own_predictor, own_retrainer, small_search, store_with_v1, test_kafka, weak_store,
    TestKafka,
};

struct Run {
    /// When the first gate decision was reported.
    decided_at_ms: Option<i64>,
    summary: Summary,
    predictors: Vec<PredictorStats>,
    retrainer: RetrainerStats,
    events: Vec<Event>,
}

/// How the retrains' labels are spoiled, if at all.
#[derive(Clone, Copy, PartialEq)]
enum Labels {
    True,
    /// Shuffled: bad challengers.
    Shuffled,
    /// This share of women's `>50K` labels turned: biased challengers.
    Biased(f64),
}

/// Two predictors and a gated retrainer over `store`, while `rows` rows of adult.test stream
/// at 500/s.
async fn run_pipeline(kafka: &TestKafka, store: &BundleStore, rows: usize, labels: Labels) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let predictors: Vec<_> = ["p1", "p2"]
        .iter()
        .map(|name| {
            let mut c = own_predictor(&kafka.settings);
            c.store = Some(store.clone());
            c.name = name.to_string();
            tokio::spawn(predictor::run(c, stop.clone()))
        })
        .collect();
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let decided_at: Arc<Mutex<Option<i64>>> = Arc::default();
    let (seen, decided) = (events.clone(), decided_at.clone());
    let mut rconf = own_retrainer(&kafka.settings, store.clone());
    rconf.data_dir = adult_dir().unwrap();
    rconf.rows_file = dir.path().join("rows.jsonl");
    rconf.retrain_every = 500.try_into().unwrap();
    rconf.search = small_search(2);
    rconf.shuffle_labels = labels == Labels::Shuffled;
    if let Labels::Biased(share) = labels {
        rconf.biased_challenger = Some(share);
    }
    let retrainer = tokio::spawn(retrainer::run(rconf, stop.clone(), move |e| {
        if matches!(e, Event::Gate(g) if g.decision.is_some()) {
            decided
                .lock()
                .unwrap()
                .get_or_insert(census_stream::stream::messages::now_ms());
        }
        seen.lock().unwrap().push(e.clone())
    }));
    let mut prod = ProducerConfig::new(
        kafka.settings.clone(),
        Input::Uci(adult_dir().unwrap().join("adult.test")),
    );
    prod.limit = Some(rows);
    prod.rate = Rate::new(500.0).unwrap();
    prod.wait = Duration::from_secs(60);
    let summary = producer::run(prod, CancellationToken::new()).await.unwrap();
    // The last labels reach the gate, and a retrain the stream triggered is reported (under
    // the suite's parallel load that can take several seconds after the stream).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline
        && !events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Retrained(_)))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let mut stats = Vec::new();
    for p in predictors {
        stats.push(p.await.unwrap().unwrap());
    }
    let retrainer = retrainer.await.unwrap().unwrap();
    let events = events.lock().unwrap().clone();
    let decided_at_ms = *decided_at.lock().unwrap();
    Run {
        decided_at_ms,
        summary,
        predictors: stats,
        retrainer,
        events,
    }
}

/// The retrains the run reported.
fn retrains(run: &Run) -> Vec<&census_stream::retrainer::RetrainEvent> {
    run.events
        .iter()
        .filter_map(|e| match e {
            Event::Retrained(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// What the retrainer reported, retrains and gate decisions, one per line: for a failure's
/// message.
fn story(events: &[Event]) -> String {
    let lines = events.iter().filter_map(|e| match e {
        Event::Retrained(r) => Some(format!("v{} on {} rows: {}", r.version, r.rows, r.outcome)),
        Event::Gate(g) => g
            .decision
            .as_ref()
            .map(|d| format!("{d:?} at n {}", g.evidence.n)),
        _ => None,
    });
    lines.collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenger_trained_on_shuffled_labels_is_never_shadowed_promoted_or_served() {
    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(3).await;
    let run = run_pipeline(&kafka, &store, 2000, Labels::Shuffled).await;

    assert!(run.summary.missing.is_empty());
    let retrains = retrains(&run);
    assert!(!retrains.is_empty(), "a bad challenger was trained");
    for r in &retrains {
        assert!(
            matches!(r.outcome, RetrainOutcome::RejectedOffline { .. }),
            "{}",
            r.outcome
        );
    }
    assert!(
        !run.events.iter().any(|e| matches!(e, Event::Gate(_))),
        "never shadowed, so never gated"
    );
    assert!(run
        .summary
        .predictions
        .iter()
        .all(|p| p.model_version == 1 && p.challenger_version.is_none()));
    for p in &run.predictors {
        assert_eq!(p.versions, vec![1]);
    }
    let registry = read_registry(&kafka.settings).await.unwrap();
    assert_eq!(registry.version_of(Alias::Champion), Some(1));
    assert_eq!(registry.version_of(Alias::Challenger), None);
    let rejected = registry.alias(Alias::Challenger).unwrap();
    assert!(rejected.reason.contains("rejected offline"), "{rejected:?}");
    assert_eq!(store.current().unwrap(), Some(1));
    let bad = store.read_files(2).unwrap().manifest;
    assert!(bad.training_data.shuffled_labels && !bad.promoted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenger_trained_where_women_s_high_incomes_were_turned_is_refused_as_unfair() {
    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(3).await;
    // 40 % of women's `>50K` labels turned: its log loss on adult.test within the margin of
    // v1's (+0.008 in four runs), its true-positive rate for women far lower (the gap widened
    // by +0.26 to +0.29, the interval's lower end +0.14 to +0.16 against ε 0.05). At 30 % the
    // lower end ranged +0.01 to +0.09 and one run in three was not refused for fairness.
    let run = run_pipeline(&kafka, &store, 1000, Labels::Biased(0.4)).await;
    let retrains = retrains(&run);
    assert!(!retrains.is_empty(), "a biased challenger was trained");
    for r in &retrains {
        let RetrainOutcome::RejectedOffline { check } = &r.outcome else {
            panic!("refused offline: {}", r.outcome);
        };
        eprintln!("v{}: {check}", r.version);
        assert!(
            check.contains("UNFAIR: fairness on adult.test: true-positive rate gap between sex"),
            "{check}"
        );
    }
    assert!(run
        .summary
        .predictions
        .iter()
        .all(|p| p.model_version == 1 && p.challenger_version.is_none()));
    let registry = read_registry(&kafka.settings).await.unwrap();
    assert_eq!(registry.version_of(Alias::Champion), Some(1));
    let rejected = registry.alias(Alias::Challenger).unwrap();
    assert!(rejected.reason.contains("UNFAIR"), "{rejected:?}");
    let biased = store.read_files(2).unwrap().manifest;
    assert_eq!(biased.training_data.biased_labels, Some(0.4));
    assert!(!biased.promoted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clearly_better_challenger_is_promoted_and_every_predictor_switches() {
    let Some((_dir, store)) = weak_store() else {
        return;
    };
    let kafka = test_kafka(3).await;

    // 30 s of stream: under the suite's parallel load the promotion can come 15 s in, and every
    // predictor must serve the new champion before the stream ends.
    let run = run_pipeline(&kafka, &store, 15_000, Labels::True).await;
    assert!(run.summary.missing.is_empty());

    let decision = run
        .events
        .iter()
        .find_map(|e| match e {
            Event::Gate(g) if g.decision.is_some() => Some(g.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the gate decided:\n{}", story(&run.events)));
    assert_eq!(
        decision.decision,
        Some(GateOutcome::Promoted {
            challenger: 2,
            champion: 1
        }),
        "{}",
        story(&run.events)
    );
    let settings = census_stream::lifecycle::gate::GateSettings::default();
    assert!(decision.evidence.n <= settings.max_labels);
    assert!(
        decision.evidence.interval[1] < -settings.delta,
        "{decision:?}"
    );
    eprintln!(
        "promoted after {} labeled requests: mean d {:.4}, interval {:?}",
        decision.evidence.n, decision.evidence.mean_d, decision.evidence.interval
    );
    // Every predictor moves on from v1 (one that joined its group late may never have served
    // it), and the last second of predictions all come from v2 or later.
    for p in &run.predictors {
        assert!(p.versions.last() >= Some(&2), "{p:?}");
    }
    // The predictions made 3 s after the promotion was published all come from v2 or later.
    let promoted_at = run.decided_at_ms.expect("the time of the decision");
    let after: Vec<_> = run
        .summary
        .predictions
        .iter()
        .filter(|p| p.predicted_at_ms > promoted_at + 3000)
        .collect();
    assert!(!after.is_empty(), "the stream went on after the promotion");
    assert!(
        after.iter().all(|p| p.model_version >= 2),
        "{:?}",
        run.retrainer.decisions
    );
    let registry = read_registry(&kafka.settings).await.unwrap();
    assert_eq!(registry.version_of(Alias::Champion), Some(2));
    let champion = registry.alias(Alias::Champion).unwrap();
    assert_eq!(champion.evidence.as_ref().unwrap().n, decision.evidence.n);
    assert_eq!(store.current().unwrap(), Some(2));
    // Then the former champion went on probation, in shadow, and v2 passed it (v1 is far worse).
    let d = &run.retrainer.decisions;
    let promoted = d.iter().position(|x| {
        *x == Decided::Gate(GateOutcome::Promoted {
            challenger: 2,
            champion: 1,
        })
    });
    let passed = d.iter().position(|x| {
        *x == Decided::Gate(GateOutcome::Kept {
            champion: 2,
            former: 1,
        })
    });
    assert!(
        matches!((promoted, passed), (Some(a), Some(b)) if a < b),
        "{d:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_retrainer_resumes_the_gate_from_the_rows_file() {
    // A weak champion, so that the retrain surely passes the offline check; the gate then gets
    // fewer labels than it needs to decide anything, and the retrainer stops.
    let Some((dir, store)) = weak_store() else {
        return;
    };
    let kafka = test_kafka(2).await;
    let rows_file = dir.path().join("rows.jsonl");
    let config = || {
        let mut c = own_retrainer(&kafka.settings, store.clone());
        c.data_dir = adult_dir().unwrap();
        c.rows_file = rows_file.clone();
        c.retrain_every = 300.try_into().unwrap();
        c.search = small_search(2);
        c
    };
    // Rows `from..to` of adult.test, as fast as possible: the second part is rows the
    // challenger was not trained on (the first rows again would be left out of its gate).
    let test_rows =
        census_stream::data::read_labeled(&adult_dir().unwrap().join("adult.test")).unwrap();
    let send = |from: usize, to: usize| {
        let file = dir.path().join(format!("rows{from}.jsonl"));
        let lines: Vec<String> = test_rows[from..to]
            .iter()
            .map(|r| {
                let label = census_stream::data::label_text(r.label);
                serde_json::json!({"income_bracket": label, "record": r.row}).to_string()
            })
            .collect();
        std::fs::write(&file, lines.join("\n")).unwrap();
        let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::JsonLines(file));
        prod.rate = Rate::UNLIMITED;
        prod.wait = Duration::from_millis(10);
        producer::run(prod, CancellationToken::new())
    };
    // The first run: a retrain makes v2 the challenger, then labels reach its gate.
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let seen = events.clone();
    let stop = CancellationToken::new();
    let first = tokio::spawn(retrainer::run(config(), stop.clone(), move |e| {
        seen.lock().unwrap().push(e.clone())
    }));
    send(0, 300).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Retrained(r) if r.outcome == RetrainOutcome::Challenger))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "v2 became the challenger"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send(300, 450).await.unwrap();
    // Rows it was trained on, again (a stream that repeats its input): never evidence for it.
    send(0, 50).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let stats = first.await.unwrap().unwrap();
    assert!(stats.decisions.is_empty(), "still undecided: {stats:?}");

    // What the gate has seen is derivable: the rows stored at or after the challenger's
    // cut-off, but for any equal (features and label) to a row it was trained on.
    let registry = read_registry(&kafka.settings).await.unwrap();
    let challenger = registry.alias(Alias::Challenger).unwrap().clone();
    assert_eq!(challenger.version, Some(2));
    let log = census_stream::retrainer::RowLog::open(&rows_file).unwrap();
    let key = |row: &census_stream::data::CensusRow, label: bool| {
        (serde_json::to_string(row).unwrap(), label)
    };
    let base = census_stream::data::read_labeled(&adult_dir().unwrap().join("adult.data")).unwrap();
    let trained: std::collections::HashSet<_> = base
        .iter()
        .map(|r| key(&r.row, r.label))
        .chain(
            log.rows()
                .iter()
                .filter(|r| !r.at_or_after(&challenger.from_offsets))
                .map(|r| key(&r.row, r.label)),
        )
        .collect();
    let after_cutoff: Vec<_> = log
        .rows()
        .iter()
        .filter(|r| r.at_or_after(&challenger.from_offsets))
        .collect();
    let counted = after_cutoff
        .iter()
        .filter(|r| !trained.contains(&key(&r.row, r.label)))
        .count() as u64;
    assert!(
        counted + 50 <= after_cutoff.len() as u64,
        "the 50 repeated rows are after the cut-off, and trained on"
    );
    assert!(counted > 0, "labels reached the gate");

    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let seen = events.clone();
    let stop = CancellationToken::new();
    let second = tokio::spawn(retrainer::run(config(), stop.clone(), move |e| {
        seen.lock().unwrap().push(e.clone())
    }));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let resumed = loop {
        let found = events.lock().unwrap().iter().find_map(|e| match e {
            Event::Gate(g) => Some(g.clone()),
            _ => None,
        });
        if let Some(g) = found {
            break g;
        }
        assert!(std::time::Instant::now() < deadline, "the gate resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.cancel();
    second.await.unwrap().unwrap();
    assert_eq!((resumed.challenger, resumed.champion), (2, 1));
    assert_eq!(resumed.evidence.n, counted, "{resumed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_promotion_flipped_labels_roll_back_and_the_loss_drift_trigger_retrains() {
    let Some((dir, store)) = weak_store() else {
        return;
    };
    let kafka = test_kafka(3).await;
    let stop = CancellationToken::new();
    let mut pconf = own_predictor(&kafka.settings);
    pconf.store = Some(store.clone());
    let predictor = tokio::spawn(predictor::run(pconf, stop.clone()));
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let seen = events.clone();
    let mut rconf = own_retrainer(&kafka.settings, store.clone());
    rconf.data_dir = adult_dir().unwrap();
    rconf.rows_file = dir.path().join("rows.jsonl");
    rconf.retrain_every = 500.try_into().unwrap();
    rconf.search = small_search(2);
    let retrainer = tokio::spawn(retrainer::run(rconf, stop.clone(), move |e| {
        seen.lock().unwrap().push(e.clone())
    }));
    let decided = |outcome: GateOutcome| {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Gate(g) if g.decision == Some(outcome)))
    };
    let promoted = GateOutcome::Promoted {
        challenger: 2,
        champion: 1,
    };
    // `n` rows of adult.test from `skip`, labels flipped or not, at 500/s.
    let send = |skip: usize, n: usize, flip: bool| {
        let rows =
            census_stream::data::read_labeled(&adult_dir().unwrap().join("adult.test")).unwrap();
        let lines: Vec<String> = rows[skip..skip + n]
            .iter()
            .map(|r| {
                let label = census_stream::data::label_text(r.label != flip);
                serde_json::json!({"income_bracket": label, "record": r.row}).to_string()
            })
            .collect();
        let file = dir.path().join(format!("send-{skip}.jsonl"));
        std::fs::write(&file, lines.join("\n")).unwrap();
        let mut prod = ProducerConfig::new(kafka.settings.clone(), Input::JsonLines(file));
        prod.rate = Rate::new(500.0).unwrap();
        prod.wait = Duration::from_secs(30);
        producer::run(prod, CancellationToken::new())
    };

    // The weak v1 is replaced by v2 on true labels (in small steps, so that the labels flip
    // before v1's probation can end on true labels).
    let mut skip = 0;
    while !decided(promoted) {
        assert!(
            skip < 8000,
            "v2 was promoted:\n{}",
            story(&events.lock().unwrap())
        );
        send(skip, 100, false).await.unwrap();
        skip += 100;
    }
    // Then the labels flip: confident v2 does worse than v1, on probation, on the same records,
    // and the champion's losses rise.
    let mut flipped = 0;
    while !decided(GateOutcome::RolledBack {
        to: 1,
        from: 2,
        unfair: false,
    }) {
        assert!(flipped < 6000, "rolled back");
        send(skip, 500, true).await.unwrap();
        (skip, flipped) = (skip + 500, flipped + 500);
    }
    // The champion's losses rose: the loss-drift trigger fired after the flip, and a retrain
    // followed (once the probation gate, which holds retrains back, had decided).
    let flip_at = events
        .lock()
        .unwrap()
        .iter()
        .position(|e| matches!(e, Event::Gate(g) if g.decision == Some(promoted)))
        .unwrap();
    let drift_then_retrain = || {
        let events = events.lock().unwrap();
        let drift = events[flip_at..]
            .iter()
            .position(|e| matches!(e, Event::Drift(f) if f.kind == TriggerKind::LossDrift));
        drift.is_some_and(|d| {
            events[flip_at + d..]
                .iter()
                .any(|e| matches!(e, Event::Retrained(_)))
        })
    };
    while !drift_then_retrain() {
        assert!(flipped < 10_000, "loss drift fired and a retrain followed");
        send(skip, 500, true).await.unwrap();
        (skip, flipped) = (skip + 500, flipped + 500);
    }
    stop.cancel();
    let stats = retrainer.await.unwrap().unwrap();
    predictor.await.unwrap().unwrap();
    eprintln!("decisions: {:?}", stats.decisions);
    let registry = read_registry(&kafka.settings).await.unwrap();
    let champion = registry.alias(Alias::Champion).unwrap();
    // v1 serves again (unless a later challenger trained on the flipped labels replaced it).
    assert!(
        champion.version == Some(1) || champion.reason.contains("promoted"),
        "{champion:?}"
    );
    assert!(
        stats
            .decisions
            .contains(&Decided::Gate(GateOutcome::RolledBack {
                to: 1,
                from: 2,
                unfair: false
            })),
        "{:?}",
        stats.decisions
    );
}
