//! An operator's hand on the registry: promote a version, or roll back to the previous
//! champion, with a reason that is recorded. The command publishes with the retrainer's
//! transactional id, so a running retrainer is fenced and stops (its supervisor restarts it,
//! and it starts from the registry as the command left it): the registry never has two writers.

use super::records::{Alias, AliasRecord};
use super::{read_registry, Publisher, Registry, RegistryError};
use crate::kafka::KafkaSettings;

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("v{0} is not in the registry (versions: {1:?})")]
    NoSuchVersion(u32, Vec<u32>),
    #[error("the registry names no champion yet")]
    NoChampion,
    #[error("the champion v{0} has no previous version to roll back to")]
    NothingToRollBackTo(u32),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Makes `version` the champion and clears the challenger.
pub async fn promote(
    settings: &KafkaSettings,
    transactional_id: &str,
    version: u32,
    reason: &str,
) -> Result<AliasRecord, CommandError> {
    let publisher = Publisher::start(settings, transactional_id).await?;
    let registry = read_registry(settings).await.map_err(RegistryError::from)?;
    set_champion(
        &publisher,
        &registry,
        version,
        &format!("promote command: {reason}"),
    )
    .await
}

/// Makes the champion's previous version the champion again and clears the challenger.
pub async fn rollback(
    settings: &KafkaSettings,
    transactional_id: &str,
    reason: &str,
) -> Result<AliasRecord, CommandError> {
    let publisher = Publisher::start(settings, transactional_id).await?;
    let registry = read_registry(settings).await.map_err(RegistryError::from)?;
    let champion = registry
        .alias(Alias::Champion)
        .ok_or(CommandError::NoChampion)?;
    let current = champion.version.ok_or(CommandError::NoChampion)?;
    let previous = champion
        .previous
        .ok_or(CommandError::NothingToRollBackTo(current))?;
    set_champion(
        &publisher,
        &registry,
        previous,
        &format!("rollback command: {reason}"),
    )
    .await
}

async fn set_champion(
    publisher: &Publisher,
    registry: &Registry,
    version: u32,
    reason: &str,
) -> Result<AliasRecord, CommandError> {
    if registry.bundle(version).is_none() {
        return Err(CommandError::NoSuchVersion(
            version,
            registry.versions().collect(),
        ));
    }
    let previous = registry.version_of(Alias::Champion);
    let champion = AliasRecord::new(Alias::Champion, Some(version), previous, reason);
    let cleared = AliasRecord::new(
        Alias::Challenger,
        None,
        registry.version_of(Alias::Challenger),
        reason,
    );
    publisher
        .publish(None, &[champion.clone(), cleared])
        .await?;
    Ok(champion)
}
