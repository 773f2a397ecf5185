//! The model registry is the compacted `census.models` topic ([`records`]): immutable bundle
//! records, one per version, and alias records naming the champion (which serves) and the
//! challenger (scored in shadow). Local `models/` and `dataprocessors/` folders are a cache of
//! it. One [`Publisher`] writes at a time (Kafka transactions fence the others); predictors
//! [`follow`] it; the retrainer reads it whole at start ([`read_registry`]).

pub mod admin;
mod bundle_record;
pub mod commands;
pub mod follow;
mod publish;
mod read;
pub mod records;
mod state;
mod watch;

pub use bundle_record::{bundle_files, load_bundle, RefusedBundle};
pub use follow::{champion_version, follow, serve_alone, CurrentServing, FollowerState, Serving};
pub use publish::Publisher;
pub use read::{read_registry, read_registry_with};
pub use records::{Action, Alias, AliasRecord, Answer, CommandRecord, PinRecord};
pub use state::{Ignored, Registry, MAX_VERSION_GAP};
pub use watch::watch_commands;

use crate::kafka::BrokerError;

/// The Kafka transactional id of the registry's one writer (the retrainer, or an operator's
/// command that takes over from it).
pub fn publisher_id(models_topic: &str) -> String {
    format!("census-registry.{models_topic}")
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "fenced: another publisher with transactional id `{transactional_id}` took over the \
         registry; this one publishes nothing more"
    )]
    Fenced { transactional_id: String },
    #[error("the model text of v{version} is not UTF-8")]
    NotUtf8 {
        version: u32,
        #[source]
        source: std::str::Utf8Error,
    },
    #[error(
        "record `{key}` ({bytes} bytes) is larger than the topic accepts: raise its \
         max.message.bytes"
    )]
    TooLarge { key: String, bytes: usize },
    #[error(transparent)]
    Broker(#[from] BrokerError),
}
