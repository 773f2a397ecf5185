//! An operator's hand on the registry: promote a version, roll back to the previous champion,
//! pin a version or unpin, with a reason that is recorded. A command is checked against the
//! registry before anything is written (a refused command writes nothing and fences nobody).
//! While a retrainer runs (its group has members), the command goes to it as a record of the
//! topic and the retrainer — the registry's one writer — applies it and answers, and keeps
//! running; with none running, the command line publishes the records itself, as the writer.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::TopicPartitionList;

use super::commands::{asked_by, plan, Refused, View};
use super::records::{parse, Action, Alias, CommandRecord, Record};
use super::{publisher_id, read_registry, Publisher, Registry, RegistryError};
use crate::kafka::{BrokerError, KafkaSettings};
use crate::stream::messages::now_ms;

/// Why a command was not applied.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("refused, nothing written: {0}")]
    Refused(#[from] Refused),
    #[error("the retrainer refused it: {0}")]
    RefusedByRetrainer(String),
    #[error(
        "no answer from a retrainer within {} s; the command (`{id}`) expires unanswered and \
         changes nothing (if no retrainer runs, pass --no-retrainer)",
        waited.as_secs()
    )]
    NotAnswered { id: String, waited: Duration },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl From<BrokerError> for CommandError {
    fn from(e: BrokerError) -> Self {
        CommandError::Registry(RegistryError::Broker(e))
    }
}

/// Who applied a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliedBy {
    /// The running retrainer.
    Retrainer,
    /// The command line, no retrainer running.
    CommandLine,
}

/// Where the retrainer may be.
#[derive(Debug, Clone)]
pub enum Retrainer {
    /// Running while this consumer group has members. A broker that cannot list groups
    /// (librdkafka's mock cluster) leaves it unknown: the command is then sent to it.
    InGroup(String),
    /// Not running: the operator says so.
    NotRunning,
}

/// Asks for `action`, for `reason`: checked, then applied by the running retrainer, waiting up
/// to `wait` for its answer, or by this process when none runs. Returns the answered command.
pub async fn command(
    settings: &KafkaSettings,
    retrainer: &Retrainer,
    action: Action,
    reason: &str,
    wait: Duration,
) -> Result<(CommandRecord, AppliedBy), CommandError> {
    let registry = read_registry(settings).await?;
    let command = CommandRecord::ask(
        action,
        reason,
        &asked_by(),
        i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
    );
    let content = |v: u32| registry.content(v).map(str::to_owned);
    let planned = plan(&view(&registry, &content), &command, now_ms())?;
    let running = match retrainer {
        Retrainer::NotRunning => false,
        Retrainer::InGroup(group) => match settings.group_members(group).await {
            Ok(members) => members > 0,
            Err(e) => {
                tracing::warn!(
                    "cannot tell whether a retrainer runs ({}): asking it; pass --no-retrainer \
                     if none runs",
                    crate::error_chain(&e)
                );
                true
            }
        },
    };
    if running {
        let answered = through_the_retrainer(settings, &command, wait).await?;
        return match answered.answer.as_ref() {
            Some(a) if a.applied => Ok((answered, AppliedBy::Retrainer)),
            Some(a) => Err(CommandError::RefusedByRetrainer(a.message.clone())),
            None => unreachable!("an answered command has its answer"),
        };
    }
    // No retrainer runs: this process is the writer (a retrainer that starts later fences it).
    let publisher = Publisher::start(settings, &publisher_id(&settings.topics.models)).await?;
    let answered = command.answered(&Ok(planned.clone()), "registry command line");
    publisher
        .publish_all(
            None,
            &planned.aliases,
            planned.pin.as_ref(),
            Some(&answered),
        )
        .await?;
    Ok((answered, AppliedBy::CommandLine))
}

/// The registry as a command sees it.
fn view<'a>(
    registry: &'a Registry,
    content: &'a (dyn Fn(u32) -> Option<String> + Sync),
) -> View<'a> {
    View {
        champion: registry.version_of(Alias::Champion),
        previous: registry.alias(Alias::Champion).and_then(|a| a.previous),
        challenger: registry.version_of(Alias::Challenger),
        pin: registry.pin(),
        content,
    }
}

/// Writes `command` for the retrainer and waits for its answer.
async fn through_the_retrainer(
    settings: &KafkaSettings,
    command: &CommandRecord,
    wait: Duration,
) -> Result<CommandRecord, CommandError> {
    let topic = &settings.topics.models;
    let payload = serde_json::to_vec(command).expect("command record serializes");
    let key = command.key();
    let producer = settings.producer()?;
    let delivered = producer
        .send(
            FutureRecord::to(topic).key(&key).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| BrokerError::Client(e))?;
    let (partition, offset) = (delivered.partition, delivered.offset);
    tracing::info!("asked the running retrainer: {key} on {topic}");
    let consumer: StreamConsumer = settings.reader()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))
        .map_err(BrokerError::Client)?;
    consumer.assign(&tpl).map_err(BrokerError::Client)?;
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = match tokio::time::timeout(left, consumer.recv()).await {
            Err(_) => {
                return Err(CommandError::NotAnswered {
                    id: command.id.clone(),
                    waited: wait,
                })
            }
            Ok(Err(e)) => {
                tracing::warn!("reading {topic} for the answer: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Ok(m)) => m,
        };
        if m.key() != Some(key.as_bytes()) {
            continue;
        }
        if let Ok(Record::Command(c)) = parse(m.key(), m.payload()) {
            if c.answer.is_some() {
                return Ok(c);
            }
        }
    }
}
