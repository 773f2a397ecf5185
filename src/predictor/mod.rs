//! The predictor: a consumer group on `census.requests`. Each batch is decoded, validated,
//! transformed and scored with the bundle in use ([`Predictor::step`]); one prediction per
//! request goes to `census.predictions`, each record that cannot be scored to `census.dlq`
//! ([`deliver`]). The stream's worker loop commits offsets only after every output of a batch is
//! acknowledged (at-least-once). It serves the champion that the registry on `census.models`
//! names and scores the challenger, when there is one, in shadow; both are swapped between
//! batches.

mod deliver;
mod explain;
mod step;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use deliver::{
    dead_letter_record, deliver, send_dead_letter, DeadLetterRecord, Delivered, Limits,
};
pub use explain::{reasons, Explain, DEFAULT_EXPLAIN};
pub use step::{score_batch, score_batch_explained, Outcome, Predictor, Scored};

use crate::bundle::BundleStore;
use crate::defaults;
use crate::kafka::KafkaProducer;
use crate::kafka::{BrokerError, InMessage, KafkaSettings, RefusedRecord, Topics, Transactions};
use crate::model::Scoring;
use crate::registry::{self, champion_version, serve_alone, CurrentServing};
use crate::stream::decode::Fault;
use crate::stream::messages::now_ms;
use crate::stream::worker::{self, Batching, Guarantee, Worker};
use crate::telemetry::{PredictorMetrics, ReasonLabel, VersionLabel};
use crate::util::health::Health;

/// How long a predictor with a local bundle waits, at start, to be in step with the registry
/// before it serves the local bundle anyway.
const REGISTRY_WAIT: Duration = Duration::from_secs(30);

/// How a predictor delivers, and the name it goes by in its group. An instance id makes it a
/// static member of the group (`group.instance.id`), which takes its partitions back at once
/// when restarted; without one it is a dynamic member. Exactly-once needs one: its transactional
/// id is built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Offsets are committed once a batch's outputs are acknowledged: a crash repeats at most
    /// the batches in flight.
    AtLeastOnce { instance_id: Option<String> },
    /// Each batch's predictions, dead letters and offsets in one Kafka transaction, as
    /// transactional id `<group>-<instance_id>`: a `read_committed` reader sees every request
    /// answered once, crashes included.
    ExactlyOnce { instance_id: String },
}

impl Mode {
    /// The static member's name in its group, if any.
    pub fn instance_id(&self) -> Option<&str> {
        match self {
            Mode::AtLeastOnce { instance_id } => instance_id.as_deref(),
            Mode::ExactlyOnce { instance_id } => Some(instance_id),
        }
    }
}

impl Default for Mode {
    /// At-least-once, a dynamic member.
    fn default() -> Self {
        Mode::AtLeastOnce { instance_id: None }
    }
}

/// Settings of one predictor instance.
#[derive(Debug, Clone)]
pub struct PredictorConfig {
    pub kafka: KafkaSettings,
    /// Consumer group shared by all predictor instances.
    pub group: String,
    /// At-least-once or exactly-once, and the instance's name in the group.
    pub mode: Mode,
    /// Local bundles to start from, if any (the newest on `census.models` wins when newer).
    pub store: Option<BundleStore>,
    /// How the bundles it loads score.
    pub scoring: Scoring,
    /// Which predictions carry their reasons.
    pub explain: Explain,
    pub max_batch: NonZeroUsize,
    /// How long a batch waits for more records after its first.
    pub linger: Duration,
    /// At-least-once: most batches read and not yet committed, their outputs awaiting the
    /// broker's acknowledgements together (1: each batch is committed before the next is
    /// read). A crash repeats at most these batches. Exactly-once keeps one.
    pub in_flight: NonZeroUsize,
    /// Its Prometheus metrics (served by the caller, if at all).
    pub metrics: PredictorMetrics,
    /// Its readiness probes (served by the caller, if at all): broker, champion, registry,
    /// group.
    pub health: Health,
    /// Name in logs.
    pub name: String,
}

impl PredictorConfig {
    pub fn new(kafka: KafkaSettings) -> Self {
        PredictorConfig {
            kafka,
            group: defaults::PREDICTOR_GROUP.into(),
            mode: Mode::default(),
            store: None,
            scoring: Scoring::default(),
            explain: DEFAULT_EXPLAIN,
            max_batch: defaults::MAX_BATCH,
            linger: defaults::PREDICTOR_LINGER,
            in_flight: defaults::PREDICTOR_IN_FLIGHT,
            metrics: PredictorMetrics::default(),
            health: Health::default(),
            name: "predictor".into(),
        }
    }
}

/// What a predictor did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PredictorStats {
    pub predicted: u64,
    pub dead_lettered: u64,
    pub batches: u64,
    /// Versions used, in the order they were first used.
    pub versions: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum PredictorError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("the models follower stopped")]
    FollowerStopped(#[source] Option<BrokerError>),
    #[error("loading the local bundle failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("the broker refused {} predictions of the batch", .0.len())]
    Refused(Vec<RefusedRecord>),
    #[error(
        "exactly-once mode needs a real Kafka broker: the embedded one does not commit offsets \
         in transactions"
    )]
    NoTransactionalOffsets,
}

/// Where a predictor's outputs go.
enum Sender {
    /// An idempotent producer (at-least-once).
    Plain(KafkaProducer),
    /// The transactional producer whose transactions the worker loop opens and commits.
    Transactional(Arc<Transactions>),
}

impl Sender {
    fn producer(&self) -> KafkaProducer {
        match self {
            Sender::Plain(p) => p.clone(),
            Sender::Transactional(t) => t.producer(),
        }
    }
}

/// The predictor as the worker loop runs it: score, then send and await acknowledgements.
struct Service {
    predictor: Predictor,
    sender: Sender,
    topics: Arc<Topics>,
    limits: Limits,
    /// Predictions the broker refused in an aborted transaction, by source, with its reason:
    /// dead-lettered when their batch comes again.
    refused: HashMap<(String, i32, i64), String>,
    metrics: PredictorMetrics,
    /// The versions with series in `metrics`, least recently counted first.
    counted: MetricVersions,
    stats: PredictorStats,
}

/// Versions whose per-version series the predictor's metrics keep: the last
/// [`MetricVersions::KEEP`] it counted predictions of (the champion and the challenger among
/// them); an older one's series are dropped.
#[derive(Debug, Default)]
struct MetricVersions(std::collections::VecDeque<u32>);

impl MetricVersions {
    const KEEP: usize = 5;

    /// Notes that `version` was counted; returns the versions to forget.
    fn counted(&mut self, version: u32) -> Vec<u32> {
        if let Some(at) = self.0.iter().position(|&v| v == version) {
            self.0.remove(at);
        }
        self.0.push_back(version);
        let beyond = self.0.len().saturating_sub(Self::KEEP);
        self.0.drain(..beyond).collect()
    }
}

/// A batch's outcomes, when its step began and the champion that scored it.
struct ScoredBatch {
    outcomes: Vec<Outcome>,
    started: Instant,
    champion: u32,
}

/// What a batch put on the topics, counted once its offsets are committed.
struct Answered {
    delivered: Delivered,
    started: Instant,
    champion: u32,
}

impl Worker for Service {
    type Output = ScoredBatch;
    type Delivered = Answered;
    type Error = PredictorError;

    fn step(&mut self, batch: &[InMessage]) -> Result<ScoredBatch, PredictorError> {
        let started = Instant::now();
        let mut outcomes = self.predictor.step(batch);
        let champion = *self
            .predictor
            .versions()
            .last()
            .expect("a version after a step");
        // The champion's gauge follows the swap (see `run`): a batch begun before a swap must
        // not set it back.
        self.metrics
            .set_version("challenger", self.predictor.challenger_version());
        if !self.refused.is_empty() {
            for o in &mut outcomes {
                if let Outcome::Prediction { key, source, .. } = o {
                    if let Some(reason) = self.refused.remove(source) {
                        *o = Outcome::DeadLetter {
                            key: Some(key.as_bytes().to_vec()),
                            payload: None,
                            fault: Fault::Undeliverable,
                            detail: format!("the prediction was refused: {reason}"),
                            source: source.clone(),
                        };
                    }
                }
            }
        }
        Ok(ScoredBatch {
            outcomes,
            started,
            champion,
        })
    }

    fn deliver(&mut self, scored: ScoredBatch) -> worker::Delivery<Answered, PredictorError> {
        let producer = self.sender.producer();
        let in_transaction = matches!(self.sender, Sender::Transactional(_));
        let (topics, limits) = (self.topics.clone(), self.limits);
        Box::pin(async move {
            let ScoredBatch {
                outcomes,
                started,
                champion,
            } = scored;
            match deliver(&producer, &topics, &outcomes, limits, in_transaction).await {
                Ok(delivered) => Ok(Answered {
                    delivered,
                    started,
                    champion,
                }),
                Err(BrokerError::RefusedInTransaction(records)) => {
                    Err(PredictorError::Refused(records))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    fn on_abort(&mut self, failed: Option<PredictorError>) {
        self.metrics.transactions_aborted.inc();
        if let Some(PredictorError::Refused(records)) = failed {
            for r in &records {
                let (topic, partition, offset) = &r.source;
                tracing::warn!(
                    "the prediction of {topic}/{partition} offset {offset} was refused ({}); \
                     it is dead-lettered when its batch comes again",
                    r.reason
                );
            }
            self.refused
                .extend(records.into_iter().map(|r| (r.source, r.reason)));
        }
    }

    async fn after_commit(&mut self, answered: Answered) -> Result<(), PredictorError> {
        let Answered {
            delivered: done,
            started,
            champion,
        } = answered;
        self.stats.predicted += done.predictions;
        self.stats.dead_lettered += done.dead_letters;
        self.stats.batches += 1;
        let m = &self.metrics;
        m.batch_seconds.observe(started.elapsed().as_secs_f64());
        if done.predictions > 0 {
            m.predictions
                .get_or_create(&VersionLabel {
                    model_version: champion,
                })
                .inc_by(done.predictions);
        }
        for (reason, n) in done.by_reason {
            m.dead_letters
                .get_or_create(&ReasonLabel { reason })
                .inc_by(n);
        }
        let mut versions = vec![champion];
        versions.extend(done.scored.iter().filter_map(|s| s.challenger.map(|c| c.0)));
        versions.dedup();
        for v in versions {
            for old in self.counted.counted(v) {
                m.forget_version(old);
            }
        }
        let now = now_ms();
        for s in &done.scored {
            if s.explained {
                m.explained.inc();
            }
            m.latency_seconds
                .observe((now - s.sent_at_ms).max(0) as f64 / 1000.0);
            if let Some(truth) = s.truth {
                m.labeled(s.champion, "champion", truth);
                if let Some(shadow) = s.challenger {
                    m.labeled(shadow, "challenger", truth);
                }
            }
        }
        Ok(())
    }
}

/// Runs a predictor until `shutdown`: creates missing topics, loads a bundle (local, or the
/// newest on `census.models`, waiting for one), then serves; on shutdown it finishes the batch
/// in hand, commits and leaves the group.
pub async fn run(
    config: PredictorConfig,
    shutdown: CancellationToken,
) -> Result<PredictorStats, PredictorError> {
    let name = config.name.clone();
    if matches!(config.mode, Mode::ExactlyOnce { .. }) && !config.kafka.transactional_offsets {
        return Err(PredictorError::NoTransactionalOffsets);
    }
    config.kafka.ensure_topics().await?;
    let current = CurrentServing::default();
    // Bundles load with their explainer when predictions are to carry reasons.
    let scoring = Scoring {
        explain: config.explain.is_on(),
        ..config.scoring
    };
    if let Some(store) = config.store.clone() {
        match tokio::task::spawn_blocking(move || store.load_current(scoring)).await? {
            Ok(bundle) => {
                tracing::info!(
                    "{name}: serving local v{} until {} names a champion",
                    bundle.manifest.version,
                    config.kafka.topics.models
                );
                serve_alone(&current, bundle);
            }
            Err(e) => tracing::info!("{name}: no local bundle ({})", crate::error_chain(&e)),
        }
    }
    let (loaded_tx, mut loaded) = watch::channel(champion_version(&current));
    // The champion gauge names the version the next batch is scored with from the moment it is
    // swapped in, not from that batch: a predictor with no records (its partitions elsewhere, or
    // none coming) shows a promotion as soon as it has it.
    let gauge = config.metrics.clone();
    let mut swapped = loaded.clone();
    tokio::spawn(async move {
        loop {
            let version = *swapped.borrow_and_update();
            if version.is_some() {
                gauge.set_version("champion", version);
            }
            if swapped.changed().await.is_err() {
                return;
            }
        }
    });
    let (state_tx, in_step) = watch::channel(registry::FollowerState::default());
    let mut follower_state = state_tx.subscribe();
    let health = &config.health;
    health.set("broker", config.kafka.broker_probe()?);
    health.set("group", || Err("not in its group yet".into()));
    let serving = current.clone();
    health.set("champion", move || match champion_version(&serving) {
        Some(v) => Ok(format!("serving v{v}")),
        None => Err("no champion loaded yet".into()),
    });
    health.set("registry", move || match *in_step.borrow() {
        s if !s.caught_up => Err("reading the registry".into()),
        s if !s.in_step => Err("behind the registry (see census_registry_stale_seconds)".into()),
        _ => Ok("in step".into()),
    });
    let follower_stop = shutdown.child_token();
    let mut follower = tokio::spawn(registry::follow(
        config.kafka.clone(),
        current.clone(),
        config.metrics.registry.clone(),
        loaded_tx,
        state_tx,
        name.clone(),
        scoring,
        follower_stop.clone(),
    ));
    if champion_version(&current).is_none() {
        tracing::info!(
            "{name}: no bundle yet (none locally, no champion on {}): waiting for one; run \
             `initialize` and the retrainer to publish it",
            config.kafka.topics.models
        );
        while champion_version(&current).is_none() {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    follower_stop.cancel();
                    let _ = follower.await;
                    return Ok(PredictorStats::default());
                }
                changed = loaded.changed() => if changed.is_err() {
                    let cause = (&mut follower).await?.err();
                    return Err(PredictorError::FollowerStopped(cause));
                },
            }
        }
    } else {
        // A local bundle may be older than the champion the registry names (a predictor
        // restarted after a promotion): the backlog is not answered with it. The registry is
        // read to its end and what it names loaded first, for at most REGISTRY_WAIT; past that
        // (the registry unreadable) the local bundle serves, and the follower swaps it later.
        let started = Instant::now();
        let in_step = tokio::select! {
            _ = shutdown.cancelled() => {
                follower_stop.cancel();
                let _ = follower.await;
                return Ok(PredictorStats::default());
            }
            done = &mut follower => {
                let cause = done?.err();
                return Err(PredictorError::FollowerStopped(cause));
            }
            r = tokio::time::timeout(REGISTRY_WAIT, async {
                follower_state.wait_for(|s| s.caught_up && s.in_step).await.is_ok()
            }) => r.unwrap_or(false),
        };
        let serving = champion_version(&current).unwrap_or(0);
        if in_step {
            tracing::info!(
                "{name}: in step with {} after {:.1} s: serving v{serving}",
                config.kafka.topics.models,
                started.elapsed().as_secs_f64()
            );
        } else {
            tracing::warn!(
                "{name}: {} not read within {} s: serving v{serving} meanwhile",
                config.kafka.topics.models,
                REGISTRY_WAIT.as_secs()
            );
        }
    }

    let topics = &config.kafka.topics;
    let limits = config
        .kafka
        .max_message_bytes(&[&topics.predictions, &topics.dlq])
        .await;
    // The transactional producer first: its start aborts what a killed predictor with the same
    // id left open, before this one reads the partitions that transaction held.
    let (sender, guarantee) = match &config.mode {
        Mode::AtLeastOnce { .. } => (
            Sender::Plain(config.kafka.producer_within(&limits)?),
            Guarantee::AtLeastOnce,
        ),
        Mode::ExactlyOnce { instance_id } => {
            let id = format!("{}-{instance_id}", config.group);
            let (kafka, l, i) = (config.kafka.clone(), limits.clone(), id.clone());
            let txn = Arc::new(
                Transactions::start(&id, defaults::TRANSACTION_STEP, move || {
                    kafka.transactional_producer_within(&l, &i)
                })
                .await?,
            );
            tracing::info!("{name}: exactly-once, as transactional id {id}");
            (
                Sender::Transactional(txn.clone()),
                Guarantee::ExactlyOnce(txn),
            )
        }
    };
    let member = config.kafka.subscribe(
        &config.group,
        config.mode.instance_id(),
        &[&config.kafka.topics.requests],
        config.metrics.consumer_lag.clone(),
        &shutdown,
    )?;
    health.set(
        "group",
        crate::kafka::membership_probe(&member.consumer, &config.group),
    );
    let service = Service {
        predictor: Predictor::new(current).explaining(config.explain),
        sender,
        topics: Arc::new(config.kafka.topics.clone()),
        limits: Limits {
            predictions: limits[0],
            dlq: limits[1],
        },
        refused: HashMap::new(),
        metrics: config.metrics.clone(),
        counted: MetricVersions::default(),
        stats: PredictorStats::default(),
    };
    let batching = Batching {
        name: name.clone(),
        max_batch: config.max_batch,
        linger: config.linger,
        in_flight: config.in_flight,
    };
    let result = worker::run(&member.consumer, &batching, &guarantee, service, &shutdown).await;
    member.consumer.unsubscribe();
    drop(member);
    follower_stop.cancel();
    let _ = follower.await;
    let service = result?;
    let stats = PredictorStats {
        versions: service.predictor.versions().to_vec(),
        ..service.stats
    };
    tracing::info!(
        "{name}: stopped after {} predictions and {} dead letters",
        stats.predicted,
        stats.dead_lettered
    );
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_versions_counted_keep_their_series() {
        let metrics = PredictorMetrics::default();
        let mut counted = MetricVersions::default();
        for v in 1..=8 {
            metrics.labeled((v, 0.9), "champion", true);
            metrics.labeled((1, 0.9), "challenger", true);
            for old in counted.counted(v).into_iter().chain(counted.counted(1)) {
                metrics.forget_version(old);
            }
        }
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let versions: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("census_labeled_predictions_total{"))
            .filter_map(|l| l.split("model_version=\"").nth(1)?.split('"').next())
            .collect();
        // v1, counted at every step (a long challenger), stays; of the rest the newest four.
        assert_eq!(versions, ["1", "5", "6", "7", "8"].into());
    }
}
