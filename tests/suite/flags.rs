//! Bad settings stop a binary at start, naming the flag, before any data is read or any
//! connection opened: the data folder here is empty and nothing listens at the brokers given,
//! so a binary that got further would fail on those (or hang) instead.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run_bin(path: &str, args: &[&str], data_dir: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Command::new(path)
        .args(args)
        .env_remove("KAFKA_BROKERS")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("CENSUS_INSTANCE_ID")
        .env("CENSUS_DATA_DIR", data_dir)
        .env("CENSUS_MODELS_DIR", data_dir.join("models"))
        .env("CENSUS_PROCESSORS_DIR", data_dir.join("dataprocessors"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{path} {args:?} did not stop at start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_bad_setting_fails_at_start_naming_its_flag() {
    let empty = tempfile::tempdir().unwrap();
    let nowhere = "--brokers=127.0.0.1:1";
    let cases: [(&str, Vec<&str>, &str); 19] = [
        (
            env!("CARGO_BIN_EXE_predictor"),
            vec![nowhere, "--kafka-config", "acks=0"],
            "--kafka-config",
        ),
        (
            env!("CARGO_BIN_EXE_retrainer"),
            vec![nowhere, "--kafka-config", "enable.auto.commit=true"],
            "--kafka-config",
        ),
        (
            env!("CARGO_BIN_EXE_predictor"),
            vec![nowhere, "--max-batch", "0"],
            "--max-batch",
        ),
        (
            env!("CARGO_BIN_EXE_predictor"),
            vec!["--brokers", ""],
            "--brokers",
        ),
        (
            env!("CARGO_BIN_EXE_predictor"),
            vec!["--brokers", " , "],
            "--brokers",
        ),
        (
            env!("CARGO_BIN_EXE_predictor"),
            vec![nowhere, "--partitions", "0"],
            "--partitions",
        ),
        (
            env!("CARGO_BIN_EXE_retrainer"),
            vec![nowhere, "--retrain-every", "0"],
            "--retrain-every",
        ),
        (
            env!("CARGO_BIN_EXE_retrainer"),
            vec![nowhere, "--folds", "1"],
            "--folds",
        ),
        (
            env!("CARGO_BIN_EXE_producer"),
            vec![nowhere, "--rate", "-1"],
            "--rate",
        ),
        (
            env!("CARGO_BIN_EXE_producer"),
            vec![nowhere, "--rate", "NaN"],
            "--rate",
        ),
        (
            env!("CARGO_BIN_EXE_producer"),
            vec![nowhere, "--max-line-bytes", "0"],
            "--max-line-bytes",
        ),
        (
            env!("CARGO_BIN_EXE_initialize"),
            vec!["--offline", "--folds", "1"],
            "--folds",
        ),
        (
            env!("CARGO_BIN_EXE_initialize"),
            vec!["--offline", "--max-evals", "0"],
            "--max-evals",
        ),
        (
            env!("CARGO_BIN_EXE_initialize"),
            vec!["--offline", "--mlflow-uri", "./mlruns"],
            "--mlflow-uri",
        ),
        (
            env!("CARGO_BIN_EXE_retrainer"),
            vec![nowhere, "--mlflow-uri", "databricks"],
            "--mlflow-uri",
        ),
        (env!("CARGO_BIN_EXE_demo"), vec!["--rate", "-1"], "--rate"),
        (
            env!("CARGO_BIN_EXE_predictor"),
            vec![nowhere, "--scorer", "fastest"],
            "--scorer",
        ),
        (
            env!("CARGO_BIN_EXE_retrainer"),
            vec![nowhere, "--promotion", "sometimes"],
            "--promotion",
        ),
        (
            env!("CARGO_BIN_EXE_loadtest"),
            vec!["--max-batch", "0"],
            "--max-batch",
        ),
    ];
    for (bin, args, flag) in cases {
        let (code, stderr) = run_bin(bin, &args, empty.path());
        assert_eq!(code, Some(2), "{bin} {args:?}: a usage error\n{stderr}");
        assert!(
            stderr.contains(&format!("'{flag}")),
            "{bin} {args:?}: the message names {flag}\n{stderr}"
        );
        assert!(
            !stderr.contains("adult.") && !stderr.contains("Kafka"),
            "{bin} {args:?}: nothing was read or connected\n{stderr}"
        );
    }
    // The same settings, valid, get past the flags (and then fail on the empty data folder).
    let (code, stderr) = run_bin(
        env!("CARGO_BIN_EXE_initialize"),
        &["--offline", "--folds", "2", "--max-evals", "1"],
        empty.path(),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("adult.data"), "{stderr}");
}

#[test]
fn contradictory_flags_fail_at_start_naming_them() {
    let empty = tempfile::tempdir().unwrap();
    let nowhere = "--brokers=127.0.0.1:1";
    let cases: [(&str, Vec<&str>, &[&str]); 11] = [
        (
            env!("CARGO_BIN_EXE_retrainer"),
            vec![
                nowhere,
                "--gate-min-labels",
                "500",
                "--gate-max-labels",
                "400",
            ],
            &["'--gate-max-labels' (400)", "'--gate-min-labels' (500)"],
        ),
        // The default maximum (10,000) below a minimum given alone is refused too, not raised.
        (
            env!("CARGO_BIN_EXE_demo"),
            vec!["--gate-min-labels", "20000"],
            &[
                "'--gate-max-labels' (10000, its default)",
                "'--gate-min-labels'",
            ],
        ),
        (
            env!("CARGO_BIN_EXE_retrainer"),
            vec![nowhere, "--promotion", "always", "--gate-alpha", "0.1"],
            &["'--gate-alpha'", "'--promotion always'"],
        ),
        (
            env!("CARGO_BIN_EXE_predictor"),
            vec![nowhere, "--exactly-once", "--instance-id=none"],
            &["'--exactly-once'", "instance name"],
        ),
        (
            env!("CARGO_BIN_EXE_predictor"),
            vec![
                nowhere,
                "--exactly-once",
                "--instance-id=a",
                "--batches-in-flight=2",
            ],
            &["'--exactly-once'", "'--batches-in-flight"],
        ),
        (
            env!("CARGO_BIN_EXE_loadtest"),
            vec!["--exactly-once"],
            &["'--exactly-once'", "'--brokers'"],
        ),
        (
            env!("CARGO_BIN_EXE_loadtest"),
            vec!["--predictors", "0"],
            &["'--predictors 0'", "'--brokers'"],
        ),
        (
            env!("CARGO_BIN_EXE_loadtest"),
            vec![nowhere, "--predictors", "0", "--max-batch", "64"],
            &["'--max-batch'", "'--predictors 0'"],
        ),
        (
            env!("CARGO_BIN_EXE_demo"),
            vec!["--no-dashboard", "--dashboard-addr", "127.0.0.1:0"],
            &["'--no-dashboard'", "'--dashboard-addr"],
        ),
        (
            env!("CARGO_BIN_EXE_initialize"),
            vec!["--offline", "--mlflow-wait-secs", "3"],
            &["--mlflow-uri"],
        ),
        (
            env!("CARGO_BIN_EXE_retrainer"),
            vec![nowhere, "--mlflow-model", "other"],
            &["--mlflow-uri"],
        ),
    ];
    for (bin, args, names) in cases {
        let (code, stderr) = run_bin(bin, &args, empty.path());
        assert_eq!(code, Some(2), "{bin} {args:?}: a usage error\n{stderr}");
        for name in names {
            assert!(
                stderr.contains(name),
                "{bin} {args:?}: the message names {name}\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("adult.") && !stderr.contains("Kafka"),
            "{bin} {args:?}: nothing was read or connected\n{stderr}"
        );
    }
    // Flags that agree get past the flags (and then fail on the empty data folder).
    let (code, stderr) = run_bin(
        env!("CARGO_BIN_EXE_initialize"),
        &[
            "--offline",
            "--mlflow-uri",
            "http://127.0.0.1:1",
            "--mlflow-wait-secs",
            "1",
        ],
        empty.path(),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("adult.data"), "{stderr}");
}
