//! The model registry on `census.models`: a retrainer rebuilds its local cache from it and
//! continues its numbering, and one retrainer publishes at a time (on the embedded broker, or
//! on the Kafka named by `KAFKA_BROKERS`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use census_stream::kafka::KafkaSettings;
use census_stream::lifecycle::RetrainOutcome;
use census_stream::producer::{self, Input, ProducerConfig};
use census_stream::registry::{read_registry, Alias, RegistryError};
use census_stream::retrainer::{
    self, Event, Promotion, RetrainEvent, RetrainerConfig, RetrainerError,
};
use census_stream::settings::Rate;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    adult_dir, own_predictor, own_retrainer, small_search, store_with_v1, temp_store, test_kafka,
};

/// Sends `n` labeled rows of adult.test, from row `skip`, as JSON lines.
pub async fn send_rows(settings: &KafkaSettings, work: &Path, skip: usize, n: usize) {
    let test = adult_dir().unwrap().join("adult.test");
    let rows = census_stream::data::read_labeled(&test).unwrap();
    let file = work.join(format!("rows-{skip}.jsonl"));
    let lines: Vec<String> = rows[skip..skip + n]
        .iter()
        .map(|r| {
            serde_json::json!({
                "income_bracket": census_stream::data::label_text(r.label),
                "record": r.row
            })
            .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut prod = ProducerConfig::new(settings.clone(), Input::JsonLines(file));
    prod.rate = Rate::UNLIMITED;
    prod.wait = Duration::from_millis(10);
    producer::run(prod, CancellationToken::new()).await.unwrap();
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

pub async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn retrainer_config(
    settings: &KafkaSettings,
    store: &census_stream::bundle::BundleStore,
    rows_file: PathBuf,
    group: &str,
    every: usize,
) -> RetrainerConfig {
    let mut c = own_retrainer(settings, store.clone());
    c.data_dir = adult_dir().unwrap();
    c.rows_file = rows_file;
    c.group = crate::helpers::own_group(settings, group);
    c.retrain_every = every.try_into().unwrap();
    c.search = small_search(2);
    // Every retrain becomes the champion: these tests are about numbering and fencing.
    c.promotion = Promotion::Always;
    c
}

type Events = Arc<Mutex<Vec<RetrainEvent>>>;

pub fn recorder() -> (Events, impl Fn(&Event) + Send + Sync + 'static) {
    let events: Events = Arc::default();
    let seen = events.clone();
    (events, move |e: &Event| {
        if let Event::Retrained(e) = e {
            seen.lock().unwrap().push(e.clone())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrainer_with_empty_folders_rebuilds_them_from_the_registry_and_continues_numbering() {
    let (Some(_), Some((dir_a, store_a))) = (adult_dir(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;

    let (events, on_retrain) = recorder();
    let stop = CancellationToken::new();
    let a = retrainer_config(s, &store_a, dir_a.path().join("rows.jsonl"), "ra", 300);
    let first = tokio::spawn(retrainer::run(a, stop.clone(), on_retrain));
    send_rows(s, dir_a.path(), 0, 300).await;
    wait_for("v2", 60, || !events.lock().unwrap().is_empty()).await;
    stop.cancel();
    assert_eq!(first.await.unwrap().unwrap().versions, vec![2]);

    // A new machine: empty folders.
    let (dir_b, store_b) = temp_store();
    assert_eq!(store_b.versions().unwrap(), Vec::<u32>::new());
    let (events, on_retrain) = recorder();
    let stop = CancellationToken::new();
    let b = retrainer_config(s, &store_b, dir_b.path().join("rows.jsonl"), "rb", 300);
    let second = tokio::spawn(retrainer::run(b, stop.clone(), on_retrain));
    wait_for("the cache", 30, || {
        store_b.current().ok().flatten() == Some(2)
    })
    .await;
    assert_eq!(store_b.versions().unwrap(), vec![1, 2]);
    for v in [1, 2] {
        assert_eq!(
            store_b.read_files(v).unwrap(),
            store_a.read_files(v).unwrap(),
            "v{v} cached as published"
        );
    }
    send_rows(s, dir_b.path(), 300, 300).await;
    wait_for("v3", 60, || !events.lock().unwrap().is_empty()).await;
    stop.cancel();
    assert_eq!(second.await.unwrap().unwrap().versions, vec![3]);
    let registry = read_registry(s).await.unwrap();
    assert_eq!(registry.versions().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(registry.version_of(Alias::Champion), Some(3));
    assert_eq!(store_b.current().unwrap(), Some(3));
    assert_eq!(
        store_b.read_files(3).unwrap().manifest.parent_version,
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrainer_whose_store_is_emptied_while_it_runs_never_publishes_a_number_twice() {
    let (Some(_), Some((dir, store))) = (adult_dir(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;
    let (events, on_retrain) = recorder();
    let stop = CancellationToken::new();
    let mut c = retrainer_config(s, &store, dir.path().join("rows.jsonl"), "rw", 300);
    // Shuffled labels are refused by the gate's offline check: v1 stays the champion and the
    // parent of every retrain, so the store alone remembers v2 on this side.
    c.promotion = Promotion::Gate(Default::default());
    c.shuffle_labels = true;
    let run = tokio::spawn(retrainer::run(c, stop.clone(), on_retrain));
    send_rows(s, dir.path(), 0, 300).await;
    wait_for("v2", 60, || events.lock().unwrap().len() == 1).await;
    let first = read_registry(s).await.unwrap();
    let v2 = first.bundle(2).expect("v2 published").to_vec();
    for file in [
        store.models_dir().join("manifest_v0002.json"),
        store.models_dir().join("model_v0002.txt"),
        store.processors_dir().join("dataprocessor_v0002.bin"),
    ] {
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    assert_eq!(store.versions().unwrap(), vec![1]);

    send_rows(s, dir.path(), 300, 300).await;
    wait_for("the next version", 60, || events.lock().unwrap().len() == 2).await;
    stop.cancel();
    assert_eq!(run.await.unwrap().unwrap().versions, vec![2, 3]);
    let registry = read_registry(s).await.unwrap();
    assert_eq!(registry.versions().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(registry.bundle(2), Some(&v2[..]), "v2 as first published");
    assert_eq!(registry.version_of(Alias::Champion), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_retrainer_fences_the_older_which_publishes_nothing_more() {
    let (Some((dir_a, store_a)), Some((dir_b, store_b))) = (store_with_v1(), store_with_v1())
    else {
        return;
    };
    let kafka = test_kafka(2).await;
    if kafka.is_embedded() {
        // librdkafka's mock cluster hands a transactional id a new producer id without fencing
        // the older one; the test command runs this on the real broker.
        eprintln!("skipping: fencing needs a real broker (KAFKA_BROKERS)");
        return;
    }
    let s = &kafka.settings;
    let rows_b = dir_b.path().join("rows.jsonl");

    let stop = CancellationToken::new();
    let a = retrainer_config(s, &store_a, dir_a.path().join("rows.jsonl"), "fa", 300);
    let older = tokio::spawn(retrainer::run(a, stop.clone(), |_| {}));
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_registry(s).await.unwrap().version_of(Alias::Champion) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the first retrainer bootstraps v1"
        );
    }

    let (events, on_retrain) = recorder();
    let b = retrainer_config(s, &store_b, rows_b.clone(), "fb", 600);
    let newer = tokio::spawn(retrainer::run(b, stop.clone(), on_retrain));
    // The newer one consumes only after it took over the registry.
    send_rows(s, dir_b.path(), 0, 10).await;
    wait_for("the newer retrainer", 30, || lines_in(&rows_b) >= 10).await;

    // The older one's retrain is due at 300 rows: its publish is refused.
    send_rows(s, dir_b.path(), 10, 290).await;
    let err = tokio::time::timeout(Duration::from_secs(60), older)
        .await
        .expect("the older retrainer stops")
        .unwrap()
        .expect_err("the older retrainer is fenced");
    assert!(
        matches!(err, RetrainerError::Registry(RegistryError::Fenced { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("fenced"), "{err}");
    assert_eq!(store_a.versions().unwrap(), vec![1], "nothing of its own");
    let registry = read_registry(s).await.unwrap();
    assert_eq!(registry.versions().collect::<Vec<_>>(), vec![1]);

    // The newer one publishes.
    send_rows(s, dir_b.path(), 300, 300).await;
    wait_for("the newer retrainer's v2", 60, || {
        !events.lock().unwrap().is_empty()
    })
    .await;
    stop.cancel();
    assert_eq!(newer.await.unwrap().unwrap().versions, vec![2]);
    let registry = read_registry(s).await.unwrap();
    assert_eq!(registry.versions().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(registry.version_of(Alias::Champion), Some(2));
    assert_eq!(
        store_b
            .read_files(2)
            .unwrap()
            .manifest
            .training_data
            .stream_rows,
        600
    );
}

/// Runs the `registry` binary against the test's Kafka.
pub fn registry_command(
    kafka: &crate::helpers::TestKafka,
    args: &[&str],
) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(crate::process::kafka_flags(kafka))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("registry runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The versions of the predictions of `n` requests.
pub async fn versions_served(settings: &KafkaSettings, n: usize) -> Vec<u32> {
    let mut prod = ProducerConfig::new(
        settings.clone(),
        Input::Uci(adult_dir().unwrap().join("adult.test")),
    );
    prod.limit = Some(n);
    prod.rate = Rate::UNLIMITED;
    prod.wait = Duration::from_secs(30);
    let summary = producer::run(prod, CancellationToken::new()).await.unwrap();
    assert!(summary.missing.is_empty());
    let mut v: Vec<u32> = summary
        .predictions
        .iter()
        .map(|p| p.model_version)
        .collect();
    v.dedup();
    v
}

/// Saves a copy of v1 as v2 in `store`, then publishes v1 as champion and v2 as champion over
/// it. Returns v2's version.
async fn publish_v1_then_v2(s: &KafkaSettings, store: &census_stream::bundle::BundleStore) -> u32 {
    use census_stream::registry::{publisher_id, AliasRecord, Publisher};
    let v2 = store
        .save(store.read_files(1).unwrap(), true)
        .unwrap()
        .version;
    let publisher = Publisher::start(s, &publisher_id(&s.topics.models))
        .await
        .unwrap();
    let alias = |v, previous| AliasRecord::new(Alias::Champion, Some(v), previous, "test");
    publisher
        .publish(Some(&store.read_files(1).unwrap()), &[alias(1, None)])
        .await
        .unwrap();
    publisher
        .publish(Some(&store.read_files(v2).unwrap()), &[alias(v2, Some(1))])
        .await
        .unwrap();
    v2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_roll_back_and_promote_by_hand_and_predictors_follow() {
    use census_stream::predictor;

    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;
    // v1, then v2 as champion over it.
    assert_eq!(publish_v1_then_v2(s, &store).await, 2);

    let stop = CancellationToken::new();
    let mut pconf = own_predictor(s);
    pconf.store = None;
    let predictor = tokio::spawn(predictor::run(pconf, stop.clone()));
    assert_eq!(versions_served(s, 50).await, vec![2]);

    // No retrainer runs (the mock cluster cannot list groups to tell).
    let command = |args: &[&str]| {
        let mut all = vec!["--no-retrainer"];
        all.extend_from_slice(args);
        registry_command(&kafka, &all)
    };
    let (ok, stdout, stderr) = command(&["rollback", "--reason", "v2 misbehaves"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("applied (no retrainer running): v1 is the champion (was v2)"),
        "{stdout}"
    );
    let registry = read_registry(s).await.unwrap();
    let champion = registry.alias(Alias::Champion).unwrap();
    assert_eq!((champion.version, champion.previous), (Some(1), Some(2)));
    assert_eq!(champion.reason, "rollback command: v2 misbehaves");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(versions_served(s, 50).await, vec![1]);

    let (ok, _, stderr) = command(&["promote", "2", "--reason", "fixed"]);
    assert!(ok, "{stderr}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(versions_served(s, 50).await, vec![2]);

    let (ok, _, stderr) = command(&["promote", "9", "--reason", "typo"]);
    assert!(!ok);
    assert!(stderr.contains("v9 is not in the registry"), "{stderr}");
    let (ok, stdout, _) = registry_command(&kafka, &["status"]);
    assert!(ok && stdout.contains("promote command: fixed"), "{stdout}");

    stop.cancel();
    assert_eq!(predictor.await.unwrap().unwrap().versions, vec![2, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predictor_started_on_an_older_local_bundle_answers_its_backlog_with_the_champion() {
    use census_stream::predictor;

    // The registry names v2; the predictor's own folders hold only v1 (a predictor restarted
    // after a promotion, or on a machine whose folders were never updated).
    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let Some((_local_dir, local)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;
    let v2 = publish_v1_then_v2(s, &store).await;

    // A backlog waits before the predictor starts: it is read as soon as the predictor joins.
    let mut backlog = ProducerConfig::new(
        s.clone(),
        Input::Uci(adult_dir().unwrap().join("adult.test")),
    );
    backlog.limit = Some(200);
    backlog.rate = Rate::UNLIMITED;
    backlog.wait = Duration::ZERO;
    producer::run(backlog, CancellationToken::new())
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let mut pconf = own_predictor(s);
    pconf.store = Some(local);
    let predictor = tokio::spawn(predictor::run(pconf, stop.clone()));
    assert_eq!(versions_served(s, 50).await, vec![v2]);
    stop.cancel();
    let stats = predictor.await.unwrap().unwrap();
    // Every batch, the backlog's first included, was scored by the champion the registry names.
    assert_eq!(stats.versions, vec![v2]);
    assert_eq!(stats.predicted, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundles_on_the_topic_are_refused_and_the_predictor_keeps_following() {
    use census_stream::predictor;
    use census_stream::registry::{AliasRecord, Publisher};

    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;
    let publisher = Publisher::start(s, "test-bad-bundles").await.unwrap();
    let alias = |v, previous| AliasRecord::new(Alias::Champion, Some(v), previous, "test");
    let good = store.read_files(1).unwrap();
    publisher
        .publish(Some(&good), &[alias(1, None)])
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let mut pconf = own_predictor(s);
    pconf.store = None;
    let metrics = pconf.metrics.clone();
    let predictor = tokio::spawn(predictor::run(pconf, stop.clone()));
    assert_eq!(versions_served(s, 20).await, vec![1]);

    // Champions that cannot serve: a NUL byte in the model (it used to panic the loader and
    // end the follower), then a model without trees; and a bundle numbered u32::MAX.
    let mut with_nul = good.clone();
    with_nul.model_text.splice(10..10, [0u8]);
    with_nul.stamp(2);
    let mut no_trees = good.clone();
    let text = String::from_utf8(no_trees.model_text.clone()).unwrap();
    let (head, rest) = text.split_at(text.find("Tree=0").unwrap());
    let head: String = head
        .lines()
        .filter(|l| !l.starts_with("tree_sizes="))
        .map(|l| format!("{l}\n"))
        .collect();
    no_trees.model_text =
        format!("{head}{}", &rest[rest.find("end of trees").unwrap()..]).into_bytes();
    no_trees.stamp(3);
    let mut huge_version = good.clone();
    huge_version.stamp(u32::MAX);
    for (files, previous) in [(&with_nul, 1), (&no_trees, 2)] {
        publisher
            .publish(
                Some(files),
                &[alias(files.manifest.version, Some(previous))],
            )
            .await
            .unwrap();
    }
    publisher.publish(Some(&huge_version), &[]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!predictor.is_finished(), "the predictor is still serving");
    assert_eq!(
        versions_served(s, 20).await,
        vec![1],
        "the last good champion serves on"
    );
    // Each refusal counted by its reason (the u32::MAX record is skipped before any load).
    let refused = |reason: &str| {
        metrics
            .registry
            .bundles_refused
            .get_or_create(&census_stream::telemetry::ReasonLabel {
                reason: reason.into(),
            })
            .get()
    };
    assert_eq!(refused("model"), 2, "the NUL byte and the tree-less model");

    // The follower is still following: a good champion after the bad ones is served.
    let mut v4 = good.clone();
    v4.stamp(4);
    publisher
        .publish(Some(&v4), &[alias(4, Some(3))])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(versions_served(s, 20).await, vec![4]);
    // And a retrainer numbers after the highest good version, not after u32::MAX.
    assert_eq!(read_registry(s).await.unwrap().highest(), Some(4));
    stop.cancel();
    assert_eq!(predictor.await.unwrap().unwrap().versions, vec![1, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_too_large_for_the_topic_is_refused_and_the_retrainer_goes_on() {
    let (Some(_), Some((dir, store))) = (adult_dir(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(2).await;
    if kafka.is_embedded() {
        eprintln!("skipping: topic limits need a real broker (KAFKA_BROKERS)");
        return;
    }
    let s = &kafka.settings;
    let (events, on_retrain) = recorder();
    let stop = CancellationToken::new();
    let config = retrainer_config(s, &store, dir.path().join("rows.jsonl"), "rbig", 300);
    let running = tokio::spawn(retrainer::run(config, stop.clone(), on_retrain));
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_registry(s).await.unwrap().version_of(Alias::Champion) != Some(1) {
        assert!(Instant::now() < deadline, "v1 bootstrapped as champion");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The topic now takes no bundle: the next version is refused, and nothing else happens.
    crate::helpers::set_topic_limit(s, &s.topics.models, 10_000).await;
    send_rows(s, dir.path(), 0, 300).await;
    wait_for("a retrain", 60, || !events.lock().unwrap().is_empty()).await;
    let refused = events.lock().unwrap()[0].clone();
    assert_eq!(refused.version, 2);
    assert!(
        matches!(refused.outcome, RetrainOutcome::Refused { bytes, .. } if bytes > 10_000),
        "{}",
        refused.outcome
    );
    assert!(!running.is_finished(), "the retrainer goes on");
    let registry = read_registry(s).await.unwrap();
    assert_eq!(registry.versions().collect::<Vec<_>>(), vec![1]);
    assert_eq!(registry.version_of(Alias::Champion), Some(1));
    assert_eq!(store.versions().unwrap(), vec![1], "nothing kept locally");

    // With room again, the next retrain is published under the number that was refused.
    let room = census_stream::kafka::MAX_MESSAGE_BYTES + (1 << 20);
    crate::helpers::set_topic_limit(s, &s.topics.models, room).await;
    send_rows(s, dir.path(), 300, 300).await;
    wait_for("a second retrain", 60, || events.lock().unwrap().len() == 2).await;
    stop.cancel();
    assert_eq!(running.await.unwrap().unwrap().versions, vec![2]);
    let registry = read_registry(s).await.unwrap();
    assert_eq!(registry.versions().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(registry.version_of(Alias::Champion), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrainer_restarted_over_enough_stored_rows_retrains_without_a_new_record() {
    let (Some(_), Some((dir, store))) = (adult_dir(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;
    let rows = dir.path().join("rows.jsonl");
    let (events, on_retrain) = recorder();
    let stop = CancellationToken::new();
    let config = retrainer_config(s, &store, rows.clone(), "rdue", 10_000);
    let first = tokio::spawn(retrainer::run(config, stop.clone(), on_retrain));
    send_rows(s, dir.path(), 0, 300).await;
    wait_for("the rows stored", 30, || lines_in(&rows) >= 300).await;
    stop.cancel();
    assert!(first.await.unwrap().unwrap().versions.is_empty());
    assert!(events.lock().unwrap().is_empty());

    // Restarted with a threshold the stored rows already meet, and every record committed:
    // no record will come to prompt the retrain that is due.
    let (events, on_retrain) = recorder();
    let stop = CancellationToken::new();
    let config = retrainer_config(s, &store, rows.clone(), "rdue", 300);
    let second = tokio::spawn(retrainer::run(config, stop.clone(), on_retrain));
    wait_for("a retrain with no new record", 60, || {
        !events.lock().unwrap().is_empty()
    })
    .await;
    stop.cancel();
    assert_eq!(second.await.unwrap().unwrap().versions, vec![2]);
}
