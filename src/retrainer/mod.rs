//! The retrainer: its own consumer group on `census.requests`. At start it takes over the model
//! registry on `census.models` (one retrainer publishes at a time) and caches its bundles
//! locally. It keeps every labeled row in a durable log ([`Retrainer::step`]; offsets are
//! committed only once the rows are fsynced), and every `retrain_every` new rows refits processor
//! and model on the base training rows plus all stream rows in a task of its own, while rows keep
//! being stored. With the gate ([`Promotion::Gate`], the default) a new version that passes an
//! offline check becomes the challenger; the gate then promotes or rejects it on the paired log
//! losses of the labeled rows that follow, and after a promotion it keeps the former champion on
//! probation and rolls back to it if it proves better.

mod clock;
mod config;
mod events;
mod gating;
mod labels;
mod monitors;
mod observed;
mod offline;
mod operator;
mod registry_sync;
mod retrain;
mod rowlog;
mod service;
mod step;
mod tracked;
mod verdict;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use config::{Promotion, RetrainerConfig};
pub use events::{CommandEvent, Event, GateEvent, RetrainEvent, RetrainerStats};
pub use labels::LabelJoin;
pub use rowlog::{Compacted, Retention, RowLog, RowLogError, StoredRow};
pub use step::{Retrainer, StepReport};

use crate::bundle::BundleError;
use crate::data::load_adult;
use crate::kafka::BrokerError;
use crate::registry::{read_registry, Publisher, RegistryError};
use crate::stream::worker::{self, Batching, Guarantee};
use retrain::Trainer;
use service::Service;

#[derive(Debug, thiserror::Error)]
pub enum RetrainerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("retraining failed")]
    Train(#[from] crate::train::TrainError),
    #[error("the rows file")]
    Rows(#[from] RowLogError),
    #[error("the join's journal")]
    LabelJoin(#[from] crate::join::JournalError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("a worker thread failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Runs the retrainer until `shutdown`: takes over the registry (fencing any older retrainer),
/// brings the local cache up to it, then keeps rows, retrains and gates. `on_event` is told of
/// each new version and of the gate's progress and decisions. On shutdown a retrain in progress
/// is cancelled.
pub async fn run(
    config: RetrainerConfig,
    shutdown: CancellationToken,
    on_event: impl Fn(&Event) + Send + Sync + 'static,
) -> Result<RetrainerStats, RetrainerError> {
    let metrics = config.metrics.clone();
    let tracking = config.tracking.clone().map(|t| (t, config.store.clone()));
    let on_event = move |e: &Event| {
        observed::observe(&metrics, e);
        if let Some((tracker, store)) = &tracking {
            tracked::track(tracker, store, e);
        }
        on_event(e)
    };
    let health = config.health.clone();
    health.set("broker", config.kafka.broker_probe()?);
    health.set("registry", || Err("reading the registry".into()));
    health.set("group", || Err("not in its group yet".into()));
    config.kafka.ensure_topics().await?;
    let publisher = Publisher::start(&config.kafka, &config.transactional_id).await?;
    let registry = read_registry(&config.kafka).await?;
    let champion =
        registry_sync::sync(&config.store, &registry, &publisher, config.scoring).await?;

    let (data_dir, fetch) = (config.data_dir.clone(), config.fetch.clone());
    let adult = tokio::task::spawn_blocking(move || load_adult(&data_dir, &fetch)).await??;
    let base = Arc::new(adult.train);
    let keyed = base.clone();
    let base_keys = tokio::task::spawn_blocking(move || {
        keyed
            .iter()
            .map(|r| offline::content_key(&r.row, r.label))
            .collect()
    })
    .await?;
    let retrainer = open_rows(&config, &registry, &champion).await?;

    let member = config.kafka.subscribe(
        &config.group,
        config.instance_id.as_deref(),
        &[&config.kafka.topics.requests, &config.kafka.topics.labels],
        config.metrics.consumer_lag.clone(),
        &shutdown,
    )?;
    health.set("registry", || {
        Ok("read; this retrainer is its writer".into())
    });
    health.set(
        "group",
        crate::kafka::membership_probe(&member.consumer, &config.group),
    );
    let batching = Batching {
        name: "retrainer".into(),
        max_batch: config.max_batch,
        linger: config.linger,
        // Its rows are durable once a step returns: nothing to wait for between batches.
        in_flight: std::num::NonZeroUsize::MIN,
    };
    // Operators' commands: a retrainer applies them itself, so a command fences nobody.
    let (commands_tx, commands) = tokio::sync::mpsc::channel(16);
    let watcher = tokio::spawn(crate::registry::watch_commands(
        config.kafka.clone(),
        commands_tx,
        shutdown.child_token(),
    ));
    let dlq = config.kafka.producer()?;
    let stop_training = CancellationToken::new();
    let trainer = Arc::new(Trainer {
        registry_highest: registry.highest().unwrap_or(0).into(),
        config,
        base,
        base_keys: Arc::new(base_keys),
        base_sha256: adult.train_sha256,
        test: Arc::new(adult.test),
        publisher,
        dlq,
    });
    let mut service = Service::start(
        trainer,
        retrainer,
        champion,
        &registry,
        stop_training.clone(),
        service::Feeds {
            commands,
            looks: member.looks.clone(),
        },
        on_event,
    )
    .await?;
    // The registry as read at start holds every bundle's bytes: let them go. The service keeps
    // the bundles it uses (champion, challenger) loaded, and the local store the rest.
    drop(registry);
    service.apply_gate().await?;
    let result = worker::run(
        &member.consumer,
        &batching,
        &Guarantee::AtLeastOnce,
        service,
        &shutdown,
    )
    .await;
    stop_training.cancel();
    drop(member);
    watcher.abort();
    result?.stop().await
}

/// The rows file, with the new rows counted from the cut-off of the newest version, not the
/// champion's: a version that was rejected, or rolled back from, has used the rows before its
/// cut-off.
async fn open_rows(
    config: &RetrainerConfig,
    registry: &crate::registry::Registry,
    champion: &crate::bundle::BundleFiles,
) -> Result<Retrainer, RetrainerError> {
    let rows_file = config.rows_file.clone();
    let log = tokio::task::spawn_blocking(move || RowLog::open(&rows_file)).await??;
    let (join_file, window) = (config.join_file.clone(), config.label_window);
    let labels_topic = config.kafka.topics.labels.clone();
    let labels =
        tokio::task::spawn_blocking(move || LabelJoin::open(&join_file, &labels_topic, window))
            .await??;
    let newest = registry
        .highest()
        .filter(|&h| h != champion.manifest.version);
    let store = config.store.clone();
    let cutoff = match newest {
        Some(h) => tokio::task::spawn_blocking(move || store.read_files(h))
            .await?
            .map(|f| f.manifest.training_data.stream_offsets)
            .unwrap_or_else(|_| champion.manifest.training_data.stream_offsets.clone()),
        None => champion.manifest.training_data.stream_offsets.clone(),
    };
    let mut cutoff = cutoff;
    for topic in [&config.kafka.topics.requests, &config.kafka.topics.labels] {
        let ends = config.kafka.end_offsets(topic).await?;
        cutoff = past_the_end_dropped(cutoff, topic, &ends);
    }
    let retrainer = Retrainer::new(log, labels, &cutoff, config.retrain_every);
    let (requests, labels) = retrainer.labels().pending();
    tracing::info!(
        "retrainer: {} labeled rows stored, champion v{} trained on {}; retraining every {}; \
         {requests} requests wait for their label, {labels} labels for their request (window {} s)",
        retrainer.log().len(),
        champion.manifest.version,
        retrainer.trained_rows(),
        config.retrain_every,
        config.label_window.as_secs()
    );
    Ok(retrainer)
}

/// `cutoff` without the partitions of `topic` whose cut-off lies past the partition's end
/// offset (`ends`): the topic is not the one the version was trained on (deleted and created
/// again, or another cluster), so none of its rows were trained on. Each is logged.
fn past_the_end_dropped(
    mut cutoff: std::collections::BTreeMap<String, i64>,
    topic: &str,
    ends: &[(i32, i64)],
) -> std::collections::BTreeMap<String, i64> {
    for &(partition, end) in ends {
        let key = format!("{topic}/{partition}");
        if let Some(&at) = cutoff.get(&key).filter(|&&at| at > end) {
            tracing::warn!(
                "retrainer: the newest version was trained on {key} up to offset {at}, but the \
                 partition ends at {end}: it is not the topic that version read (created again?), \
                 so its rows count as new"
            );
            cutoff.remove(&key);
        }
    }
    cutoff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cutoff_past_the_end_of_its_partition_is_dropped() {
        let cutoff = std::collections::BTreeMap::from([
            ("census.requests/0".to_owned(), 5000),
            ("census.requests/1".to_owned(), 40),
            ("other/0".to_owned(), 9999),
        ]);
        let kept = past_the_end_dropped(cutoff, "census.requests", &[(0, 1200), (1, 900)]);
        assert_eq!(
            kept.into_iter().collect::<Vec<_>>(),
            [
                ("census.requests/1".to_owned(), 40),
                ("other/0".to_owned(), 9999)
            ]
        );
    }
}
