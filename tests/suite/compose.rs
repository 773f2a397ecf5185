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
