//! docker-compose.yml and the Dockerfile cannot be run here (no Docker engine), so they are kept
//! honest by reading them: the services, the broker's addresses and the shared folders must agree
//! with the code's defaults and with the Kafka version the local broker runs.

use std::path::{Path, PathBuf};

use census_stream::defaults::{
    BROKERS as DEFAULT_BROKERS, DATA_DIR as DEFAULT_DATA_DIR, MODELS_DIR as DEFAULT_MODELS_DIR,
    PROCESSORS_DIR as DEFAULT_PROCESSORS_DIR,
};
use census_stream::kafka::MAX_MESSAGE_BYTES;
use yaml_rust2::{Yaml, YamlLoader};

/// The services that run a pipeline binary, and the binary.
const PIPELINE: [(&str, &str); 4] = [
    ("initialize", "initialize"),
    ("predictor", "predictor"),
    ("retrainer", "retrainer"),
    ("producer", "producer"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn compose() -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read("docker-compose.yml")).expect("valid YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    docs.remove(0)
}

/// A scalar as text (compose accepts numbers and booleans where strings are meant).
fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn env(service: &Yaml, key: &str) -> Option<String> {
    text(&service["environment"][key])
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| v.iter().filter_map(text).collect())
        .unwrap_or_default()
}

/// The working directory of the Dockerfile's last stage.
fn image_workdir() -> String {
    let dockerfile = read("Dockerfile");
    let last_stage = dockerfile
        .rsplit_once("\nFROM ")
        .expect("a multi-stage Dockerfile")
        .1;
    last_stage
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("WORKDIR "))
        .expect("WORKDIR in the last stage")
        .trim()
        .to_owned()
}

fn pom_kafka_version() -> String {
    // The property, not the mention of it in the file's comment: the value is a version number.
    let pom = read("kafka/pom.xml");
    pom.split("<kafka.version>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</kafka.version>"))
        .map(|(value, _)| value.trim())
        .find(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .expect("a <kafka.version> property")
        .to_owned()
}

#[test]
fn the_broker_is_single_node_kraft_of_the_pinned_version_with_a_health_check() {
    let doc = compose();
    let kafka = &doc["services"]["kafka"];
    assert_eq!(
        kafka["image"].as_str(),
        Some(format!("apache/kafka:{}", pom_kafka_version()).as_str()),
        "the compose broker runs the version of kafka/pom.xml"
    );
    assert_eq!(
        env(kafka, "KAFKA_PROCESS_ROLES").as_deref(),
        Some("broker,controller")
    );
    let node = env(kafka, "KAFKA_NODE_ID").expect("KAFKA_NODE_ID");
    let voters = env(kafka, "KAFKA_CONTROLLER_QUORUM_VOTERS").expect("quorum voters");
    assert!(voters.starts_with(&format!("{node}@kafka:")), "{voters}");
    for key in [
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ] {
        assert_eq!(env(kafka, key).as_deref(), Some("1"), "{key}");
    }
    let max: usize = env(kafka, "KAFKA_MESSAGE_MAX_BYTES")
        .expect("KAFKA_MESSAGE_MAX_BYTES")
        .parse()
        .unwrap();
    assert!(
        max > MAX_MESSAGE_BYTES,
        "bundles of {MAX_MESSAGE_BYTES} bytes fit"
    );

    let check = strings(&kafka["healthcheck"]["test"]).join(" ");
    assert!(
        check.contains("kafka-broker-api-versions.sh") && check.contains("--bootstrap-server"),
        "health check asks the broker itself: {check}"
    );
    // The broker's data outlives the container.
    let data_dir = env(kafka, "KAFKA_LOG_DIRS").expect("KAFKA_LOG_DIRS");
    assert!(strings(&kafka["volumes"])
        .iter()
        .any(|v| v.ends_with(&format!(":{data_dir}"))));
}

#[test]
fn the_services_reach_the_broker_at_an_address_it_advertises() {
    let doc = compose();
    let kafka = &doc["services"]["kafka"];
    let advertised = env(kafka, "KAFKA_ADVERTISED_LISTENERS").expect("advertised listeners");
    let addresses: Vec<&str> = advertised
        .split(',')
        .map(|l| l.split_once("://").expect("NAME://host:port").1)
        .collect();
    for (service, _) in PIPELINE.iter().filter(|(s, _)| *s != "initialize") {
        let s = &doc["services"][*service];
        let brokers = env(s, "KAFKA_BROKERS").unwrap_or_else(|| panic!("{service}: KAFKA_BROKERS"));
        assert!(
            addresses.contains(&brokers.as_str()),
            "{service} uses {brokers}, the broker advertises {advertised}"
        );
        assert!(
            brokers.starts_with("kafka:"),
            "{service}: the in-network name"
        );
        assert_eq!(
            s["depends_on"]["kafka"]["condition"].as_str(),
            Some("service_healthy"),
            "{service} waits for the broker's health check"
        );
    }
    // From the host the code's default address reaches the same broker.
    assert!(addresses.contains(&DEFAULT_BROKERS), "{advertised}");
    let port = DEFAULT_BROKERS.rsplit(':').next().unwrap();
    assert!(strings(&kafka["ports"]).contains(&format!("{port}:{port}")));
}

#[test]
fn the_pipeline_services_run_the_binaries_and_share_the_default_folders() {
    let doc = compose();
    let workdir = image_workdir();
    let services = doc["services"].as_hash().expect("services");
    assert_eq!(
        services.len(),
        PIPELINE.len() + 3,
        "the broker, the four components, the dashboard and Prometheus"
    );
    for (service, binary) in PIPELINE {
        let s = &doc["services"][service];
        assert!(!s.is_badvalue(), "service {service} is missing");
        let command = strings(&s["command"]);
        assert_eq!(
            command.first().map(String::as_str),
            Some(binary),
            "{service}"
        );
        assert!(
            repo().join("src/bin").join(format!("{binary}.rs")).exists(),
            "{binary} is one of the crate's binaries"
        );
        assert_eq!(
            s["image"].as_str(),
            Some("census-stream:latest"),
            "{service}"
        );
        let volumes = strings(&s["volumes"]);
        for folder in [DEFAULT_MODELS_DIR, DEFAULT_PROCESSORS_DIR, DEFAULT_DATA_DIR] {
            let mount = format!("./{folder}:{}", Path::new(&workdir).join(folder).display());
            assert!(
                volumes.contains(&mount),
                "{service} mounts {mount}: {volumes:?}"
            );
        }
    }
    // The image has every binary of the crate.
    let dockerfile = read("Dockerfile");
    for entry in std::fs::read_dir(repo().join("src/bin")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        assert!(
            dockerfile.contains(&format!("target/release/{name} ")),
            "the Dockerfile copies {name}"
        );
    }
    // One service builds the image the others run.
    assert_eq!(doc["services"]["initialize"]["build"].as_str(), Some("."));
    for folder in [DEFAULT_MODELS_DIR, DEFAULT_PROCESSORS_DIR] {
        assert!(
            repo().join(folder).join(".gitkeep").exists(),
            "{folder}/ is in the repo"
        );
    }
}

#[test]
fn the_dashboard_serves_its_page_on_a_published_port() {
    let doc = compose();
    let d = &doc["services"]["dashboard"];
    assert_eq!(strings(&d["command"]), ["dashboard"]);
    assert!(read("src/bin/dashboard.rs").contains(r#"env = "CENSUS_DASHBOARD_ADDR""#));
    let addr = env(d, "CENSUS_DASHBOARD_ADDR").expect("the dashboard's address");
    let (host, port) = addr.rsplit_once(':').unwrap();
    assert_eq!(host, "0.0.0.0", "reachable from outside its container");
    assert!(strings(&d["ports"]).contains(&format!("{port}:{port}")));
    assert_eq!(
        env(d, "KAFKA_BROKERS"),
        env(&doc["services"]["predictor"], "KAFKA_BROKERS")
    );
}

#[test]
fn prometheus_scrapes_each_service_where_it_serves_its_metrics() {
    let doc = compose();
    let prometheus = &doc["services"]["prometheus"];
    assert!(
        strings(&prometheus["volumes"])
            .iter()
            .any(|v| v.starts_with("./prometheus.yml:/etc/prometheus/prometheus.yml")),
        "Prometheus reads the repository's prometheus.yml"
    );
    let config = YamlLoader::load_from_str(&read("prometheus.yml")).expect("valid YAML");
    let jobs = config[0]["scrape_configs"]
        .as_vec()
        .expect("scrape_configs");
    let job = |name: &str| {
        jobs.iter()
            .find(|j| j["job_name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {name} job"))
    };
    for (service, bin) in [
        ("predictor", env!("CARGO_BIN_EXE_predictor")),
        ("retrainer", env!("CARGO_BIN_EXE_retrainer")),
        ("dashboard", env!("CARGO_BIN_EXE_dashboard")),
    ] {
        // The binary reads the address from this variable (its --metrics-addr flag's).
        let help = std::process::Command::new(bin)
            .arg("--help")
            .env_remove("CENSUS_METRICS_ADDR")
            .output()
            .expect("the binary runs");
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.contains("--metrics-addr") && help.contains("[env: CENSUS_METRICS_ADDR="),
            "{service}: {help}"
        );
        let addr = env(&doc["services"][service], "CENSUS_METRICS_ADDR")
            .unwrap_or_else(|| panic!("{service} serves metrics"));
        let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        let j = job(service);
        let path = j["metrics_path"].as_str().unwrap_or("/metrics");
        assert_eq!(path, "/metrics", "{service}");
        let scraped = match service {
            // All the predictors: the service name resolves to each container.
            "predictor" => {
                let sd = &j["dns_sd_configs"][0];
                assert_eq!(strings(&sd["names"]), vec![service.to_owned()]);
                assert_eq!(sd["type"].as_str(), Some("A"));
                text(&sd["port"]).unwrap()
            }
            _ => {
                let target = strings(&j["static_configs"][0]["targets"]).remove(0);
                let (host, port) = target.rsplit_once(':').unwrap();
                assert_eq!(host, service);
                port.to_owned()
            }
        };
        assert_eq!(scraped, port.to_string(), "{service}");
    }
}

#[test]
fn the_services_are_checked_by_their_readiness_endpoint() {
    let doc = compose();
    assert!(
        read("Dockerfile").contains(" curl"),
        "the image has the client the checks run"
    );
    for service in ["predictor", "retrainer", "dashboard"] {
        let s = &doc["services"][service];
        let addr = env(s, "CENSUS_METRICS_ADDR").unwrap();
        let port = addr.rsplit_once(':').unwrap().1;
        let check = strings(&s["healthcheck"]["test"]).join(" ");
        assert!(
            check.starts_with("CMD curl -fsS")
                && check.ends_with(&format!("http://localhost:{port}/readyz")),
            "{service}: {check}"
        );
    }
    let producer = &doc["services"]["producer"];
    assert_eq!(
        text(&producer["depends_on"]["predictor"]["condition"]).as_deref(),
        Some("service_healthy"),
        "the producer starts once a predictor is ready"
    );
}

#[test]
fn the_retrainer_container_has_the_lowest_cpu_weight_and_the_others_the_default() {
    // A container is a cgroup of its own: the retrainer's share of the cores is its weight.
    let doc = compose();
    let shares = |service: &str| doc["services"][service]["cpu_shares"].as_i64();
    assert_eq!(
        shares("retrainer"),
        Some(2),
        "the lowest weight Docker takes"
    );
    for service in ["predictor", "kafka", "dashboard"] {
        assert_eq!(shares(service), None, "{service} keeps the default weight");
    }
}

/// `a` with `b` laid over it as `docker compose -f a -f b` merges files: maps merged key by
/// key, anything else replaced by the overlay's.
fn overlay(a: &Yaml, b: &Yaml) -> Yaml {
    match (a, b) {
        (Yaml::Hash(a), Yaml::Hash(b)) => {
            let mut out = a.clone();
            for (k, v) in b {
                let merged = match out.get(k) {
                    Some(old) => overlay(old, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Yaml::Hash(out)
        }
        (_, b) => b.clone(),
    }
}

/// `y` with its YAML merge keys (`<<: *anchor`) expanded, as compose reads them: the map's own
/// keys win over the merged ones.
fn expand_merge_keys(y: &Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let merge = Yaml::String("<<".into());
            let mut out = match h.get(&merge) {
                Some(Yaml::Hash(base)) => base.clone(),
                _ => Default::default(),
            };
            for (k, v) in h {
                if *k != merge {
                    out.insert(k.clone(), expand_merge_keys(v));
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(items) => Yaml::Array(items.iter().map(expand_merge_keys).collect()),
        other => other.clone(),
    }
}

/// docker-compose.yml with docker-compose.cluster.yml laid over it.
fn cluster_compose() -> Yaml {
    let docs = YamlLoader::load_from_str(&read("docker-compose.cluster.yml")).expect("valid YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    overlay(&compose(), &expand_merge_keys(&docs[0]))
}

/// A listener list's `NAME://host:port` entries as (name, host, port).
fn listeners(list: &str) -> Vec<(String, String, u16)> {
    list.split(',')
        .map(|l| {
            let (name, addr) = l.split_once("://").expect("NAME://host:port");
            let (host, port) = addr.rsplit_once(':').expect("host:port");
            (
                name.to_owned(),
                host.to_owned(),
                port.parse().expect("a port"),
            )
        })
        .collect()
}

#[test]
fn the_cluster_overlay_makes_three_replicating_brokers_that_every_service_bootstraps_from() {
    let doc = cluster_compose();
    let brokers = ["kafka", "kafka-2", "kafka-3"];
    let mut voters_seen = Vec::new();
    let mut in_network = Vec::new();
    for (i, name) in brokers.iter().enumerate() {
        let b = &doc["services"][*name];
        assert!(!b.is_badvalue(), "service {name}");
        assert_eq!(
            b["image"].as_str(),
            Some(format!("apache/kafka:{}", pom_kafka_version()).as_str()),
            "{name}"
        );
        assert_eq!(
            env(b, "KAFKA_NODE_ID").as_deref(),
            Some((i + 1).to_string().as_str()),
            "{name}"
        );
        assert_eq!(
            env(b, "KAFKA_PROCESS_ROLES").as_deref(),
            Some("broker,controller")
        );
        voters_seen.push(env(b, "KAFKA_CONTROLLER_QUORUM_VOTERS").expect("voters"));
        // Three replicas of every topic, two needed for a write.
        for (key, want) in [
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2"),
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
        ] {
            assert_eq!(env(b, key).as_deref(), Some(want), "{name}: {key}");
        }
        // Its controller listener is the port the quorum names it at.
        let own = listeners(&env(b, "KAFKA_LISTENERS").expect("listeners"));
        let controller = own
            .iter()
            .find(|l| l.0 == "CONTROLLER")
            .expect("CONTROLLER");
        let voter = format!("{}@{name}:{}", i + 1, controller.2);
        // The broker advertises itself by its own name inside the network, and on a published
        // port of the host, where scripts/kafka-local.sh puts node i of a local cluster.
        let advertised = listeners(&env(b, "KAFKA_ADVERTISED_LISTENERS").expect("advertised"));
        let inside = advertised.iter().find(|l| l.0 == "PLAINTEXT").unwrap();
        assert_eq!(inside.1, *name);
        in_network.push(format!("{}:{}", inside.1, inside.2));
        let host = advertised.iter().find(|l| l.0 == "PLAINTEXT_HOST").unwrap();
        let default_port: u16 = DEFAULT_BROKERS.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(
            (host.1.as_str(), host.2),
            ("localhost", default_port + 100 * i as u16)
        );
        assert!(strings(&b["ports"]).contains(&format!("{0}:{0}", host.2)));
        let check = strings(&b["healthcheck"]["test"]).join(" ");
        assert!(check.contains("kafka-broker-api-versions.sh"), "{name}");
        // Each its own data.
        let data_dir = env(b, "KAFKA_LOG_DIRS").expect("KAFKA_LOG_DIRS");
        assert!(
            strings(&b["volumes"])
                .iter()
                .any(|v| v.ends_with(&format!(":{data_dir}"))),
            "{name} keeps its data in a volume"
        );
        assert!(
            voters_seen.iter().all(|v| v.contains(&voter)),
            "{voter} in {voters_seen:?}"
        );
    }
    voters_seen.dedup();
    assert_eq!(voters_seen.len(), 1, "one quorum: {voters_seen:?}");
    let volumes: Vec<String> = brokers
        .iter()
        .map(|b| strings(&doc["services"][*b]["volumes"]).join(","))
        .collect();
    assert!(
        volumes[0] != volumes[1] && volumes[1] != volumes[2] && volumes[0] != volumes[2],
        "{volumes:?}"
    );
    for volume in volumes {
        let name = volume.split(':').next().unwrap();
        assert!(
            !doc["volumes"][name].is_badvalue(),
            "volume {name} declared"
        );
    }

    let bootstrap = in_network.join(",");
    for service in ["predictor", "retrainer", "producer", "dashboard"] {
        let s = &doc["services"][service];
        assert_eq!(
            env(s, "KAFKA_BROKERS").as_deref(),
            Some(bootstrap.as_str()),
            "{service}"
        );
        if service != "producer" {
            for b in brokers {
                assert_eq!(
                    s["depends_on"][b]["condition"].as_str(),
                    Some("service_healthy"),
                    "{service} waits for {b}"
                );
            }
        }
    }
}
