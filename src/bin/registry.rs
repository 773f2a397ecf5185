//! The model registry on census.models: show it, promote a version, roll back to the previous
//! champion, pin a version or unpin, with a reason that is recorded. While a retrainer runs, it
//! applies the command itself and keeps running; with none running, the command writes the
//! registry itself. A command is checked before anything is written.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use census_stream::cli::KafkaArgs;
use census_stream::defaults;
use census_stream::registry::admin::{self, AppliedBy};
use census_stream::registry::{read_registry_with, Action, Alias, AliasRecord, Registry};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The retrainers' consumer group: while it has members, commands go to the retrainer.
    #[arg(long, global = true, default_value = defaults::RETRAINER_GROUP)]
    retrainer_group: String,
    /// No retrainer runs: apply the command from here (needed only on a broker that cannot
    /// list consumer groups, such as librdkafka's mock cluster).
    #[arg(long, global = true)]
    no_retrainer: bool,
    /// How long a command waits for the running retrainer's answer.
    #[arg(long, global = true, default_value_t = 30)]
    wait_secs: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The versions, the champion and the challenger, the pin and the last commands, with their
    /// reasons and evidence.
    Status {
        /// Everything as one JSON object, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Make VERSION the champion (and clear the challenger). Refused while a version is pinned.
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
        /// Pin the version rolled back to, so that the gate does not promote over it.
        #[arg(long)]
        pin: bool,
    },
    /// Make VERSION the champion if it is not, and pin it: the gate's promotions and rollbacks
    /// are held (retrains go on and are judged) until `unpin`.
    Pin {
        version: u32,
        #[arg(long)]
        reason: String,
    },
    /// Let the gate promote and roll back again.
    Unpin {
        #[arg(long)]
        reason: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    census_stream::util::logging::init();
    let flags = Flags::parse();
    let settings = flags.kafka.settings();
    let (action, reason) = match flags.command {
        Command::Status { json } => {
            let mut ignored: BTreeMap<&'static str, u64> = BTreeMap::new();
            let r = read_registry_with(&settings, |e| *ignored.entry(e.reason()).or_default() += 1)
                .await
                .context("reading the registry")?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&as_json(&r, &ignored))?),
                false => print!("{}", as_table(&settings.topics.models, &r, &ignored)),
            }
            return Ok(());
        }
        Command::Promote { version, reason } => (Action::Promote { version }, reason),
        Command::Rollback { reason, pin } => (Action::Rollback { pin }, reason),
        Command::Pin { version, reason } => (Action::Pin { version }, reason),
        Command::Unpin { reason } => (Action::Unpin, reason),
    };
    let label = action.as_label();
    let retrainer = match flags.no_retrainer {
        true => admin::Retrainer::NotRunning,
        false => admin::Retrainer::InGroup(flags.retrainer_group.clone()),
    };
    let (answered, by) = admin::command(
        &settings,
        &retrainer,
        action,
        &reason,
        Duration::from_secs(flags.wait_secs),
    )
    .await
    .with_context(|| format!("{label} failed"))?;
    let message = answered.answer.as_ref().map_or("", |a| a.message.as_str());
    match by {
        AppliedBy::Retrainer => println!("applied by the running retrainer: {message}"),
        AppliedBy::CommandLine => println!("applied (no retrainer running): {message}"),
    }
    Ok(())
}

/// A time as `2026-12-04 18:20:01 UTC`.
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn version(v: Option<u32>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| format!("v{v}"))
}

fn alias_lines(out: &mut String, alias: Alias, a: Option<&AliasRecord>) {
    use std::fmt::Write;
    let Some(a) = a else {
        let _ = writeln!(out, "{:<11} none", alias.as_str());
        return;
    };
    let _ = writeln!(
        out,
        "{:<11} {}{}  since {}  (before: {})",
        alias.as_str(),
        version(a.version),
        if a.probation { " (on probation)" } else { "" },
        when(a.set_at_ms),
        version(a.previous)
    );
    let _ = writeln!(out, "{:<11} reason: {}", "", a.reason);
    if let Some(e) = &a.evidence {
        let _ = writeln!(out, "{:<11} evidence: {e}, margin {}", "", e.delta);
    }
    if let Some(by) = &a.asked_by {
        let _ = writeln!(out, "{:<11} asked by: {by}", "");
    }
}

fn as_table(topic: &str, r: &Registry, ignored: &BTreeMap<&'static str, u64>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let versions: Vec<String> = r.versions().map(|v| format!("v{v}")).collect();
    let _ = writeln!(
        out,
        "{topic}: {} version{}: {}",
        versions.len(),
        if versions.len() == 1 { "" } else { "s" },
        versions.join(" ")
    );
    alias_lines(&mut out, Alias::Champion, r.alias(Alias::Champion));
    alias_lines(&mut out, Alias::Challenger, r.alias(Alias::Challenger));
    match r.pin() {
        Some(p) if p.version.is_some() => {
            let _ = writeln!(
                out,
                "{:<11} {}  since {}  by {}: {}",
                "pinned",
                version(p.version),
                when(p.set_at_ms),
                p.asked_by,
                p.reason
            );
        }
        _ => {
            let _ = writeln!(out, "{:<11} no (the gate decides)", "pinned");
        }
    }
    let commands = r.commands();
    if !commands.is_empty() {
        let _ = writeln!(out, "last commands:");
    }
    for c in commands.iter().rev().take(5).rev() {
        let answer = match &c.answer {
            Some(a) if a.applied => format!("applied by {}: {}", a.answered_by, a.message),
            Some(a) => format!("refused by {}: {}", a.answered_by, a.message),
            None => "not answered".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {}  {} by {} ({}): {answer}",
            when(c.asked_at_ms),
            c.action,
            c.asked_by,
            c.reason
        );
    }
    let total: u64 = ignored.values().sum();
    if total > 0 {
        let reasons: Vec<String> = ignored.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(
            out,
            "ignored {total} record{}: {}",
            if total == 1 { "" } else { "s" },
            reasons.join(", ")
        );
    }
    out
}

fn as_json(r: &Registry, ignored: &BTreeMap<&'static str, u64>) -> serde_json::Value {
    serde_json::json!({
        "versions": r.versions().collect::<Vec<_>>(),
        "champion": r.alias(Alias::Champion),
        "challenger": r.alias(Alias::Challenger),
        "pin": r.pin(),
        "commands": r.commands(),
        "ignored": ignored,
    })
}
