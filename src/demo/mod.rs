//! The demo: the whole pipeline in one process. An embedded broker unless a real one is given;
//! `initialize` with a small budget into a temporary store; then a predictor, the retrainer and
//! the producer streaming adult.test (with a few malformed records, to show the dead-letter
//! topic). Ends by itself with a summary, written to the sink it is given.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

mod narration;
mod setup;

use narration::event_line;
use setup::{demo_input, weak_bootstrap};

use crate::bundle::BundleStore;
use crate::dashboard::{self, DashboardConfig};
use crate::initialize::{self, InitConfig, Initialized};
use crate::kafka::{kafka_or_embedded, BrokerError, KafkaSettings};
use crate::model::Scoring;
use crate::predictor::{self, PredictorConfig};
use crate::producer::{self, Input, ProducerConfig, Sink, Summary};
use crate::retrainer::{self, RetrainerConfig};
use crate::settings::Rate;
use crate::train::SearchConfig;

#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Topics, partitions and client settings; the brokers too unless `embedded`.
    pub kafka: KafkaSettings,
    /// Start an embedded broker instead of using `kafka.brokers`.
    pub embedded: bool,
    pub data_dir: PathBuf,
    pub rows: usize,
    pub rate: Rate,
    pub retrain_every: std::num::NonZeroUsize,
    /// The search of the bootstrap bundle and of each retrain.
    pub search: SearchConfig,
    /// How every model the demo trains or loads scores.
    pub scoring: Scoring,
    /// Train v1 on this many rows of adult.data only (a weak champion the first retrain beats);
    /// `None`: `initialize` on all of them.
    pub bootstrap_rows: Option<usize>,
    pub promotion: retrainer::Promotion,
    /// Retrains train on shuffled labels: bad challengers, which the gate must reject.
    pub shuffle_labels: bool,
    /// Retrains train where this share of women's `>50K` labels is turned: biased challengers,
    /// which the offline check or the gate must refuse.
    pub biased_challenger: Option<f64>,
    pub triggers: crate::lifecycle::triggers::Triggers,
    /// Where the prediction lines, retrains and summary go.
    pub sink: Sink,
    /// The producer's status line, if shown.
    pub status: Option<producer::Status>,
    /// Serve the dashboard here (port 0: any free port); `None`: no dashboard.
    pub dashboard: Option<std::net::SocketAddr>,
    /// After the stream, keep the dashboard serving until shutdown.
    pub stay: bool,
    /// Labels sent apart from the requests, later and for some of them (`None`: inside each
    /// request).
    pub labels: Option<producer::LabelPlan>,
    /// Stream a scenario's fresh rows instead of adult.test's.
    pub scenario: Option<crate::scenario::Scenario>,
    /// Which predictions carry their reasons.
    pub explain: predictor::Explain,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("bootstrapping a bundle failed")]
    Init(#[from] crate::initialize::InitError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("making the scenario's rows failed")]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("the predictor failed")]
    Predictor(#[from] predictor::PredictorError),
    #[error("the retrainer failed")]
    Retrainer(#[from] retrainer::RetrainerError),
    #[error("the producer failed")]
    Producer(#[from] producer::ProducerError),
    #[error("{path}: cannot write the demo's input")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a worker thread failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("the dashboard failed")]
    Dashboard(#[from] dashboard::DashboardError),
}

/// The dashboard at `addr`, or at any free port when that one is taken.
async fn start_dashboard(
    kafka: &KafkaSettings,
    addr: std::net::SocketAddr,
    config: &DemoConfig,
    shutdown: CancellationToken,
) -> Result<dashboard::Dashboard, DemoError> {
    let mut dconf = DashboardConfig::new(kafka.clone(), addr);
    // The demo's topics are its own: the page shows all of its run.
    dconf.since = None;
    dconf.data_dir = Some(config.data_dir.clone());
    dconf.triggers = config.triggers;
    match dashboard::start(dconf.clone(), shutdown.clone()).await {
        Err(dashboard::DashboardError::Bind { source, .. })
            if source.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 =>
        {
            tracing::warn!("{addr} is taken: the dashboard takes another port");
            dconf.addr.set_port(0);
            Ok(dashboard::start(dconf, shutdown).await?)
        }
        started => Ok(started?),
    }
}

/// Runs the demo; returns the producer's summary.
pub async fn run(config: DemoConfig, shutdown: CancellationToken) -> Result<Summary, DemoError> {
    let out = config.sink.clone();
    let work = tempfile::tempdir().map_err(|source| DemoError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let (_broker, kafka) = kafka_or_embedded(config.kafka.clone(), config.embedded).await?;
    // A store of its own: the demo tells the same story every time, from v1.
    let store = BundleStore::new(
        work.path().join("models"),
        work.path().join("dataprocessors"),
    );
    let v1 = match config.bootstrap_rows {
        None => {
            let mut init = InitConfig::new(store.clone(), config.search.clone());
            init.data_dir = config.data_dir.clone();
            init.scoring = config.scoring;
            match tokio::task::spawn_blocking(move || initialize::run(&init)).await?? {
                Initialized::Trained(m) => *m,
                Initialized::AlreadyThere(_) => unreachable!("a new store has no bundle"),
            }
        }
        Some(n) => {
            let (s, dir, search, scoring) = (
                store.clone(),
                config.data_dir.clone(),
                config.search.clone(),
                config.scoring,
            );
            tokio::task::spawn_blocking(move || weak_bootstrap(&s, &dir, n, &search, scoring))
                .await??
        }
    };
    out.line(&format!(
        "bundle v{} ready: champion, trained on {} rows of adult.data, CV log loss {:.4}",
        v1.version, v1.training_data.base_rows, v1.cv.log_loss
    ));

    let services = shutdown.child_token();
    let board = match config.dashboard {
        Some(addr) => Some(start_dashboard(&kafka, addr, &config, services.clone()).await?),
        None => None,
    };
    if let Some(b) = &board {
        out.line(&format!("dashboard: open {}", b.url));
    }
    let mut pconf = PredictorConfig::new(kafka.clone());
    pconf.store = Some(store.clone());
    pconf.scoring = config.scoring;
    pconf.explain = config.explain;
    let predictor = tokio::spawn(predictor::run(pconf, services.clone()));

    let mut rconf = RetrainerConfig::new(kafka.clone(), store.clone());
    rconf.data_dir = config.data_dir.clone();
    rconf.scoring = config.scoring;
    rconf.retrain_every = config.retrain_every;
    rconf.search = config.search.clone();
    // Training threads yield to the predictor's, as the retrainer's do.
    rconf.search.nice = crate::defaults::TRAIN_NICE;
    // A new broker starts its offsets at zero: keep this run's rows apart.
    rconf.rows_file = work.path().join("stream_rows.jsonl");
    rconf.join_file = work.path().join("label_join.jsonl");
    rconf.promotion = config.promotion;
    rconf.shuffle_labels = config.shuffle_labels;
    rconf.biased_challenger = config.biased_challenger;
    rconf.triggers = config.triggers;
    let events_out = out.clone();
    let retrainer = tokio::spawn(retrainer::run(rconf, services.clone(), move |e| {
        if let Some(line) = event_line(e) {
            events_out.line(&line)
        }
    }));

    let input = work.path().join("requests.jsonl");
    let (data_dir, rows, scenario) = (config.data_dir.clone(), config.rows, config.scenario);
    let input_path = input.clone();
    tokio::task::spawn_blocking(move || demo_input(&data_dir, rows, scenario, &input_path))
        .await??;
    let mut prod = ProducerConfig::new(kafka, Input::JsonLines(input));
    // Its malformed records include a line that is not JSON, for the dead-letter queue.
    prod.send_non_json = true;
    prod.rate = config.rate;
    prod.wait = crate::defaults::demo::WAIT;
    prod.sink = Some(out.clone());
    prod.status = config.status.clone();
    prod.show_per_sec = crate::defaults::demo::SHOW_PER_SEC;
    prod.labels = config.labels;
    let summary = producer::run(prod, shutdown.clone()).await;

    if let (true, Some(b)) = (config.stay, &board) {
        out.line(&format!(
            "the stream is over; the dashboard stays at {} until Ctrl-C",
            b.url
        ));
        shutdown.cancelled().await;
    }
    services.cancel();
    let pstats = predictor.await??;
    let rstats = retrainer.await??;
    if let Some(b) = board {
        b.finished().await?;
    }
    let summary = summary?;
    out.line(&format!("\n=== demo summary ===\n{}", summary.report()));
    out.line(&format!(
        "predictor: {} predictions, {} dead letters, versions used {:?}; retrainer: {} labeled rows, versions made {:?}; gate: {}",
        pstats.predicted,
        pstats.dead_lettered,
        pstats.versions,
        rstats.rows,
        rstats.versions,
        if rstats.decisions.is_empty() {
            "no decision".to_owned()
        } else {
            rstats
                .decisions
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        }
    ));
    Ok(summary)
}
