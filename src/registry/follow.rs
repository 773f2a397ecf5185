//! Following the registry: a predictor reads `census.models` from its beginning and keeps the
//! bundles of the champion and the challenger loaded, in an [`ArcSwapOption`] that its batches
//! read. A bundle that cannot be verified or loaded is refused with a log line, and the part it
//! was meant for keeps its current bundle. A follower never stops on an error of the broker: it
//! tries again with backoff, says how long it has been behind (a metric, and a warning once it
//! is behind for long), and tells its service through [`FollowerState`] whether it is in step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::bundle_record::load_bundle;
use super::read::{catch_up, warn_ignored};
use super::records::Alias;
use super::state::Registry;
use crate::bundle::Bundle;
use crate::kafka::{BrokerError, KafkaSettings};
use crate::model::Scoring;
use crate::telemetry::{ReasonLabel, RegistryMetrics};

/// The first wait before trying again after an error of the broker; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between two tries: once the broker is back, a follower is in step again
/// within this (plus the time to read the topic).
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// Behind for this long, a follower warns at each try.
const BEHIND_LOUDLY: Duration = Duration::from_secs(30);

/// What a predictor scores with: the champion serves, the challenger is scored in shadow.
pub struct Serving {
    pub champion: Arc<Bundle>,
    pub challenger: Option<Arc<Bundle>>,
}

/// The bundles in use, swapped whole between batches.
pub type CurrentServing = Arc<ArcSwapOption<Serving>>;

/// The champion's version in use, if any.
pub fn champion_version(current: &CurrentServing) -> Option<u32> {
    current.load().as_ref().map(|s| s.champion.manifest.version)
}

/// Serves `bundle` as champion with no challenger (a predictor's local bundle at start).
pub fn serve_alone(current: &CurrentServing, bundle: Bundle) {
    current.store(Some(Arc::new(Serving {
        champion: Arc::new(bundle),
        challenger: None,
    })));
}

/// Whether a follower serves what the registry names: `caught_up` once it has read the topic to
/// its end, `in_step` while nothing the registry names is left to load (a bundle refused for
/// good does not count: it is never going to load).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowerState {
    pub caught_up: bool,
    pub in_step: bool,
}

/// Follows the registry until `shutdown`, keeping `current` on the champion and challenger it
/// names (loaded as `scoring` says), announcing the champion's version on `loaded` and whether
/// it is in step on `state`. The topic is first read to its end and only its final state served
/// (never the champions of the past, one after another); then each new record is applied as it
/// comes. Errors of the broker are retried, never returned: the only error is a consumer that
/// cannot be made at all.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    settings: KafkaSettings,
    current: CurrentServing,
    metrics: RegistryMetrics,
    loaded: watch::Sender<Option<u32>>,
    state: watch::Sender<FollowerState>,
    who: String,
    scoring: Scoring,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    let topic = settings.topics.models.clone();
    let consumer: StreamConsumer = settings.reader()?;
    let mut follower = Follower {
        settings: settings.clone(),
        registry: Registry::default(),
        cache: BTreeMap::new(),
        current,
        loaded,
        state,
        who,
        topic: topic.clone(),
        metrics,
        scoring,
        behind_since: Some(Instant::now()),
        was_in_step: false,
    };
    if let Some(s) = follower.current.load_full() {
        follower
            .cache
            .insert(s.champion.manifest.version, Some(s.champion.clone()));
    }
    let mut wait = RETRY_FIRST;
    loop {
        let metrics = follower.metrics.clone();
        let read = catch_up(&settings, &consumer, &mut follower.registry, |e| {
            metrics.ignored(e.reason())
        });
        let r = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = read => r,
        };
        match r {
            Ok(()) => break,
            Err(e) => {
                follower.still_behind(&e);
                // Read again from the beginning: nothing half-read is kept.
                follower.registry = Registry::default();
                if sleep_or_stop(&mut wait, &shutdown).await {
                    return Ok(());
                }
            }
        }
    }
    follower.state.send_modify(|s| s.caught_up = true);
    // What the registry names is loaded at once, not after a first wait.
    let mut wait = Duration::ZERO;
    loop {
        // Behind (a bundle named but not loaded, for want of the broker): try again soon,
        // whether or not a record comes.
        let retry = follower.behind_since.is_some();
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = consumer.recv() => Some(m),
            () = tokio::time::sleep(wait), if retry => None,
        };
        match msg {
            Some(Ok(m)) => {
                if let Err(e) = follower
                    .registry
                    .read_off_runtime(m.key(), m.payload())
                    .await
                {
                    warn_ignored(&topic, m.offset(), &e);
                    follower.metrics.ignored(e.reason());
                    continue;
                }
            }
            Some(Err(e)) => {
                tracing::warn!("{}: {topic}: {e}", follower.who);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            None => {}
        }
        match follower.reconcile().await {
            Ok(()) => wait = RETRY_FIRST,
            Err(e) => {
                follower.still_behind(&e);
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Sleeps `wait` (then doubles it, up to [`RETRY_MAX`]); `true` if `shutdown` came first.
async fn sleep_or_stop(wait: &mut Duration, shutdown: &CancellationToken) -> bool {
    let stop = tokio::select! {
        _ = shutdown.cancelled() => true,
        () = tokio::time::sleep(*wait) => false,
    };
    *wait = (*wait * 2).min(RETRY_MAX);
    stop
}

/// A predictor's view of the registry and the bundles it loaded.
struct Follower {
    settings: KafkaSettings,
    registry: Registry,
    /// Loaded bundles by version: those in use, and those refused (`None`) so that a bad record
    /// is not loaded again and again.
    cache: BTreeMap<u32, Option<Arc<Bundle>>>,
    current: CurrentServing,
    loaded: watch::Sender<Option<u32>>,
    state: watch::Sender<FollowerState>,
    who: String,
    topic: String,
    metrics: RegistryMetrics,
    /// How the bundles it loads score.
    scoring: Scoring,
    /// Since when it has not served what the registry names, if it does not.
    behind_since: Option<Instant>,
    /// Whether it has been in step before (being in step at start is not news).
    was_in_step: bool,
}

impl Follower {
    fn refuse(&mut self, version: u32, reason: &str) {
        self.cache.insert(version, None);
        self.metrics
            .bundles_refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Notes that the registry could not be read (`e`): behind since when it first was, said
    /// as a metric, and loudly once it has been for long.
    fn still_behind(&mut self, e: &BrokerError) {
        let behind = self.behind();
        let serving = champion_version(&self.current)
            .map_or_else(|| "nothing".to_owned(), |v| format!("v{v}"));
        let wanted = self
            .registry
            .version_of(Alias::Champion)
            .map_or_else(String::new, |v| format!(" (the registry names v{v})"));
        let what = format!(
            "{}: {}: cannot read the registry, trying again: {}; serving {serving}{wanted}, \
             behind for {:.0} s",
            self.who,
            self.topic,
            crate::error_chain(e),
            behind.as_secs_f64()
        );
        if behind >= BEHIND_LOUDLY {
            tracing::error!("{what}");
        } else {
            tracing::warn!("{what}");
        }
    }

    /// Notes that it does not serve what the registry names (since when it first did not):
    /// the metric and the state say so. Returns for how long.
    fn behind(&mut self) -> Duration {
        let behind = self.behind_since.get_or_insert_with(Instant::now).elapsed();
        self.metrics.stale_seconds.set(behind.as_secs_f64());
        self.state.send_modify(|s| s.in_step = false);
        behind
    }

    /// Notes that it serves what the registry names.
    fn in_step(&mut self) {
        if let Some(since) = self.behind_since.take() {
            if self.was_in_step && since.elapsed() >= RETRY_FIRST {
                tracing::info!(
                    "{}: in step with {} again after {:.1} s",
                    self.who,
                    self.topic,
                    since.elapsed().as_secs_f64()
                );
            }
        }
        self.was_in_step = true;
        self.metrics.stale_seconds.set(0.0);
        self.state.send_modify(|s| s.in_step = true);
    }

    /// Serves the champion and challenger the registry names now, loading what it must.
    async fn reconcile(&mut self) -> Result<(), BrokerError> {
        let (who, topic) = (self.who.clone(), self.topic.clone());
        let champion = self.registry.version_of(Alias::Champion);
        let challenger = self
            .registry
            .version_of(Alias::Challenger)
            .filter(|&c| Some(c) != champion);
        for (alias, v) in [(Alias::Champion, champion), (Alias::Challenger, challenger)] {
            let Some(v) = v else { continue };
            if self.cache.contains_key(&v) {
                continue;
            }
            if !self.registry.alias_content_matches(alias) {
                tracing::error!(
                    "{who}: refused bundle v{v} from {topic}: its record is not the bundle the \
                     {} record names (a record replaced it)",
                    alias.as_str()
                );
                self.refuse(v, "not_the_named_bundle");
                continue;
            }
            let payload = match self.registry.bundle(v) {
                Some(p) => p.to_vec(),
                // An older version named again (a rollback, an operator's promote): its bytes
                // were let go, so the topic is read once more for them.
                None => {
                    let metrics = self.metrics.clone();
                    let again = super::read::read_registry_with(&self.settings, |e| {
                        metrics.ignored(e.reason())
                    })
                    .await?;
                    match again.bundle(v) {
                        Some(p) if again.content(v) == self.registry.content(v) => p.to_vec(),
                        // Its bundle record has not arrived yet, or what the topic holds now
                        // is not the bundle first read for it.
                        _ => continue,
                    }
                }
            };
            // A loader that panics (inside LightGBM) refuses the bundle too: the follower must
            // keep following, or the predictor would serve a stale bundle forever.
            let scoring = self.scoring;
            let loaded =
                tokio::task::spawn_blocking(move || load_bundle(v, &payload, scoring)).await;
            match loaded {
                Ok(Ok(b)) => {
                    self.cache.insert(v, Some(Arc::new(b)));
                }
                Ok(Err(e)) => {
                    tracing::error!(
                        "{who}: refused bundle v{v} from {topic}: {}",
                        crate::error_chain(&e)
                    );
                    self.refuse(v, e.reason());
                }
                Err(e) => {
                    tracing::error!(
                        "{who}: refused bundle v{v} from {topic}: loading it failed: {e}"
                    );
                    self.refuse(v, "loader_failed");
                }
            }
        }
        let get = |v: Option<u32>| v.and_then(|v| self.cache.get(&v).cloned().flatten());
        let in_use = self.current.load_full();
        let new_champion = get(champion).or_else(|| in_use.as_ref().map(|s| s.champion.clone()));
        let Some(new_champion) = new_champion else {
            self.in_step_if_loaded(champion, challenger);
            return Ok(());
        };
        let new_challenger = get(challenger);
        let same = in_use.as_ref().is_some_and(|s| {
            Arc::ptr_eq(&s.champion, &new_champion)
                && match (&s.challenger, &new_challenger) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
        });
        if same {
            self.in_step_if_loaded(champion, challenger);
            return Ok(());
        }
        tracing::info!(
            "{who}: serving v{}{}",
            new_champion.manifest.version,
            new_challenger.as_ref().map_or(String::new(), |c| format!(
                ", shadowing v{}",
                c.manifest.version
            ))
        );
        let version = new_champion.manifest.version;
        self.current.store(Some(Arc::new(Serving {
            champion: new_champion,
            challenger: new_challenger,
        })));
        // Keep only what is in use (and what was refused), and of the records' bytes only those
        // that may still be named: the champion's, the challenger's and newer versions'.
        self.cache
            .retain(|v, b| b.is_none() || Some(*v) == champion || Some(*v) == challenger);
        self.registry
            .retain_bundles(|v| Some(v) == challenger || champion.is_none_or(|c| v >= c));
        self.loaded.send_replace(Some(version));
        self.in_step_if_loaded(champion, challenger);
        Ok(())
    }

    /// In step if every version named is loaded or refused for good; a bundle whose record
    /// has not come yet leaves the follower behind.
    fn in_step_if_loaded(&mut self, champion: Option<u32>, challenger: Option<u32>) {
        let waiting = champion
            .into_iter()
            .chain(challenger)
            .any(|v| !self.cache.contains_key(&v));
        if !waiting {
            return self.in_step();
        }
        self.behind();
    }
}
