//! MLflow tracking against a real tracking server (the one `CENSUS_TEST_MLFLOW_URI` names;
//! scripts/test.sh starts one): `initialize` and a retrain logged as runs and model versions,
//! read back through MLflow's REST API; and a server that is down stops nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use census_stream::bundle::BundleStore;
use census_stream::retrainer::{self, Event, Promotion, RetrainEvent};
use census_stream::tracking::{Tracker, TrackingConfig};
use census_stream::util::atomic_file::sha256_hex;

use crate::helpers::{adult_dir, own_retrainer, scoring, small_search, test_kafka};
use crate::registry::send_rows;

/// The tracking server of the tests. In CI a missing one fails the test; elsewhere the test is
/// skipped, saying so.
fn mlflow_uri() -> Option<String> {
    match std::env::var("CENSUS_TEST_MLFLOW_URI") {
        Ok(uri) if !uri.is_empty() => Some(uri),
        _ if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => panic!(
            "CI runs the MLflow tests: set CENSUS_TEST_MLFLOW_URI to a tracking server \
             (scripts/test.sh starts one)"
        ),
        _ => {
            eprintln!(
                "skipping: CENSUS_TEST_MLFLOW_URI names no MLflow tracking server \
                 (scripts/test.sh starts one)"
            );
            None
        }
    }
}

/// `initialize` as a user runs it: a small search, into `dir`, with `extra` flags.
fn initialize(dir: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_initialize"))
        .args([
            "--offline",
            "--max-evals",
            "2",
            "--folds",
            "3",
            "--seed",
            "1",
        ])
        .arg("--data-dir")
        .arg(adult_dir().unwrap())
        .arg("--models-dir")
        .arg(dir.join("models"))
        .arg("--processors-dir")
        .arg(dir.join("dataprocessors"))
        .args(extra)
        .env_remove("MLFLOW_TRACKING_URI")
        .env("RUST_LOG", "info")
        .output()
        .expect("initialize runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A client of the tracking server's REST API.
struct Api(String);

impl Api {
    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Value {
        let mut r = ureq::get(format!("{}/api/2.0/mlflow/{endpoint}", self.0));
        for (k, v) in query {
            r = r.query(*k, *v);
        }
        let text = r.call().unwrap().body_mut().read_to_string().unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn post(&self, endpoint: &str, body: Value) -> Value {
        let text = ureq::post(format!("{}/api/2.0/mlflow/{endpoint}", self.0))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn artifact(&self, artifact_uri: &str, path: &str) -> Vec<u8> {
        let root = artifact_uri.strip_prefix("mlflow-artifacts:/").unwrap();
        ureq::get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{root}/{path}",
            self.0
        ))
        .call()
        .unwrap()
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap()
    }
}

fn pairs(v: &Value) -> BTreeMap<String, String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let value = match &p["value"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (p["key"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_and_a_retrain_are_runs_and_model_versions_and_the_champion_alias_follows() {
    let (Some(uri), Some(_)) = (mlflow_uri(), adult_dir()) else {
        return;
    };
    // An experiment of this test's own; the registered model is the default one.
    let experiment = format!("census-stream-test-{:08x}", rand::random::<u32>());
    let model = "census-income";
    let dir = tempfile::tempdir().unwrap();
    let store = BundleStore::new(dir.path().join("models"), dir.path().join("dataprocessors"));

    let (ok, stderr) = initialize(
        dir.path(),
        &["--mlflow-uri", &uri, "--mlflow-experiment", &experiment],
    );
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");

    let kafka = test_kafka(2).await;
    let mut config = own_retrainer(&kafka.settings, store.clone());
    config.data_dir = adult_dir().unwrap();
    config.rows_file = dir.path().join("rows.jsonl");
    config.retrain_every = 300.try_into().unwrap();
    config.search = small_search(2);
    config.promotion = Promotion::Always;
    let tracker = Tracker::start(TrackingConfig {
        uri: uri.clone(),
        experiment: experiment.clone(),
        model_name: model.into(),
    });
    config.tracking = Some(tracker.clone());
    let events: Arc<Mutex<Vec<RetrainEvent>>> = Arc::default();
    let seen = events.clone();
    let stop = CancellationToken::new();
    let service = tokio::spawn(retrainer::run(config, stop.clone(), move |e| {
        if let Event::Retrained(r) = e {
            seen.lock().unwrap().push(r.clone())
        }
    }));
    send_rows(&kafka.settings, dir.path(), 0, 300).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while events.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "timed out waiting for v2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    assert_eq!(service.await.unwrap().unwrap().versions, vec![2]);
    let left = tokio::task::spawn_blocking(move || tracker.wait(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(left, 0, "everything logged");

    tokio::task::spawn_blocking(move || check_server(&Api(uri), &experiment, model, &store))
        .await
        .unwrap();
}

/// What the server holds after `initialize` and one retrain into `store`.
fn check_server(api: &Api, experiment: &str, model: &str, store: &BundleStore) {
    let exp = api.get(
        "experiments/get-by-name",
        &[("experiment_name", experiment)],
    );
    let exp_id = exp["experiment"]["experiment_id"].as_str().unwrap();
    let runs = api.post("runs/search", json!({"experiment_ids": [exp_id]}));
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let mut run_of_version = BTreeMap::new();
    for run in runs {
        let info = &run["info"];
        let run_id = info["run_id"].as_str().unwrap();
        assert_eq!(info["status"], "FINISHED", "{info}");
        let tags = pairs(&run["data"]["tags"]);
        let version: u32 = tags["bundle_version"].parse().unwrap();
        let manifest = store.read_files(version).unwrap().manifest;
        assert_eq!(tags["bundle_sha256"], manifest.bundle_sha256());
        let params = pairs(&run["data"]["params"]);
        assert_eq!(
            params["num_leaves"],
            manifest.hyperparams.num_leaves.to_string()
        );
        assert_eq!(params["evaluations"], "2");
        assert_eq!(params["cv_folds"], "3");
        let metrics = pairs(&run["data"]["metrics"]);
        let best: f64 = metrics["best_cv_log_loss"].parse().unwrap();
        assert!((best - manifest.cv.log_loss).abs() < 1e-12);
        // Test metrics for initialize's version; a retrain has none (the stream replays
        // adult.test).
        assert_eq!(
            metrics.contains_key("test_roc_auc"),
            manifest.test_metrics.is_some()
        );
        // The calibration in training, as the manifest records it.
        let c = manifest
            .calibration
            .as_ref()
            .expect("calibrated in training");
        let platt_a: f64 = metrics["platt_a"].parse().unwrap();
        assert!(
            (platt_a - c.platt.a).abs() < 1e-12,
            "{platt_a} against {c:?}"
        );
        let history = api.get(
            "metrics/get-history",
            &[("run_id", run_id), ("metric_key", "cv_log_loss")],
        );
        let points = history["metrics"].as_array().unwrap();
        assert_eq!(
            points.len(),
            manifest.cv.evaluations,
            "one point an evaluation"
        );
        let steps: Vec<i64> = points.iter().map(|p| p["step"].as_i64().unwrap()).collect();
        assert_eq!(steps, [1, 2]);
        let lowest = points
            .iter()
            .map(|p| p["value"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert!((lowest - manifest.cv.log_loss).abs() < 1e-12);
        // The artifacts are the bundle's files, byte for byte.
        let artifact_uri = info["artifact_uri"].as_str().unwrap();
        let model_file = api.artifact(artifact_uri, &format!("models/{}", manifest.model_file));
        assert_eq!(sha256_hex(&model_file), manifest.model_sha256);
        let processor = api.artifact(
            artifact_uri,
            &format!("dataprocessors/{}", manifest.processor_file),
        );
        assert_eq!(sha256_hex(&processor), manifest.processor_sha256);
        let manifest_name = census_stream::bundle::manifest_file(version);
        let manifest_file = api.artifact(artifact_uri, &format!("models/{manifest_name}"));
        let on_disk = std::fs::read(store.models_dir().join(&manifest_name)).unwrap();
        assert_eq!(sha256_hex(&manifest_file), sha256_hex(&on_disk));
        run_of_version.insert(version, run_id.to_owned());
    }
    assert_eq!(run_of_version.keys().copied().collect::<Vec<_>>(), [1, 2]);

    // One model version per run, tagged with its bundle.
    let found = api.get(
        "model-versions/search",
        &[("filter", &format!("name='{model}'"))],
    );
    let ours: Vec<&Value> = found["model_versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| run_of_version.values().any(|r| v["run_id"] == r.as_str()))
        .collect();
    assert_eq!(ours.len(), 2, "{found}");
    for v in &ours {
        let bundle: u32 = pairs(&v["tags"])["bundle_version"].parse().unwrap();
        assert_eq!(v["run_id"], run_of_version[&bundle].as_str());
        assert!(v["source"].as_str().unwrap().ends_with("/artifacts"), "{v}");
    }
    // v2 became the champion, and so did its model version.
    let champion = api.get(
        "registered-models/alias",
        &[("name", model), ("alias", "champion")],
    );
    let mv = &champion["model_version"];
    assert_eq!(pairs(&mv["tags"])["bundle_version"], "2", "{champion}");
    assert_eq!(mv["run_id"], run_of_version[&2].as_str());
    let registered = api.get("registered-models/get", &[("name", model)]);
    assert_eq!(registered["registered_model"]["name"], model);
}

#[test]
fn a_tracking_server_that_is_down_stops_nothing_and_is_warned_about_once() {
    if adult_dir().is_none() {
        return;
    }
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uri = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (ok, stderr) = initialize(
        dir.path(),
        &["--mlflow-uri", &uri, "--mlflow-wait-secs", "3"],
    );
    assert!(ok, "{stderr}");
    let store = BundleStore::new(dir.path().join("models"), dir.path().join("dataprocessors"));
    assert_eq!(store.current().unwrap(), Some(1));
    store.load(1, scoring()).expect("the bundle is whole");
    let failed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(&format!("MLflow tracking at {uri} failed")))
        .collect();
    assert_eq!(failed.len(), 1, "warned once:\n{stderr}");
    assert!(failed[0].contains("WARN"), "{stderr}");
    assert!(
        stderr.contains("2 operation(s) not logged"),
        "the run and the alias are said lost:\n{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the wait is bounded"
    );
}
