//! The model registry on census.models: show it, promote a version, or roll back to the
//! previous champion, with a reason that is recorded. Promote and rollback take over the
//! registry from a running retrainer, which stops (fenced) and starts again from what they left.

use anyhow::Context;
use clap::{Parser, Subcommand};

use census_stream::cli::KafkaArgs;
use census_stream::registry::{admin, publisher_id, read_registry, Alias};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The versions, the champion and the challenger, with their reasons and evidence.
    Status,
    /// Make VERSION the champion (and clear the challenger).
    Promote {
        version: u32,
        /// Why, recorded in the alias record.
        #[arg(long)]
        reason: String,
    },
    /// Make the champion's previous version the champion again (and clear the challenger).
    Rollback {
        /// Why, recorded in the alias record.
        #[arg(long)]
        reason: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::util::logging::init();
    let flags = Flags::parse();
    let settings = flags.kafka.settings();
    let id = publisher_id(&settings.topics.models);
    let record = match flags.command {
        Command::Status => {
            let r = read_registry(&settings)
                .await
                .context("reading the registry")?;
            println!("versions: {:?}", r.versions().collect::<Vec<_>>());
            for alias in [Alias::Champion, Alias::Challenger] {
                match r.alias(alias) {
                    Some(a) => println!("{}: {}", alias.as_str(), serde_json::to_string(a)?),
                    None => println!("{}: none", alias.as_str()),
                }
            }
            return Ok(());
        }
        Command::Promote { version, reason } => admin::promote(&settings, &id, version, &reason)
            .await
            .context("promote failed")?,
        Command::Rollback { reason } => admin::rollback(&settings, &id, &reason)
            .await
            .context("rollback failed")?,
    };
    println!("champion: {}", serde_json::to_string(&record)?);
    Ok(())
}
