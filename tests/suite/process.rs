//! The services as a user runs them: the real binaries as child processes, stopped with
//! signals (on the embedded broker, which child processes reach over TCP, or on the Kafka named
//! by `KAFKA_BROKERS`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::helpers::{adult_dir, store_with_v1, test_kafka, TestKafka};
use crate::registry::send_rows;

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn kafka_flags(kafka: &TestKafka) -> Vec<String> {
    let s = &kafka.settings;
    let mut flags = vec![
        format!("--brokers={}", s.brokers),
        format!("--requests-topic={}", s.topics.requests),
        format!("--predictions-topic={}", s.topics.predictions),
        format!("--dlq-topic={}", s.topics.dlq),
        format!("--models-topic={}", s.topics.models),
    ];
    // A consumer that stops polling for 6 s leaves its group: the test below would see it.
    for kv in [
        "session.timeout.ms=6000",
        "heartbeat.interval.ms=500",
        "max.poll.interval.ms=6000",
    ] {
        flags.push(format!("--kafka-config={kv}"));
    }
    flags
}

/// The members of `group`, if the broker answers (the embedded broker does not).
fn members(brokers: &str, group: &str) -> Option<(String, Vec<String>)> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .ok()?;
    let list = probe
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .ok()?;
    let g = list.groups().first()?;
    Some((
        g.state().to_owned(),
        g.members().iter().map(|m| m.id().to_owned()).collect(),
    ))
}

fn sigterm(child: &Child) {
    // SAFETY: kill with a child's pid and SIGTERM has no memory effects.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "SIGTERM sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_retrainer_mid_search_within_5_s_and_keeps_the_rows_of_the_search() {
    let (Some(data), Some((dir, _store))) = (adult_dir(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(2).await;
    let rows_file = dir.path().join("rows.jsonl");
    let log_file = dir.path().join("retrainer.log");
    let group = format!("retrainer-{:08x}", rand::random::<u32>());
    let mut child = Command::new(env!("CARGO_BIN_EXE_retrainer"))
        .args(kafka_flags(&kafka))
        .arg(format!("--group={group}"))
        .arg(format!(
            "--models-dir={}",
            dir.path().join("models").display()
        ))
        .arg(format!(
            "--processors-dir={}",
            dir.path().join("dataprocessors").display()
        ))
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--rows-file={}", rows_file.display()))
        .args(["--retrain-every=300", "--max-evals=5000", "--threads=1"])
        // The test's session (its shell, cargo, CI) is not the retrainer's to lower.
        .arg("--session-nice=0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_file).unwrap())
        .spawn()
        .expect("retrainer starts");
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();

    send_rows(&kafka.settings, dir.path(), 0, 300).await;
    wait_until("the search to start", 60, || {
        log().contains("retraining after v1")
    });
    let searching_since = Instant::now();
    let before = members(&kafka.settings.brokers, &group);

    // Rows sent during the search are consumed and stored during the search.
    send_rows(&kafka.settings, dir.path(), 300, 200).await;
    wait_until("the rows sent during the search", 30, || {
        lines_in(&rows_file) >= 500
    });
    // Longer than max.poll.interval.ms: a retrainer that stopped polling would be out of its
    // group by now.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        !log().contains("stored and published"),
        "the search was still running: {}",
        log()
    );
    let after = members(&kafka.settings.brokers, &group);
    if kafka.is_embedded() {
        eprintln!("the embedded broker does not list groups: membership checked on the real one");
    } else {
        let (state, ids) = after.expect("the real broker lists the group");
        assert_eq!(state, "Stable");
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(before.map(|b| b.1), Some(ids), "the same member all along");
    }

    let stop_sent = Instant::now();
    sigterm(&child);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stop_sent.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stopped_in = stop_sent.elapsed();
    eprintln!(
        "searched {:.1} s, stopped {:.2} s after SIGTERM",
        searching_since.elapsed().as_secs_f64(),
        stopped_in.as_secs_f64()
    );
    assert!(status.success(), "{status}\n{}", log());
    assert!(
        log().contains("stopping the retrain in progress"),
        "{}",
        log()
    );
    assert_eq!(lines_in(&rows_file), 500, "every row stored once");
}

/// A retrainer started as `sh -c '<prelude> retrainer …; cat /proc/self/autogroup'` in a session
/// of its own: the shell is its ancestor and outlives it, `prelude` may start others.
fn retrainer_in_own_session(
    kafka: &TestKafka,
    dir: &Path,
    data: &Path,
    prelude: &str,
    log_file: &Path,
) -> Child {
    use std::os::unix::process::CommandExt;
    let mut args = kafka_flags(kafka);
    args.extend([
        format!("--group=retrainer-{:08x}", rand::random::<u32>()),
        format!("--models-dir={}", dir.join("models").display()),
        format!("--processors-dir={}", dir.join("dataprocessors").display()),
        format!("--data-dir={}", data.display()),
        format!("--rows-file={}", dir.join("rows.jsonl").display()),
        "--threads=1".into(),
    ]);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "{prelude} \"$0\" \"$@\" 2>\"$LOG\"; cat /proc/self/autogroup"
        ))
        .arg(env!("CARGO_BIN_EXE_retrainer"))
        .args(args)
        .env("LOG", log_file)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().expect("sh starts")
}

/// The retrainer among the shell's children.
fn retrainer_under(shell: &Child) -> u32 {
    let mut found = None;
    wait_until("the retrainer to start", 10, || {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", shell.id()))
            .unwrap_or_default();
        found = children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "retrainer")
            });
        found.is_some()
    });
    found.unwrap()
}

fn autogroup_nice(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/autogroup"))
        .unwrap_or_default()
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrainer_alone_in_its_session_lowers_its_group_until_it_exits_and_a_shared_one_does_not(
) {
    let (Some(data), Some((dir, _store))) = (adult_dir(), store_with_v1()) else {
        return;
    };
    let kafka = test_kafka(1).await;
    let autogroups = std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
        .is_ok_and(|s| s.trim() == "1");

    // Alone with its shell: its group at nice 19 while it runs, back at 0 when it has stopped.
    let log_file = dir.path().join("alone.log");
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let shell = retrainer_in_own_session(&kafka, dir.path(), &data, "", &log_file);
    let retrainer = retrainer_under(&shell);
    wait_until("the retrainer's word on its group", 30, || {
        log().contains("its scheduling group")
    });
    if !autogroups {
        assert!(log().contains("autogroup is off"), "{}", log());
    } else if log().contains("cpu cgroup") {
        eprintln!("this host runs the tests in a cpu cgroup: autogroups do not apply");
    } else {
        assert!(log().contains("runs at nice 19"), "{}", log());
        assert_eq!(autogroup_nice(retrainer), "19");
    }
    // SAFETY: kill with a child's pid and SIGTERM has no memory effects.
    assert_eq!(unsafe { libc::kill(retrainer as i32, libc::SIGTERM) }, 0);
    let out = shell.wait_with_output().expect("the shell ends");
    let after = String::from_utf8_lossy(&out.stdout);
    if autogroups {
        assert!(
            after.trim_end().ends_with("nice 0"),
            "the session's group after the retrainer: {after:?}\n{}",
            log()
        );
    }

    // Sharing its session with another process: left at nice 0, and told why.
    let log_file = dir.path().join("shared.log");
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let shell = retrainer_in_own_session(
        &kafka,
        dir.path(),
        &data,
        "sleep 60 >/dev/null 2>&1 &",
        &log_file,
    );
    let retrainer = retrainer_under(&shell);
    wait_until("the retrainer's word on its group", 30, || {
        log().contains("its scheduling group")
    });
    if autogroups && !log().contains("cpu cgroup") {
        assert!(
            log().contains("is left at nice 0: its session is shared with")
                && log().contains("(sleep)"),
            "{}",
            log()
        );
        assert_eq!(autogroup_nice(retrainer), "0");
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(retrainer as i32, libc::SIGTERM) }, 0);
    let session = shell.id() as i32;
    shell.wait_with_output().expect("the shell ends");
    // SAFETY: as above, to the session's process group (the sleep).
    unsafe { libc::kill(-session, libc::SIGTERM) };
}
