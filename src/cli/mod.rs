//! Flags shared by the binaries. Each flag parses straight into a validated setting
//! ([`crate::settings`]), and flags that must agree with each other are checked once, as a
//! binary turns them into its settings ([`Check`]): a bad value or a contradiction stops a binary
//! at start with the flags' names, before any data is read or connection opened. Defaults come
//! from [`crate::defaults`]. The environment is read here and in the binaries only, as flags'
//! fallbacks.

mod check;

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub use check::{parse, try_parse_from, Check, Contradiction, Given};

use crate::bundle::BundleStore;
use crate::defaults;
use crate::kafka::{KafkaSettings, Topics};
use crate::lifecycle::gate::GateSettings;
use crate::lifecycle::triggers::{PageHinkleySettings, Triggers};
use crate::model::{Scorer, Scoring};
use crate::predictor::Mode;
use crate::retrainer::Promotion;
use crate::scenario::{Kind, Scenario};
use crate::settings::{self, share, Folds};
use crate::tracking::{Tracker, TrackingConfig};
use crate::train::{Calibrate, SearchConfig};
use crate::util::slot::HostSlot;

/// Where bundles are stored.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Folder of model files, manifests and CURRENT.
    #[arg(long, env = "CENSUS_MODELS_DIR", default_value = defaults::MODELS_DIR)]
    pub models_dir: PathBuf,
    /// Folder of feature processor files.
    #[arg(long, env = "CENSUS_PROCESSORS_DIR", default_value = defaults::PROCESSORS_DIR)]
    pub processors_dir: PathBuf,
}

impl StoreArgs {
    pub fn store(&self) -> BundleStore {
        BundleStore::new(&self.models_dir, &self.processors_dir)
    }
}

/// Whether a model loads only when its compiled or walked trees score as LightGBM does, for the
/// binaries that load models with the default scorer.
#[derive(Debug, Clone, Args)]
pub struct StrictArgs {
    /// A model whose compiled or walked trees do not score the canary set as LightGBM does fails
    /// to load, instead of being scored by LightGBM (logged as an error). From the environment:
    /// strict unless empty, `0`, `false`, `no` or `off`.
    #[arg(long, env = "CENSUS_SCORER_STRICT",
          value_parser = clap::builder::FalseyValueParser::new())]
    pub scorer_strict: bool,
}

impl StrictArgs {
    pub fn scoring(&self) -> Scoring {
        Scoring::strict(self.scorer_strict)
    }
}

/// Which implementation scores, and how strictly models load (the predictor).
#[derive(Debug, Clone, Args)]
pub struct ScoringArgs {
    /// Which implementation scores. Compiled and native trees are checked against LightGBM on a
    /// canary set when a bundle loads (LightGBM scores a bundle that differs, logged, unless
    /// --scorer-strict). All give the same probabilities; see BENCHMARKS.md for their speeds.
    #[arg(long, env = "CENSUS_SCORER", value_enum, default_value_t = Scoring::default().scorer)]
    pub scorer: Scorer,
    #[command(flatten)]
    pub strict: StrictArgs,
}

impl ScoringArgs {
    pub fn scoring(&self) -> Scoring {
        Scoring {
            scorer: self.scorer,
            ..self.strict.scoring()
        }
    }
}

/// The folder of the Adult data files.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Folder holding adult.data and adult.test (downloaded from UCI if missing).
    #[arg(long, env = "CENSUS_DATA_DIR", default_value = defaults::DATA_DIR)]
    pub data_dir: PathBuf,
}

/// Fresh rows made by a scenario instead of a file's.
#[derive(Debug, Clone, Args)]
pub struct ScenarioArgs {
    /// Send fresh rows instead of a file's: adult.test's rows with their numbers jittered (never
    /// a copy of a UCI row), labels drawn from a reference model, with a drift: fresh (none),
    /// ageing (covariate shift), label-shift, concept-drift. They never repeat: for long runs.
    #[arg(long, value_enum)]
    pub scenario: Option<Kind>,
    /// The scenario's drift at its full, 0 to 1.
    #[arg(long, value_parser = share, default_value_t = 1.0, requires = "scenario")]
    pub drift: f64,
    /// The drift grows from nothing at the first row to full at this row.
    #[arg(long, default_value_t = defaults::SCENARIO_RAMP_ROWS, requires = "scenario")]
    pub drift_over_rows: usize,
    /// Seed of the scenario's rows and labels.
    #[arg(long, default_value_t = 0, requires = "scenario")]
    pub scenario_seed: u64,
}

impl ScenarioArgs {
    pub fn scenario(&self) -> Option<Scenario> {
        self.scenario.map(|kind| Scenario {
            kind,
            strength: self.drift,
            ramp_rows: self.drift_over_rows,
            seed: self.scenario_seed,
        })
    }
}

/// Topic names, partitions and extra client settings: everything about Kafka but where it is.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Partitions of census.requests, census.predictions and census.labels when this creates them.
    #[arg(global = true, long, env = "CENSUS_PARTITIONS", default_value_t = defaults::PARTITIONS,
          value_parser = settings::partitions)]
    pub partitions: i32,
    /// Replicas of each topic when this creates it [default: the cluster's brokers, at most 3].
    /// A topic with 3 or more replicas gets `min.insync.replicas` 2, one with fewer 1.
    #[arg(global = true, long, env = "CENSUS_REPLICATION_FACTOR",
          value_parser = settings::replication_factor)]
    pub replication_factor: Option<i32>,
    #[arg(global = true, long, default_value = defaults::REQUESTS_TOPIC)]
    pub requests_topic: String,
    #[arg(global = true, long, default_value = defaults::PREDICTIONS_TOPIC)]
    pub predictions_topic: String,
    #[arg(global = true, long, default_value = defaults::DLQ_TOPIC)]
    pub dlq_topic: String,
    #[arg(global = true, long, default_value = defaults::LABELS_TOPIC)]
    pub labels_topic: String,
    #[arg(global = true, long, default_value = defaults::MODELS_TOPIC)]
    pub models_topic: String,
    /// Extra librdkafka setting for every Kafka client, `key=value` (repeatable), e.g.
    /// `--kafka-config security.protocol=SASL_SSL`.
    #[arg(global = true, long = "kafka-config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub kafka_config: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => {
            let (k, v) = (k.trim(), v.trim());
            crate::kafka::check_extra_setting(k, v)?;
            Ok((k.to_owned(), v.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

impl ClientArgs {
    /// Settings for `brokers` with these topics and extras.
    pub fn settings(&self, brokers: &str) -> KafkaSettings {
        let mut s = KafkaSettings::new(brokers);
        s.partitions = self.partitions;
        s.replication_factor = self.replication_factor;
        s.extra.extend(self.kafka_config.iter().cloned());
        s.topics = Topics {
            requests: self.requests_topic.clone(),
            predictions: self.predictions_topic.clone(),
            dlq: self.dlq_topic.clone(),
            labels: self.labels_topic.clone(),
            models: self.models_topic.clone(),
        };
        s
    }
}

/// Where Kafka is, and the rest of its settings.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(global = true, long, env = "KAFKA_BROKERS", default_value = defaults::BROKERS,
          value_parser = settings::brokers)]
    pub brokers: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl KafkaArgs {
    pub fn settings(&self) -> KafkaSettings {
        self.client.settings(&self.brokers)
    }
}

/// A real Kafka if given, else an embedded broker (the demo, the load test).
#[derive(Debug, Clone, Args)]
pub struct EmbeddedOrKafkaArgs {
    /// A real Kafka to use instead of the embedded broker.
    #[arg(global = true, long, env = "KAFKA_BROKERS", value_parser = settings::brokers)]
    pub brokers: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl EmbeddedOrKafkaArgs {
    /// The settings, and whether to start an embedded broker.
    pub fn settings(&self) -> (KafkaSettings, bool) {
        match &self.brokers {
            Some(b) => (self.client.settings(b), false),
            None => (self.client.settings(""), true),
        }
    }
}

/// How a hyperparameter search runs, but for its budget (each binary has its own default).
#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// Cross-validation folds (at least 2).
    #[arg(long, default_value_t = Folds::default())]
    pub folds: Folds,
    /// Seed of the folds, the search and LightGBM.
    #[arg(long, default_value_t = defaults::SEED)]
    pub seed: u64,
    /// Evaluations run in parallel (default: all cores).
    #[arg(long, default_value_t = defaults::threads(), value_parser = settings::positive)]
    pub threads: NonZeroUsize,
    /// Run every evaluation to its end: do not give up those that can no longer beat the best
    /// of the earlier generations.
    #[arg(long)]
    pub no_pruning: bool,
    /// How the model's scores are calibrated: `platt` (Platt's scaling fitted on out-of-fold
    /// predictions) or `none`.
    #[arg(long, value_enum, default_value_t = Calibrate::default())]
    pub calibrate: Calibrate,
}

impl SearchArgs {
    pub fn config(&self, max_evals: NonZeroUsize) -> SearchConfig {
        SearchConfig {
            max_evals,
            folds: self.folds,
            seed: self.seed,
            threads: self.threads,
            progress: false,
            prune: !self.no_pruning,
            cancel: Default::default(),
            calibrate: self.calibrate,
            nice: 0,
        }
    }
}

/// How a retrain becomes the champion (`--promotion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum PromotionKind {
    /// A new version is a challenger until the sequential gate promotes or rejects it.
    #[default]
    Gate,
    /// Every retrain becomes the champion at once.
    Always,
}

/// The gate's flags, by id: none applies with `--promotion always`.
const GATE_FLAGS: [(&str, &str); 5] = [
    ("gate_alpha", "--gate-alpha"),
    ("gate_delta", "--gate-delta"),
    ("gate_fairness_delta", "--gate-fairness-delta"),
    ("gate_min_labels", "--gate-min-labels"),
    ("gate_max_labels", "--gate-max-labels"),
];

/// How new versions become the champion.
#[derive(Debug, Clone, Args)]
pub struct PromotionArgs {
    #[arg(long, value_enum, default_value_t = PromotionKind::default())]
    pub promotion: PromotionKind,
    /// The gate's error rate per decision, however often it looks.
    #[arg(long, default_value_t = defaults::gate::ALPHA, value_parser = settings::probability)]
    pub gate_alpha: f64,
    /// The gate's margin δ: promote only a challenger better by more than this mean log loss.
    #[arg(long, default_value_t = defaults::gate::DELTA, value_parser = settings::non_negative)]
    pub gate_delta: f64,
    /// The gate's fairness margin ε: reject a challenger that widens the gap in true- or
    /// false-positive rate between the sexes by more than this, with confidence (and on
    /// probation, roll back a champion that does).
    #[arg(long, default_value_t = defaults::gate::FAIRNESS_DELTA, value_parser = settings::non_negative)]
    pub gate_fairness_delta: f64,
    /// Labeled requests before the gate decides anything.
    #[arg(long, default_value_t = defaults::gate::MIN_LABELS)]
    pub gate_min_labels: u64,
    /// Labeled requests after which an undecided challenger is rejected.
    #[arg(long, default_value_t = defaults::gate::MAX_LABELS)]
    pub gate_max_labels: u64,
    /// Train retrains on shuffled labels: deliberately bad challengers (demos, tests).
    #[arg(long)]
    pub shuffle_labels: bool,
    /// Train retrains where this share of women's `>50K` labels is turned to `<=50K`:
    /// deliberately biased challengers (demos, tests).
    #[arg(long, value_name = "SHARE", value_parser = settings::probability)]
    pub biased_challenger: Option<f64>,
}

impl PromotionArgs {
    /// The promotion these flags stand for. Refused: a gate that would give up on a challenger
    /// before it may decide (`--gate-max-labels` below `--gate-min-labels`), and gate settings
    /// given with `--promotion always`, which has no gate.
    pub fn promotion(&self, given: &Given) -> Result<Promotion, Contradiction> {
        match self.promotion {
            PromotionKind::Always => match GATE_FLAGS.iter().find(|(id, _)| given.contains(id)) {
                Some((_, flag)) => Err(Contradiction::new(format!(
                    "'{flag}' is a setting of the gate, and '--promotion always' has none"
                ))),
                None => Ok(Promotion::Always),
            },
            PromotionKind::Gate if self.gate_max_labels < self.gate_min_labels => {
                let default = |id| {
                    if given.contains(id) {
                        ""
                    } else {
                        ", its default"
                    }
                };
                Err(Contradiction::new(format!(
                    "'--gate-max-labels' ({}{}) is below '--gate-min-labels' ({}{}): the gate \
                     would reject every challenger before it may decide",
                    self.gate_max_labels,
                    default("gate_max_labels"),
                    self.gate_min_labels,
                    default("gate_min_labels"),
                )))
            }
            PromotionKind::Gate => Ok(Promotion::Gate(GateSettings {
                alpha: self.gate_alpha,
                delta: self.gate_delta,
                fairness_delta: self.gate_fairness_delta,
                min_labels: self.gate_min_labels,
                max_labels: self.gate_max_labels,
                ..GateSettings::default()
            })),
        }
    }
}

/// The retrain triggers besides `--retrain-every` rows.
#[derive(Debug, Clone, Args)]
pub struct TriggerArgs {
    /// Retrain every this many seconds when at least --retrain-min-rows new labeled rows came
    /// (0: off).
    #[arg(long, default_value_t = defaults::triggers::EVERY.map_or(0, |d| d.as_secs()))]
    pub retrain_every_secs: u64,
    #[arg(long, default_value_t = defaults::triggers::MIN_ROWS)]
    pub retrain_min_rows: usize,
    /// Retrain when a feature's population stability index over the last --drift-window
    /// requests exceeds this (0: off).
    #[arg(long, default_value_t = defaults::triggers::PSI.unwrap_or(0.0),
          value_parser = settings::non_negative)]
    pub drift_psi: f64,
    #[arg(long, default_value_t = defaults::triggers::PSI_WINDOW, value_parser = settings::positive)]
    pub drift_window: NonZeroUsize,
    /// Retrain when the Page-Hinkley statistic of the champion's log loss exceeds this (0: off).
    #[arg(long, default_value_t = defaults::loss_drift::LAMBDA,
          value_parser = settings::non_negative)]
    pub drift_loss_lambda: f64,
    /// Seconds at least between two retrains.
    #[arg(long, default_value_t = defaults::triggers::MIN_GAP.as_secs())]
    pub retrain_min_gap_secs: u64,
}

impl TriggerArgs {
    pub fn triggers(&self) -> Triggers {
        Triggers {
            every: (self.retrain_every_secs > 0)
                .then(|| Duration::from_secs(self.retrain_every_secs)),
            min_rows: self.retrain_min_rows,
            psi: (self.drift_psi > 0.0).then_some(self.drift_psi),
            psi_window: self.drift_window.get(),
            loss_drift: (self.drift_loss_lambda > 0.0).then(|| PageHinkleySettings {
                lambda: self.drift_loss_lambda,
                ..PageHinkleySettings::default()
            }),
            min_gap: Duration::from_secs(self.retrain_min_gap_secs),
        }
    }
}

/// MLflow tracking, off unless a server is named.
#[derive(Debug, Clone, Args)]
pub struct TrackingArgs {
    /// Log each search as a run and each version as a version of a registered model on this
    /// MLflow tracking server (http://host:port).
    #[arg(long, env = "MLFLOW_TRACKING_URI", value_parser = mlflow_uri)]
    pub mlflow_uri: Option<String>,
    /// MLflow experiment of the runs (created when missing).
    #[arg(long, env = "MLFLOW_EXPERIMENT_NAME", default_value = defaults::MLFLOW_EXPERIMENT)]
    pub mlflow_experiment: String,
    /// Registered model of the versions (created when missing).
    #[arg(long, default_value = defaults::MLFLOW_MODEL, requires = "mlflow_uri")]
    pub mlflow_model: String,
    /// Seconds to wait at exit for the tracking server to take what is not logged yet.
    #[arg(long, default_value_t = defaults::MLFLOW_WAIT_SECS, requires = "mlflow_uri")]
    pub mlflow_wait_secs: u64,
}

fn mlflow_uri(s: &str) -> Result<String, String> {
    crate::tracking::tracking_uri(s)
        .map_err(|e| format!("{e}; it comes from --mlflow-uri or MLFLOW_TRACKING_URI"))
}

impl TrackingArgs {
    /// A started tracker when a server is named.
    pub fn tracker(&self) -> Option<Tracker> {
        let uri = self.mlflow_uri.clone()?;
        tracing::info!(
            "MLflow tracking at {uri}: experiment {}, registered model {}",
            self.mlflow_experiment,
            self.mlflow_model
        );
        Some(Tracker::start(TrackingConfig {
            uri,
            experiment: self.mlflow_experiment.clone(),
            model_name: self.mlflow_model.clone(),
        }))
    }

    pub fn wait(&self) -> Duration {
        Duration::from_secs(self.mlflow_wait_secs)
    }
}

/// Where a service serves its Prometheus metrics, if anywhere.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9464).
    #[arg(long, env = "CENSUS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// The default consumer group of a kind of service, for [`MemberArgs`].
pub trait DefaultGroup {
    const GROUP: &'static str;
}

/// The predictors' group.
#[derive(Debug, Clone)]
pub struct PredictorGroup;

impl DefaultGroup for PredictorGroup {
    const GROUP: &'static str = defaults::PREDICTOR_GROUP;
}

/// The retrainer's group.
#[derive(Debug, Clone)]
pub struct RetrainerGroup;

impl DefaultGroup for RetrainerGroup {
    const GROUP: &'static str = defaults::RETRAINER_GROUP;
}

/// A member of a consumer group (the predictor, the retrainer): its group, with the default of
/// its kind `G`, its name in it, its metrics and its batches.
#[derive(Debug, Clone, Args)]
pub struct MemberArgs<G: DefaultGroup> {
    /// Consumer group (Kafka's `group.id`).
    #[arg(long, default_value = G::GROUP)]
    pub group: String,
    /// This instance's stable name in its consumer group (Kafka's `group.instance.id`, static
    /// membership): restarted with the same name within the session timeout (10 s), it takes
    /// its partitions back at once, without a rebalance. `auto`: the host's name and the first
    /// free slot on this host (`<host>-0`, `<host>-1`, …; held with a lock file while it runs,
    /// so two on one host never share one, and one restarted after a crash gets its name
    /// back). `none`: a dynamic member (a clean stop hands its partitions over at once, a crash
    /// holds them for the session timeout). Or a name of your own, one per instance.
    #[arg(long, env = "CENSUS_INSTANCE_ID", default_value = "auto", value_parser = identity)]
    pub instance_id: Identity,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Most records handled in one batch.
    #[arg(long, default_value_t = defaults::MAX_BATCH, value_parser = settings::positive)]
    pub max_batch: NonZeroUsize,
    #[arg(skip)]
    kind: PhantomData<G>,
}

impl<G: DefaultGroup> MemberArgs<G> {
    /// The instance's name in its group, claiming a slot on this host for `auto` (held by the
    /// returned slot; keep it for as long as the process runs).
    pub fn instance(&self) -> Result<(Option<String>, Option<HostSlot>), Contradiction> {
        match &self.instance_id {
            Identity::Named(name) => Ok((Some(name.clone()), None)),
            Identity::Dynamic => Ok((None, None)),
            Identity::Auto => {
                let slot = crate::util::slot::claim(&crate::util::slot::default_dir(), &self.group)
                    .map_err(|e| {
                        Contradiction::new(format!(
                            "'--instance-id auto' cannot claim a slot on this host ({e}): pass \
                             '--instance-id NAME' or 'none'"
                        ))
                    })?;
                let name = format!("{}-{}", crate::util::host::hostname(), slot.number);
                Ok((Some(name), Some(slot)))
            }
        }
    }

    /// A predictor's mode: exactly-once needs an instance name, which its transactional id is
    /// built from; at-least-once keeps it, if any, as its static membership's.
    pub fn mode(
        &self,
        exactly_once: bool,
        instance_id: Option<String>,
    ) -> Result<Mode, Contradiction> {
        match (exactly_once, instance_id) {
            (true, Some(instance_id)) => Ok(Mode::ExactlyOnce { instance_id }),
            (true, None) => Err(Contradiction::new(
                "'--exactly-once' needs an instance name ('--instance-id auto' or a name, not \
                 'none'): its transactional id is built from it",
            )),
            (false, instance_id) => Ok(Mode::AtLeastOnce { instance_id }),
        }
    }
}

/// How a group member names itself: see [`MemberArgs::instance_id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Auto,
    Dynamic,
    Named(String),
}

fn identity(s: &str) -> Result<Identity, String> {
    match s.trim() {
        "" => Err("an empty name: give a name, 'auto' or 'none'".into()),
        "auto" => Ok(Identity::Auto),
        "none" => Ok(Identity::Dynamic),
        name => Ok(Identity::Named(name.to_owned())),
    }
}

/// Serves, when `addr` is given, the metrics that `register` puts in a registry at
/// `http://<addr>/metrics` until `shutdown`.
pub async fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
    register: impl FnOnce(&mut prometheus_client::registry::Registry),
    health: crate::util::health::Health,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let Some(addr) = addr else {
        return Ok(());
    };
    let mut registry = prometheus_client::registry::Registry::default();
    register(&mut registry);
    crate::telemetry::serve(addr, registry, health, shutdown)
        .await
        .with_context(|| format!("serving metrics at {addr}"))?;
    Ok(())
}

/// How long a service may take to stop.
#[derive(Debug, Clone, Args)]
pub struct ShutdownArgs {
    /// Seconds from SIGTERM (or Ctrl-C) to exit, however the broker is doing: work in hand is
    /// finished and committed if it can be within them; what was not acknowledged is not
    /// committed, and is read again after a restart. A second signal exits at once.
    #[arg(long, env = "CENSUS_SHUTDOWN_SECS",
          default_value_t = NonZeroUsize::new(defaults::SHUTDOWN.as_secs() as usize).unwrap(),
          value_parser = settings::positive)]
    pub shutdown_secs: NonZeroUsize,
}

impl ShutdownArgs {
    pub fn deadline(&self) -> Duration {
        Duration::from_secs(self.shutdown_secs.get() as u64)
    }
}

/// A token cancelled on Ctrl-C or SIGTERM; `then` says what the binary does before it exits
/// (logged as `shutting down: <then>`). A second signal exits at once (status 130); with a
/// `deadline`, a process still running that long after the first exits (status 1).
pub fn shutdown_on_signals(
    then: &'static str,
    deadline: Option<Duration>,
) -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if signalled().await.is_err() {
            return;
        }
        match deadline {
            Some(d) => tracing::info!(
                "shutting down: {then} (at most {} s; a second Ctrl-C exits at once)",
                d.as_secs()
            ),
            None => tracing::info!("shutting down: {then} (a second Ctrl-C exits at once)"),
        }
        t.cancel();
        // A thread of its own: it keeps counting while the runtime shuts down (which waits for
        // blocking calls, such as a metadata request to a broker that does not answer).
        if let Some(d) = deadline {
            std::thread::spawn(move || {
                std::thread::sleep(d);
                tracing::error!(
                    "not stopped within {} s of the signal (is the broker unreachable?): \
                     exiting now; what was not acknowledged is not committed, and is read again \
                     after a restart",
                    d.as_secs()
                );
                std::process::exit(1);
            });
        }
        if signalled().await.is_ok() {
            tracing::warn!("a second signal: exiting now");
            std::process::exit(130);
        }
    });
    token
}

/// Waits for Ctrl-C or SIGTERM.
async fn signalled() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}

/// Runs a service's main future on a multi-threaded runtime, then waits at most 5 s for threads
/// still blocked in a call that never returned (a librdkafka call of a consumer left stuck): a
/// service that ended must exit, so that its supervisor can start it again. Freed heap memory is
/// handed back to the system every 30 s meanwhile, from one arena a core
/// ([`crate::util::free_memory`]).
pub fn run_service<F: std::future::Future>(main: F) -> F::Output {
    crate::util::free_memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    runtime.spawn(crate::util::free_memory::trim_every(
        crate::util::free_memory::TRIM_EVERY,
    ));
    let out = runtime.block_on(main);
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A retrainer's promotion flags and a predictor's mode flags together.
    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        promotion: PromotionArgs,
        #[command(flatten)]
        member: MemberArgs<RetrainerGroup>,
        #[arg(long)]
        exactly_once: bool,
    }

    impl Check for Flags {
        type Valid = (Promotion, Mode, String);
        fn check(self, given: &Given) -> Result<Self::Valid, Contradiction> {
            let promotion = self.promotion.promotion(given)?;
            let (instance, _slot) = self.member.instance()?;
            let mode = self.member.mode(self.exactly_once, instance)?;
            Ok((promotion, mode, self.member.group))
        }
    }

    fn parse(args: &[&str]) -> Result<(Promotion, Mode, String), String> {
        try_parse_from::<Flags, _, _>(std::iter::once("test").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn contradictions_are_refused_naming_their_flags() {
        for (args, says) in [
            (
                &["--gate-min-labels", "500", "--gate-max-labels", "400"][..],
                "'--gate-max-labels' (400) is below '--gate-min-labels' (500)",
            ),
            (
                &["--gate-min-labels", "20000"],
                "'--gate-max-labels' (10000, its default) is below '--gate-min-labels' (20000)",
            ),
            (
                &["--promotion", "always", "--gate-delta", "0.1"],
                "'--gate-delta' is a setting of the gate",
            ),
            (
                &["--exactly-once", "--instance-id", "none"],
                "'--exactly-once' needs an instance name",
            ),
            (&["--instance-id", ""], "an empty name"),
            (&["--promotion", "sometimes"], "'--promotion <PROMOTION>'"),
        ] {
            let err = parse(args).expect_err("refused");
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }

    #[test]
    fn flags_that_agree_make_their_settings() {
        let (promotion, mode, group) = parse(&[]).unwrap();
        assert_eq!(promotion, Promotion::Gate(GateSettings::default()));
        assert_eq!(group, defaults::RETRAINER_GROUP);
        // By default, the host's name and a slot on this host.
        let auto = mode.instance_id().unwrap().to_owned();
        let host = crate::util::host::hostname();
        let slot: u32 = auto
            .strip_prefix(&format!("{host}-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{auto}"));
        assert!(slot < 1024);
        assert_eq!(
            parse(&["--instance-id", "none"]).unwrap().1,
            Mode::AtLeastOnce { instance_id: None }
        );
        assert!(matches!(
            parse(&["--exactly-once"]).unwrap().1,
            Mode::ExactlyOnce { .. }
        ));
        let (promotion, mode, _) = parse(&[
            "--gate-min-labels=300",
            "--gate-max-labels=300",
            "--instance-id=a",
        ])
        .unwrap();
        let Promotion::Gate(gate) = promotion else {
            panic!("{promotion:?}")
        };
        assert_eq!((gate.min_labels, gate.max_labels), (300, 300));
        assert_eq!(mode.instance_id(), Some("a"), "at-least-once keeps the id");
        assert_eq!(
            parse(&["--promotion", "always"]).unwrap().0,
            Promotion::Always
        );
        assert_eq!(
            parse(&["--exactly-once", "--instance-id", "b"]).unwrap().1,
            Mode::ExactlyOnce {
                instance_id: "b".into()
            }
        );
    }
}
