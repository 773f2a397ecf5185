//! Junk on the registry's topic: records that do not parse, a bundle numbered far above the
//! others, and a second bundle for an existing version are ignored, with a reason, by every
//! reader — predictor, dashboard, `registry status` and retrainer — and stop none of them.

use std::time::Duration;

use census_stream::registry::records::{bundle_key, bundle_payload};
use census_stream::registry::{read_registry, Alias};
use census_stream::retrainer;
use census_stream::telemetry::ReasonLabel;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use crate::helpers::{own_dashboard, own_predictor, publish_champion, store_with_v1, test_kafka};
use crate::registry::{
    recorder, registry_command, retrainer_config, send_rows, versions_served, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_registry_is_ignored_by_every_reader() {
    let Some((dir, store)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;
    let v1 = store.read_files(1).unwrap();
    publish_champion(s, &v1).await;

    // Another bundle under v1's key: valid, but not the v1 first published.
    let mut other = v1.clone();
    other.model_text.extend_from_slice(b"\n");
    other.stamp(1);
    let junk: [(&str, Vec<u8>); 4] = [
        ("bundle/v999999999", b"any payload".to_vec()),
        ("alias/challenger", b"{not json".to_vec()),
        ("command/x", b"[]".to_vec()),
        (&bundle_key(1), bundle_payload(&other).unwrap()),
    ];
    let raw = s.producer().unwrap();
    for (key, payload) in &junk {
        raw.send(
            FutureRecord::to(&s.topics.models)
                .key(*key)
                .payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }

    // The predictor serves the first v1, and counts each junk record by its reason.
    let stop = CancellationToken::new();
    let mut pconf = own_predictor(s);
    pconf.store = None;
    let metrics = pconf.metrics.registry.clone();
    let predictor = tokio::spawn(census_stream::predictor::run(pconf, stop.clone()));
    assert_eq!(versions_served(s, 20).await, vec![1]);
    let ignored = |reason: &str| {
        metrics
            .records_ignored
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .get()
    };
    for reason in [
        "not_a_model_message",
        "bad_alias",
        "bad_record",
        "replaced_bundle",
    ] {
        assert_eq!(ignored(reason), 1, "{reason}");
    }

    // The dashboard shows v1 alone, and keeps serving its page.
    let board = census_stream::dashboard::start(
        own_dashboard(s, "127.0.0.1:0".parse().unwrap()),
        stop.clone(),
    )
    .await
    .unwrap();
    let url = format!("{}/state", board.url.trim_end_matches('/'));
    let mut versions = Vec::new();
    for _ in 0..100 {
        let body = ureq::get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let state: serde_json::Value = serde_json::from_str(&body).unwrap();
        versions = state["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        if !versions.is_empty() && state["champion"]["version"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(versions, vec![1]);

    // `registry status` reads past the junk and says what it ignored.
    let (ok, stdout, stderr) = registry_command(&kafka, &["status"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ignored 4 records"), "{stdout}");
    // The shared flags after the subcommand too, and the JSON for scripts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["status", "--json"])
        .args(crate::process::kafka_flags(&kafka))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["versions"], serde_json::json!([1]));
    assert_eq!(status["champion"]["version"], 1);
    assert_eq!(status["ignored"]["replaced_bundle"], 1);

    // The retrainer numbers after v1, not after v999999999, and goes on.
    let (events, on_retrain) = recorder();
    let config = retrainer_config(s, &store, dir.path().join("rows.jsonl"), "junk", 300);
    let running = tokio::spawn(retrainer::run(config, stop.clone(), on_retrain));
    send_rows(s, dir.path(), 0, 300).await;
    wait_for("a retrain", 90, || !events.lock().unwrap().is_empty()).await;
    assert_eq!(events.lock().unwrap()[0].version, 2);
    assert!(!running.is_finished() && !predictor.is_finished());
    let registry = read_registry(s).await.unwrap();
    assert_eq!(registry.versions().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(registry.version_of(Alias::Champion), Some(2));
    stop.cancel();
    assert_eq!(running.await.unwrap().unwrap().versions, vec![2]);
    predictor.await.unwrap().unwrap();
    board.finished().await.unwrap();
}
