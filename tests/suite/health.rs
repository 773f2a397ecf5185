//! `/healthz` and `/readyz` on a predictor's HTTP address: ready once it is in its group with a
//! champion loaded, the registry read and the broker answering; not ready while its registry
//! follower is behind (the registry names a champion whose bundle it has not got).

use std::time::{Duration, Instant};

use census_stream::registry::{Alias, AliasRecord, Publisher};
use tokio_util::sync::CancellationToken;

use crate::helpers::{own_predictor, publish_champion, store_with_v1, test_kafka};

/// The status and body of `url`.
async fn get(url: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent.get(&url).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap()
}

/// Waits until `url` answers `status`, returning its body.
async fn until(url: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, body) = get(url.to_owned()).await;
        if s == status {
            return body;
        }
        assert!(Instant::now() < deadline, "{url} stayed {s}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_in_step_with_the_registry() {
    let Some((_dir, store)) = store_with_v1() else {
        return;
    };
    let kafka = test_kafka(2).await;
    let s = &kafka.settings;
    publish_champion(s, &store.read_files(1).unwrap()).await;
    let stop = CancellationToken::new();
    let mut pconf = own_predictor(s);
    pconf.store = None;
    let addr = crate::helpers::serve_predictor_endpoints(&pconf, &stop).await;
    let ready = format!("http://{addr}/readyz");
    assert_eq!(get(format!("http://{addr}/healthz")).await.0, 200);
    let predictor = tokio::spawn(census_stream::predictor::run(pconf, stop.clone()));

    let body = until(&ready, 200).await;
    for line in [
        "ok    broker: ",
        "ok    champion: serving v1",
        "ok    registry: in step",
        "ok    group: member of ",
    ] {
        assert!(body.contains(line), "{line}: {body}");
    }

    // The registry names v2 before its bundle has come: behind, not ready.
    let v2 = store
        .save(store.read_files(1).unwrap(), true)
        .unwrap()
        .version;
    let publisher = Publisher::start(s, "test-health").await.unwrap();
    let alias = AliasRecord::new(Alias::Champion, Some(v2), Some(1), "test");
    publisher
        .publish(None, std::slice::from_ref(&alias))
        .await
        .unwrap();
    let body = until(&ready, 503).await;
    assert!(body.contains("NOT   registry: behind"), "{body}");
    assert!(body.contains("ok    champion: serving v1"), "{body}");
    let metrics = get(format!("http://{addr}/metrics")).await.1;
    assert!(
        metrics.contains("census_registry_stale_seconds "),
        "{metrics}"
    );

    // Its bundle comes: in step and ready again, serving v2.
    publisher
        .publish(Some(&store.read_files(v2).unwrap()), &[alias])
        .await
        .unwrap();
    let body = until(&ready, 200).await;
    assert!(body.contains("ok    champion: serving v2"), "{body}");
    stop.cancel();
    predictor.await.unwrap().unwrap();
}
