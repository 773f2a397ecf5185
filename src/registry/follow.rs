//! Following the registry: a predictor reads `census.models` from its beginning and keeps the
//! bundles of the champion and the challenger loaded, in an [`ArcSwapOption`] that its batches
//! read. A bundle that cannot be verified or loaded is refused with a log line, and the part it
//! was meant for keeps its current bundle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::telemetry::ReasonLabel;

use super::read::catch_up;
use super::records::{parse, Alias};
use super::state::Registry;
use crate::bundle::{Bundle, BundleError};
use crate::kafka::{BrokerError, KafkaSettings};
use crate::model::Scoring;
use crate::stream::messages::ModelMessage;

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

/// Why a bundle record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefusedBundle {
    #[error("not a model message")]
    NotAModelMessage(#[source] serde_json::Error),
    #[error("the processor is not base64")]
    NotBase64(#[source] base64::DecodeError),
    #[error("record of v{key} holds the bundle of v{inside}")]
    WrongVersion { key: u32, inside: u32 },
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

impl RefusedBundle {
    /// A short name for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RefusedBundle::NotAModelMessage(_) => "not_a_model_message",
            RefusedBundle::NotBase64(_) => "not_base64",
            RefusedBundle::WrongVersion { .. } => "wrong_version",
            RefusedBundle::Bundle(BundleError::Integrity { .. }) => "integrity",
            RefusedBundle::Bundle(BundleError::Processor { .. }) => "processor",
            RefusedBundle::Bundle(BundleError::Model { .. }) => "model",
            RefusedBundle::Bundle(BundleError::Manifest { .. }) => "manifest",
            RefusedBundle::Bundle(_) => "other",
        }
    }
}

/// Verifies and loads the bundle record of `version`, its model scored as `scoring` says (CPU
/// work: call off the runtime).
pub fn load_bundle(
    version: u32,
    payload: &[u8],
    scoring: Scoring,
) -> Result<Bundle, RefusedBundle> {
    let msg: ModelMessage =
        serde_json::from_slice(payload).map_err(RefusedBundle::NotAModelMessage)?;
    if msg.manifest.version != version {
        return Err(RefusedBundle::WrongVersion {
            key: version,
            inside: msg.manifest.version,
        });
    }
    let files = msg.into_files().map_err(RefusedBundle::NotBase64)?;
    Ok(files.load(scoring)?)
}

/// Serves `bundle` as champion with no challenger (a predictor's local bundle at start).
pub fn serve_alone(current: &CurrentServing, bundle: Bundle) {
    current.store(Some(Arc::new(Serving {
        champion: Arc::new(bundle),
        challenger: None,
    })));
}

/// Follows the registry until `shutdown`, keeping `current` on the champion and challenger it
/// names (loaded as `scoring` says) and announcing the champion's version on `loaded`. The topic
/// is first read to its end and only its final state served (never the champions of the past,
/// one after another); then each new record is applied as it comes.
pub async fn follow(
    settings: KafkaSettings,
    current: CurrentServing,
    refused: Family<ReasonLabel, Counter>,
    loaded: watch::Sender<Option<u32>>,
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
        who,
        topic: topic.clone(),
        refused,
        scoring,
    };
    if let Some(s) = follower.current.load_full() {
        follower
            .cache
            .insert(s.champion.manifest.version, Some(s.champion.clone()));
    }
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = catch_up(&settings, &consumer, &mut follower.registry) => r?,
    }
    follower.reconcile().await?;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = consumer.recv() => m,
        };
        match msg {
            Ok(m) => match parse(m.key(), m.payload()) {
                Ok(record) => follower.registry.apply(record),
                Err(e) => {
                    tracing::warn!(
                        "{}: {topic}: skipped: {}",
                        follower.who,
                        crate::error_chain(&e)
                    );
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!("{}: {topic}: {e}", follower.who);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        follower.reconcile().await?;
    }
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
    who: String,
    topic: String,
    /// Bundles refused, by reason.
    refused: Family<ReasonLabel, Counter>,
    /// How the bundles it loads score.
    scoring: Scoring,
}

impl Follower {
    fn refuse(&mut self, version: u32, reason: &str) {
        self.cache.insert(version, None);
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Serves the champion and challenger the registry names now, loading what it must.
    async fn reconcile(&mut self) -> Result<(), BrokerError> {
        let (who, topic) = (self.who.clone(), self.topic.clone());
        let champion = self.registry.version_of(Alias::Champion);
        let challenger = self
            .registry
            .version_of(Alias::Challenger)
            .filter(|&c| Some(c) != champion);
        for v in champion.into_iter().chain(challenger) {
            if self.cache.contains_key(&v) {
                continue;
            }
            let payload = match self.registry.bundle(v) {
                Some(p) => p.to_vec(),
                // An older version named again (a rollback, an operator's promote): its bytes
                // were let go, so the topic is read once more for them.
                None => match super::read_registry(&self.settings).await?.bundle(v) {
                    Some(p) => p.to_vec(),
                    None => continue, // its bundle record has not arrived yet
                },
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
        Ok(())
    }
}
