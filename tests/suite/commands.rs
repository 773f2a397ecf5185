//! Operators' commands while a retrainer runs: the retrainer applies them itself and keeps
//! running (a refused command writes nothing and fences nobody), predictors follow, and a pin
//! holds the retrainer's promotions, across a restart too.

use std::time::Duration;

use census_stream::lifecycle::RetrainOutcome;
use census_stream::registry::{read_registry, Alias};
use census_stream::retrainer;
use tokio_util::sync::CancellationToken;

use crate::helpers::{adult_dir, own_group, own_predictor, store_with_v1, test_kafka};
use crate::registry::{
    recorder, registry_command, retrainer_config, send_rows, versions_served, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_go_through_the_running_retrainer_which_keeps_running_and_a_pin_holds() {
    let (Some(_), Some((dir, store))) = (adult_dir(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;
    let rows = dir.path().join("rows.jsonl");
    let group = format!("--retrainer-group={}", own_group(s, "cmd"));
    let registry = |args: &[&str]| {
        let mut all = vec![group.as_str()];
        all.extend_from_slice(args);
        registry_command(&kafka, &all)
    };

    // A retrainer (every retrain the champion at once) makes v2.
    let (events, on_retrain) = recorder();
    let stop = CancellationToken::new();
    let config = retrainer_config(s, &store, rows.clone(), "cmd", 300);
    let first = tokio::spawn(retrainer::run(config, stop.clone(), on_retrain));
    send_rows(s, dir.path(), 0, 300).await;
    wait_for("v2", 90, || events.lock().unwrap().len() == 1).await;
    let predictor_stop = CancellationToken::new();
    let mut pconf = own_predictor(s);
    pconf.store = None;
    let predictor = tokio::spawn(census_stream::predictor::run(pconf, predictor_stop.clone()));
    assert_eq!(versions_served(s, 20).await, vec![2]);

    // A refused command: nothing written, nobody fenced.
    let (ok, _, stderr) = registry(&["promote", "99", "--reason", "typo"]);
    assert!(!ok);
    assert!(stderr.contains("v99 is not in the registry"), "{stderr}");
    // A rollback, applied by the running retrainer, which keeps running; predictors follow.
    let (ok, stdout, stderr) = registry(&["rollback", "--reason", "v2 misbehaves"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("applied by the running retrainer: v1 is the champion (was v2)"),
        "{stdout}"
    );
    let champion = read_registry(s).await.unwrap();
    let champion = champion.alias(Alias::Champion).unwrap();
    assert_eq!((champion.version, champion.previous), (Some(1), Some(2)));
    assert!(champion.asked_by.is_some());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(versions_served(s, 20).await, vec![1]);
    assert!(!first.is_finished(), "the retrainer runs on");

    // Pinned, a retrain that would have been the champion is held.
    let (ok, stdout, stderr) = registry(&["pin", "1", "--reason", "audit"]);
    assert!(ok && stdout.contains("v1 pinned"), "{stdout}{stderr}");
    let (ok, _, stderr) = registry(&["promote", "2", "--reason", "while pinned"]);
    assert!(!ok && stderr.contains("pinned"), "{stderr}");
    send_rows(s, dir.path(), 300, 300).await;
    wait_for("v3", 90, || events.lock().unwrap().len() == 2).await;
    assert_eq!(
        events.lock().unwrap()[1].outcome,
        RetrainOutcome::Held { pinned: 1 }
    );
    stop.cancel();
    let stats = first
        .await
        .unwrap()
        .expect("the retrainer was never fenced");
    assert_eq!(stats.versions, vec![2, 3]);

    // The pin holds across a restart.
    let (events, on_retrain) = recorder();
    let stop = CancellationToken::new();
    let config = retrainer_config(s, &store, rows, "cmd", 300);
    let second = tokio::spawn(retrainer::run(config, stop.clone(), on_retrain));
    send_rows(s, dir.path(), 600, 300).await;
    wait_for("v4", 90, || !events.lock().unwrap().is_empty()).await;
    assert_eq!(
        events.lock().unwrap()[0].outcome,
        RetrainOutcome::Held { pinned: 1 }
    );
    assert_eq!(versions_served(s, 20).await, vec![1]);
    let (ok, stdout, stderr) = registry(&["unpin", "--reason", "audit done"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("v1 unpinned"), "{stdout}");
    let (ok, stdout, _) = registry(&["status"]);
    assert!(ok && stdout.contains("no (the gate decides)"), "{stdout}");
    assert!(stdout.contains("  pin 1 by "), "{stdout}");
    stop.cancel();
    second.await.unwrap().unwrap();
    predictor_stop.cancel();
    assert_eq!(predictor.await.unwrap().unwrap().versions, vec![2, 1]);
}
