//! The dashboard: a live web page of the running pipeline. It reads the four topics as a
//! consumer of its own ([`read`]), so it works against any deployment and shares nothing with
//! the services; folds them into a [`board::Board`]; and serves one page ([`server`]) that
//! shows the state in its first response and follows it with server-sent events.

pub mod board;
mod histogram;
pub mod page;
mod read;
mod server;
pub mod snapshot;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::kafka::{BrokerError, KafkaSettings};
use crate::lifecycle::gate::GateSettings;
use crate::lifecycle::triggers::Triggers;
use crate::stream::messages::now_ms;
use crate::telemetry::DashboardMetrics;
use board::Board;
use page::Published;

/// How often the page is sent the state.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub kafka: KafkaSettings,
    /// Where the page is served (port 0: any free port).
    pub addr: SocketAddr,
    /// The predictors' consumer group, whose lag is shown.
    pub predictor_group: String,
    /// The gate's settings, to replay its progress from the predictions (the retrainer's
    /// defaults unless told otherwise).
    pub gate: GateSettings,
    /// The drift window and threshold (the retrainer's defaults unless told otherwise).
    pub triggers: Triggers,
    /// How long a prediction waits for its label (the retrainer's default unless told
    /// otherwise).
    pub label_window: std::time::Duration,
    /// The data folder, for adult.data's rows (every version trained on them: a request with
    /// their features is not a new row). `None` or no file: only the stream's rows are known.
    pub data_dir: Option<std::path::PathBuf>,
    /// How far back the stream's topics are read at start (`None`: from their beginning).
    pub since: Option<std::time::Duration>,
    pub metrics: DashboardMetrics,
    /// Its readiness probe (the broker answers), served at the page's `/readyz`.
    pub health: crate::util::health::Health,
}

impl DashboardConfig {
    pub fn new(kafka: KafkaSettings, addr: SocketAddr) -> Self {
        DashboardConfig {
            kafka,
            addr,
            predictor_group: crate::defaults::PREDICTOR_GROUP.to_owned(),
            gate: GateSettings::default(),
            triggers: Triggers::default(),
            label_window: crate::defaults::LABEL_WINDOW,
            data_dir: None,
            since: Some(crate::defaults::DASHBOARD_SINCE),
            metrics: DashboardMetrics::default(),
            health: Default::default(),
        }
    }
}

/// adult.data's rows, when the data folder has the file (logged when it has not).
fn base_rows(dir: Option<&std::path::Path>) -> Vec<crate::data::LabeledRow> {
    let Some(dir) = dir else {
        return Vec::new();
    };
    match crate::data::load_training_rows(dir, &crate::data::Fetch::Never) {
        Ok((rows, _)) => rows,
        Err(e) => {
            tracing::warn!(
                "dashboard: adult.data not read ({}): rows new to the stream count as new rows \
                 even when v1 was trained on their like",
                crate::error_chain(&e)
            );
            Vec::new()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("cannot serve the dashboard on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("a dashboard task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// A dashboard serving.
pub struct Dashboard {
    /// Where to open the page.
    pub url: String,
    reader: JoinHandle<Result<(), BrokerError>>,
    lag: JoinHandle<Result<(), BrokerError>>,
}

impl Dashboard {
    /// Waits until the dashboard stops (its shutdown), returning what stopped it.
    pub async fn finished(self) -> Result<(), DashboardError> {
        self.reader.await??;
        self.lag.await??;
        Ok(())
    }
}

/// Starts the dashboard: binds its address, then reads the topics and serves the page until
/// `shutdown`.
pub async fn start(
    config: DashboardConfig,
    shutdown: CancellationToken,
) -> Result<Dashboard, DashboardError> {
    let bind_err = |source| DashboardError::Bind {
        addr: config.addr,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(bind_err)?;
    config.health.set("broker", config.kafka.broker_probe()?);
    config.kafka.ensure_topics().await?;
    let board = Arc::new(Mutex::new(
        Board::new(&config.kafka.topics.requests, config.gate, &config.triggers)
            .with_label_window(config.label_window)
            .with_base_rows(base_rows(config.data_dir.as_deref()).iter().map(|r| &r.row)),
    ));
    let (tx, rx) = watch::channel(Published::default());
    publish(&board, &tx, &config.metrics);
    let bound = server::serve(
        listener,
        rx,
        config.metrics.clone(),
        config.health.clone(),
        shutdown.clone(),
    )
    .map_err(bind_err)?;
    let since_ms = config
        .since
        .map(|d| crate::stream::messages::now_ms() - d.as_millis() as i64);
    board.lock().expect("board lock").since_ms = since_ms;
    let reader = tokio::spawn(read::read_topics(
        config.kafka.clone(),
        board.clone(),
        config.metrics.clone(),
        since_ms,
        shutdown.clone(),
    ));
    let metrics = config.metrics.clone();
    let lag = tokio::spawn(read::watch_group_lag(
        config.kafka.clone(),
        config.predictor_group.clone(),
        board.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PUBLISH_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => publish(&board, &tx, &metrics),
            }
        }
    });
    let url = format!("http://{bound}/");
    tracing::info!("dashboard at {url}");
    Ok(Dashboard { url, reader, lag })
}

fn publish(board: &Mutex<Board>, tx: &watch::Sender<Published>, metrics: &DashboardMetrics) {
    let snapshot = board.lock().expect("board lock").snapshot(now_ms());
    metrics.keep_versions(snapshot.versions.iter().map(|v| v.version).collect());
    for v in &snapshot.versions {
        for (role, tally) in [
            ("served", v.served),
            ("shadow", v.shadow),
            ("new_rows", v.new_rows),
        ] {
            if let Some(t) = tally {
                metrics.live(v.version, role, t.labeled, t.accuracy, t.log_loss);
            }
        }
        if let Some(e) = v.estimated {
            metrics.estimated(v.version, e.predictions, e.accuracy, e.log_loss);
        }
        if let (Some(groups), "champion") = (&v.groups, v.role) {
            metrics.groups(v.version, groups);
        }
    }
    metrics
        .labels_pending
        .set(snapshot.totals.labels_pending as i64);
    match serde_json::to_string(&snapshot) {
        Ok(json) => {
            tx.send_replace(Published {
                json: json.into(),
                tiles: Arc::new(page::Tiles::of(&snapshot)),
            });
        }
        Err(e) => tracing::error!("dashboard: the state as JSON: {e}"),
    }
}

/// Runs the dashboard until `shutdown`.
pub async fn run(
    config: DashboardConfig,
    shutdown: CancellationToken,
) -> Result<(), DashboardError> {
    start(config, shutdown).await?.finished().await
}
