//! Operability under a frozen broker: a promotion published just before the broker is paused
//! (SIGSTOP) reaches every predictor soon after it answers again, and SIGTERM with the broker
//! paused stops every service within its deadline, losing nothing.

use std::time::{Duration, Instant};

use census_stream::bundle::BundleStore;
use census_stream::registry::{Alias, AliasRecord, Publisher};

use crate::harness::{
    self, free_port, kafka_flags, oracle, predictor_with, report, scenario_settings, scrape, spawn,
    stream, wait_for_lag_zero, Broker, Service, DEFAULT_IDENTITY,
};

const CHAMPION: &str = r#"census_model_version{role="champion"}"#;

/// A predictor of `group` with its metrics at `port`.
fn predictor_at(
    s: &census_stream::kafka::KafkaSettings,
    work: &std::path::Path,
    group: &str,
    name: &str,
    port: u16,
) -> Service {
    let addr = format!("--metrics-addr=127.0.0.1:{port}");
    predictor_with(s, work, group, name, None, &[addr.as_str()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_paused_20_s_during_a_promotion_every_predictor_serves_it_within_10_s() {
    let broker = Broker::from_env();
    let work = harness::work_dir("pause-promotion");
    let s = scenario_settings(&broker, 4).await;
    let group = &format!("{}-group", s.topics.requests);
    let v1 = harness::bundle_v1();
    let store = BundleStore::new(v1.join("models"), v1.join("dataprocessors"));
    let files = store.read_files(1).unwrap();
    let publisher = Publisher::start(&s, "faults-pause").await.unwrap();
    let alias = |v, previous| AliasRecord::new(Alias::Champion, Some(v), previous, "fault suite");
    publisher
        .publish(Some(&files), &[alias(1, None)])
        .await
        .unwrap();
    let ports = [free_port(), free_port()];
    let names = ["a", "b"];
    let mut predictors: Vec<Service> = names
        .iter()
        .zip(ports)
        .map(|(name, port)| predictor_at(&s, &work, group, name, port))
        .collect();
    let sending = stream(&s, 12_000, 300.0, Duration::from_secs(120));
    let serving = |v: f64| ports.iter().all(|&p| scrape(p, CHAMPION) == Some(v));
    // The pause comes once the stream flows: a producer still starting (reading its input,
    // assigning its readers) when the broker froze would fail its start-up, which is not what
    // this test is about.
    let scored_v1 = || {
        ports
            .iter()
            .filter_map(|&p| scrape(p, r#"census_predictions_total{model_version="1"}"#))
            .sum::<f64>()
    };
    tokio::task::block_in_place(|| {
        harness::wait_until("both predictors on v1, scoring the stream", 60, || {
            serving(1.0) && scored_v1() > 0.0
        })
    });

    // The promotion, then the broker frozen before the predictors can have done much with it.
    let mut v2 = files.clone();
    v2.stamp(2);
    publisher
        .publish(Some(&v2), &[alias(2, Some(1))])
        .await
        .unwrap();
    broker.pause();
    tokio::time::sleep(Duration::from_secs(20)).await;
    broker.resume();
    let back = Instant::now();
    // A static member whose session expired while the broker was paused may be fenced: it
    // then ends with an error naming it, and its supervisor (this loop) restarts it at once.
    // One whose producer librdkafka left stuck after the fencing ends with a fatal error once
    // the broker has answered for 20 s without its batch acknowledged, and is restarted too.
    let (mut restarts, mut stuck) = (0, 0);
    // On a time-out: each predictor's champion gauge (set when a version is swapped in) and
    // predictions; their logs stay in the work folder.
    let state = || {
        let seen: Vec<String> = ports
            .iter()
            .map(|&p| {
                format!(
                    "champion {:?}, predictions of v1 {:?} and v2 {:?}",
                    scrape(p, CHAMPION),
                    scrape(p, r#"census_predictions_total{model_version="1"}"#),
                    scrape(p, r#"census_predictions_total{model_version="2"}"#)
                )
            })
            .collect();
        format!("({}; logs in {})", seen.join("; "), work.display())
    };
    tokio::task::block_in_place(|| {
        harness::wait_until_else(
            "both predictors on v2",
            60,
            || {
                for (i, p) in predictors.iter_mut().enumerate() {
                    if p.exited() {
                        assert!(p.log().contains("fatal error"), "{}", p.log());
                        stuck += usize::from(p.log().contains("the producer is stuck"));
                        *p = predictor_at(&s, &work, group, names[i], ports[i]);
                        restarts += 1;
                    }
                }
                serving(2.0)
            },
            state,
        )
    });
    let took = back.elapsed();
    // The supervisor goes on until every request is answered.
    let mut supervise = |predictors: &mut Vec<Service>| {
        for (i, p) in predictors.iter_mut().enumerate() {
            if p.exited() {
                assert!(p.log().contains("fatal error"), "{}", p.log());
                *p = predictor_at(&s, &work, group, names[i], ports[i]);
                restarts += 1;
            }
        }
    };
    let mut sending = sending;
    let summary = loop {
        tokio::select! {
            r = &mut sending => break r.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(200)) => supervise(&mut predictors),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while harness::lag(&s, group).await != 0 {
        supervise(&mut predictors);
        assert!(
            Instant::now() < deadline,
            "the predictors' lag stays after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("predictor restarts after the pause: {restarts} ({stuck} for a stuck producer)");
    // The swap is not only announced: the stream's rest was scored with v2.
    let by_v2: f64 = ports
        .iter()
        .filter_map(|&p| scrape(p, r#"census_predictions_total{model_version="2"}"#))
        .sum();
    assert!(by_v2 > 0.0, "no prediction by v2 {}", state());
    let v = oracle(&s).await;
    report("broker SIGSTOP 20 s just after a promotion", &v, 0, &[took]);
    assert!(v.lost.is_empty(), "lost {}", v.lost.len());
    assert!(summary.missing.is_empty());
    // A stuck producer costs its 20 s of detection and a restart.
    let bound = Duration::from_secs(if stuck > 0 { 35 } else { 10 });
    assert!(
        took <= bound,
        "the predictors served v2 {took:?} after the broker came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_broker_paused_stops_every_service_within_its_deadline() {
    let broker = Broker::from_env();
    let work = harness::work_dir("pause-sigterm");
    let store = work.join("store");
    harness::store_copy(&store);
    let s = scenario_settings(&broker, 3).await;
    let group = &format!("{}-group", s.topics.requests);
    let deadline = Duration::from_secs(5);
    let shutdown = format!("--shutdown-secs={}", deadline.as_secs());
    let mut predictor = predictor_with(
        &s,
        &work,
        group,
        DEFAULT_IDENTITY,
        None,
        &[shutdown.as_str()],
    );
    let mut args = kafka_flags(&s);
    args.extend([
        shutdown.clone(),
        format!("--group={group}-retrainer"),
        format!("--models-dir={}", store.join("models").display()),
        format!(
            "--processors-dir={}",
            store.join("dataprocessors").display()
        ),
        format!("--data-dir={}", harness::data_dir().display()),
        format!("--rows-file={}", store.join("rows.jsonl").display()),
        "--retrain-every=100000".to_owned(),
        "--session-nice=0".to_owned(),
    ]);
    let mut retrainer = spawn(
        env!("CARGO_BIN_EXE_retrainer"),
        &args,
        &work,
        "retrainer",
        None,
    );
    let mut args = kafka_flags(&s);
    args.extend([
        shutdown.clone(),
        "--addr=127.0.0.1:0".to_owned(),
        format!("--predictor-group={group}"),
    ]);
    let mut dashboard = spawn(
        env!("CARGO_BIN_EXE_dashboard"),
        &args,
        &work,
        "dashboard",
        None,
    );
    let sending = stream(&s, 6_000, 500.0, Duration::from_secs(120));
    tokio::time::sleep(Duration::from_secs(4)).await;

    broker.pause();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let signalled = Instant::now();
    let services: [(&str, &mut Service); 3] = [
        ("predictor", &mut predictor),
        ("retrainer", &mut retrainer),
        ("dashboard", &mut dashboard),
    ];
    let mut stopped = Vec::new();
    for (_, service) in &services {
        harness::kill(service.pid(), libc::SIGTERM);
    }
    for (name, service) in services {
        let _ = service.child.wait();
        stopped.push((name, signalled.elapsed()));
    }
    broker.resume();
    for (name, took) in &stopped {
        eprintln!("{name} exited {:.2} s after SIGTERM", took.as_secs_f64());
    }

    // Restarted, a predictor answers what the stopped one left.
    let mut predictor = predictor_with(&s, &work, group, DEFAULT_IDENTITY, None, &[]);
    let summary = sending.await.unwrap();
    wait_for_lag_zero(&s, group, 120).await.unwrap();
    predictor.sigterm_and_wait();
    let v = oracle(&s).await;
    let worst = stopped.iter().map(|(_, t)| *t).max().unwrap();
    report("SIGTERM with the broker paused", &v, 0, &[worst]);
    assert!(v.lost.is_empty(), "lost {}", v.lost.len());
    assert!(summary.missing.is_empty());
    for (name, took) in &stopped {
        assert!(
            *took <= deadline + Duration::from_millis(1500),
            "{name} took {took:?} to exit (deadline {deadline:?})"
        );
    }
}
