//! Shared test fixtures: the Adult data folder and a bundle trained once for the whole suite.

use std::path::PathBuf;
use std::sync::OnceLock;

use census_stream::bundle::BundleStore;
use census_stream::data::{ensure_file, load_adult, AdultData, Fetch};
use census_stream::initialize::{self as init, run, InitConfig};
use census_stream::model::Scoring;
use census_stream::settings::Folds;
use census_stream::train::SearchConfig;

/// The project's data folder, with adult.data and adult.test in it. Outside CI, missing files are
/// downloaded when possible and the test is skipped otherwise; in CI (`CI=true`) missing data
/// fails the test.
pub fn adult_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
    let fetched = ["adult.data", "adult.test"]
        .iter()
        .map(|f| ensure_file(&dir, f, &Fetch::default()))
        .collect::<Result<Vec<_>, _>>();
    match fetched {
        Ok(_) => Some(dir),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI needs the Adult data set in data/: {e}")
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

pub fn adult() -> Option<&'static AdultData> {
    static DATA: OnceLock<Option<AdultData>> = OnceLock::new();
    DATA.get_or_init(|| adult_dir().map(|dir| load_adult(&dir, &Fetch::Never).expect("data loads")))
        .as_ref()
}

/// A store in a fresh temporary folder.
pub fn temp_store() -> (tempfile::TempDir, BundleStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = BundleStore::new(dir.path().join("models"), dir.path().join("dataprocessors"));
    (dir, store)
}

/// The search settings of the suite: a small budget, both cores.
pub fn small_search(max_evals: usize) -> SearchConfig {
    SearchConfig {
        max_evals: std::num::NonZeroUsize::new(max_evals).expect("a budget of at least 1"),
        folds: Folds::new(3).unwrap(),
        seed: 1,
        threads: std::num::NonZeroUsize::new(2).unwrap(),
        progress: false,
        prune: true,
        cancel: Default::default(),
        calibrate: Default::default(),
        nice: 0,
    }
}

/// How the suite's models load: strictly when `CENSUS_SCORER_STRICT` is set as the binaries read
/// it (anything but empty, `0`, `false`, `no` or `off`), as the test script sets it, so that a
/// model whose compiled trees do not score as LightGBM does fails to load in every test.
pub fn scoring() -> Scoring {
    let strict = std::env::var("CENSUS_SCORER_STRICT").is_ok_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "" | "0" | "n" | "no" | "f" | "false" | "off"
        )
    });
    Scoring::strict(strict)
}

/// A bundle made once by `initialize` with a small budget, shared by the tests that only read it.
pub struct Initialized {
    pub _dir: tempfile::TempDir,
    pub store: BundleStore,
    pub version: u32,
}

pub fn initialized() -> Option<&'static Initialized> {
    static INIT: OnceLock<Option<Initialized>> = OnceLock::new();
    INIT.get_or_init(|| {
        let data_dir = adult_dir()?;
        let (dir, store) = temp_store();
        let mut config = InitConfig::new(store.clone(), small_search(5));
        config.data_dir = data_dir;
        config.fetch = Fetch::Never;
        config.scoring = scoring();
        let init::Initialized::Trained(manifest) = run(&config).expect("initialize runs") else {
            unreachable!("a new store has no bundle")
        };
        Some(Initialized {
            _dir: dir,
            store,
            version: manifest.version,
        })
    })
    .as_ref()
}

use census_stream::kafka::{EmbeddedBroker, KafkaSettings, Topics};

/// A Kafka for one test: the real broker named by `KAFKA_BROKERS` (with topics of the test's
/// own), or else a new embedded broker.
pub struct TestKafka {
    embedded: Option<EmbeddedBroker>,
    pub settings: KafkaSettings,
}

pub async fn test_kafka(partitions: i32) -> TestKafka {
    match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => {
            let tag = format!("{:08x}", rand::random::<u32>());
            let mut settings = KafkaSettings::new(brokers);
            settings.partitions = partitions;
            settings.topics = Topics {
                requests: format!("test-{tag}.requests"),
                predictions: format!("test-{tag}.predictions"),
                dlq: format!("test-{tag}.dlq"),
                labels: format!("test-{tag}.labels"),
                models: format!("test-{tag}.models"),
            };
            settings
                .consumer_extra
                .insert("session.timeout.ms".into(), "6000".into());
            settings
                .consumer_extra
                .insert("heartbeat.interval.ms".into(), "500".into());
            settings.ensure_topics().await.expect("topics created");
            TestKafka {
                embedded: None,
                settings,
            }
        }
        _ => {
            let topics = Topics::default();
            let broker = EmbeddedBroker::start(&topics, partitions).expect("embedded broker");
            let settings = broker.settings(&topics, partitions);
            TestKafka {
                embedded: Some(broker),
                settings,
            }
        }
    }
}

/// A consumer group of this test's own for `role`: named after its requests topic, which is the
/// test's own on a real broker (and each embedded broker is the test's own), so that tests
/// running at once never share a group.
pub fn own_group(s: &KafkaSettings, role: &str) -> String {
    format!("{}.{role}", s.topics.requests)
}

/// A predictor's config in this test's own group.
pub fn own_predictor(s: &KafkaSettings) -> census_stream::predictor::PredictorConfig {
    let mut c = census_stream::predictor::PredictorConfig::new(s.clone());
    c.group = own_group(s, "predictor");
    c.scoring = scoring();
    c
}

/// A retrainer's config in this test's own group.
pub fn own_retrainer(
    s: &KafkaSettings,
    store: BundleStore,
) -> census_stream::retrainer::RetrainerConfig {
    let mut c = census_stream::retrainer::RetrainerConfig::new(s.clone(), store);
    c.group = own_group(s, "retrainer");
    c.scoring = scoring();
    c
}

/// A dashboard's config showing the lag of this test's own predictor group.
pub fn own_dashboard(
    s: &KafkaSettings,
    addr: std::net::SocketAddr,
) -> census_stream::dashboard::DashboardConfig {
    let mut c = census_stream::dashboard::DashboardConfig::new(s.clone(), addr);
    c.predictor_group = own_group(s, "predictor");
    // A test's topics are its own: read them whole (librdkafka's mock cluster cannot look
    // offsets up by time; the test of `since` sets it).
    c.since = None;
    c
}

impl TestKafka {
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }
}

/// Publishes `files` in the registry as the champion, as an operator's tool would.
pub async fn publish_champion(
    settings: &KafkaSettings,
    files: &census_stream::bundle::BundleFiles,
) {
    use census_stream::registry::{Alias, AliasRecord, Publisher};
    let id = format!("test-publisher-{:08x}", rand::random::<u32>());
    let publisher = Publisher::start(settings, &id).await.expect("publisher");
    let alias = AliasRecord::new(Alias::Champion, Some(files.manifest.version), None, "test");
    publisher
        .publish(Some(files), &[alias])
        .await
        .expect("published");
}

/// A store holding a copy of the suite's bundle v1.
pub fn store_with_v1() -> Option<(tempfile::TempDir, BundleStore)> {
    let init = initialized()?;
    let (dir, store) = temp_store();
    store
        .save(init.store.read_files(init.version).unwrap(), true)
        .unwrap();
    Some((dir, store))
}

/// Sets `topic`'s `max.message.bytes` (a real broker only).
pub async fn set_topic_limit(s: &KafkaSettings, topic: &str, bytes: usize) {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &s.brokers)
            .create()
            .unwrap();
    let value = bytes.to_string();
    let change = rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(topic))
        .set("max.message.bytes", &value);
    for r in admin
        .alter_configs([&change], &rdkafka::admin::AdminOptions::new())
        .await
        .unwrap()
    {
        r.expect("max.message.bytes altered");
    }
}

/// A message's headers as text, by name.
pub fn headers_of(m: &impl rdkafka::message::Message) -> std::collections::HashMap<String, String> {
    use rdkafka::message::Headers;
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                    (h.key.to_string(), v.into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Serves `pconf`'s metrics and health (as the binary does with `--metrics-addr`) on a free
/// port until `stop`; returns the address.
pub async fn serve_predictor_endpoints(
    pconf: &census_stream::predictor::PredictorConfig,
    stop: &tokio_util::sync::CancellationToken,
) -> std::net::SocketAddr {
    let mut registry = prometheus_client::registry::Registry::default();
    pconf.metrics.register(&mut registry);
    census_stream::telemetry::serve(
        "127.0.0.1:0".parse().unwrap(),
        registry,
        pconf.health.clone(),
        stop.clone(),
    )
    .await
    .unwrap()
}

/// A store whose v1 is a weak champion: trained on 300 rows of adult.data.
pub fn weak_store() -> Option<(tempfile::TempDir, BundleStore)> {
    let data = adult()?;
    let (dir, store) = temp_store();
    let weak =
        census_stream::train::fit(&data.train[..300], None, &small_search(2), scoring()).unwrap();
    let files = census_stream::bundle::assemble::bundle_files(
        weak,
        &small_search(2),
        None,
        census_stream::bundle::TrainingData::adult_data(&data.train_sha256, 300),
    );
    assert_eq!(store.save(files, true).unwrap().version, 1);
    Some((dir, store))
}
