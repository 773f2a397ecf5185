//! Flags shared by several binaries.

use std::path::PathBuf;

use clap::Args;

use crate::bundle::BundleStore;

/// Kafka bootstrap servers when neither `--brokers` nor `KAFKA_BROKERS` is given.
pub const DEFAULT_BROKERS: &str = "localhost:9092";
/// Folder of model files, manifests and `CURRENT`, relative to the working directory.
pub const DEFAULT_MODELS_DIR: &str = "models";
/// Folder of feature processor files, relative to the working directory.
pub const DEFAULT_PROCESSORS_DIR: &str = "dataprocessors";
/// Folder of the Adult data files, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "data";
/// Consumer group of the predictors.
pub const PREDICTOR_GROUP: &str = "census-predictor";
/// Consumer group of the retrainer.
pub const RETRAINER_GROUP: &str = "census-retrainer";

/// Where bundles are stored.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Folder of model files, manifests and CURRENT.
    #[arg(long, env = "CENSUS_MODELS_DIR", default_value = DEFAULT_MODELS_DIR)]
    pub models_dir: PathBuf,
    /// Folder of feature processor files.
    #[arg(long, env = "CENSUS_PROCESSORS_DIR", default_value = DEFAULT_PROCESSORS_DIR)]
    pub processors_dir: PathBuf,
}

impl StoreArgs {
    pub fn store(&self) -> BundleStore {
        BundleStore::new(&self.models_dir, &self.processors_dir)
    }
}

/// The machine's core count, the default number of worker threads.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Where Kafka is and the topic names.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = DEFAULT_BROKERS)]
    pub brokers: String,
    /// Partitions of census.requests and census.predictions when this creates them.
    #[arg(long, env = "CENSUS_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
    #[arg(long, default_value = "census.requests")]
    pub requests_topic: String,
    #[arg(long, default_value = "census.predictions")]
    pub predictions_topic: String,
    #[arg(long, default_value = "census.dlq")]
    pub dlq_topic: String,
    #[arg(long, default_value = "census.models")]
    pub models_topic: String,
    /// Extra librdkafka setting for every Kafka client, `key=value` (repeatable), e.g.
    /// `--kafka-config security.protocol=SASL_SSL`.
    #[arg(long = "kafka-config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub kafka_config: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

impl KafkaArgs {
    pub fn settings(&self) -> crate::stream::KafkaSettings {
        let mut s = crate::stream::KafkaSettings::new(self.brokers.clone());
        s.partitions = self.partitions;
        s.extra.extend(self.kafka_config.iter().cloned());
        s.topics = crate::stream::Topics {
            requests: self.requests_topic.clone(),
            predictions: self.predictions_topic.clone(),
            dlq: self.dlq_topic.clone(),
            models: self.models_topic.clone(),
        };
        s
    }
}

/// A token cancelled on Ctrl-C or SIGTERM: services finish their batch, commit and leave.
pub fn shutdown_on_signals() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing the batch in hand");
        t.cancel();
    });
    token
}
