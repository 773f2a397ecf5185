//! Operators' commands as a plan: from what the registry says now and what an operator asks,
//! the records to write, or why the command is refused. Both the retrainer (which applies
//! commands while it runs, as the registry's one writer) and the command line (when no
//! retrainer runs) plan with [`plan`], so a command means the same whoever applies it, and
//! nothing is written before everything is checked.

use super::records::{Action, Alias, AliasRecord, Answer, CommandRecord, PinRecord};
use crate::stream::messages::now_ms;

/// What the registry says now, as the one applying a command sees it.
pub struct View<'a> {
    pub champion: Option<u32>,
    /// The champion's previous version.
    pub previous: Option<u32>,
    pub challenger: Option<u32>,
    pub pin: Option<&'a PinRecord>,
    /// The content ([`crate::bundle::Manifest::bundle_sha256`]) of a version, if the registry
    /// has it.
    pub content: &'a (dyn Fn(u32) -> Option<String> + Sync),
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("v{0} is not in the registry")]
    NoSuchVersion(u32),
    #[error("the registry names no champion yet")]
    NoChampion,
    #[error("the champion v{0} has no previous version to roll back to")]
    NothingToRollBackTo(u32),
    #[error(
        "v{version} is pinned (by {by}: {reason}); unpin it first, or pin the version you want"
    )]
    Pinned {
        version: u32,
        by: String,
        reason: String,
    },
    #[error("v{version} does not load here: {reason}")]
    DoesNotLoad { version: u32, reason: String },
    #[error("expired: nobody applied it before {0} ms since the epoch")]
    Expired(i64),
}

/// The records that carry a command out.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// A new champion record, and the challenger cleared, when the champion changes.
    pub aliases: Vec<AliasRecord>,
    pub pin: Option<PinRecord>,
    /// What was done, in words.
    pub message: String,
}

impl Plan {
    /// The new champion, if the plan changes it.
    pub fn new_champion(&self) -> Option<u32> {
        self.aliases
            .iter()
            .find(|a| a.alias == Alias::Champion)
            .and_then(|a| a.version)
    }
}

/// Plans `command` against `view`, at `now_ms`.
pub fn plan(view: &View, command: &CommandRecord, now_ms: i64) -> Result<Plan, Refused> {
    if now_ms > command.expires_at_ms {
        return Err(Refused::Expired(command.expires_at_ms));
    }
    let pinned = view.pin.and_then(|p| p.version.map(|v| (v, p)));
    let refuse_if_pinned = || match pinned {
        Some((version, p)) => Err(Refused::Pinned {
            version,
            by: p.asked_by.clone(),
            reason: p.reason.clone(),
        }),
        None => Ok(()),
    };
    let reason = &command.reason;
    let (target, words, pin) = match command.action {
        Action::Promote { version } => {
            refuse_if_pinned()?;
            (version, format!("promote command: {reason}"), None)
        }
        Action::Rollback { pin } => {
            if !pin {
                refuse_if_pinned()?;
            }
            let champion = view.champion.ok_or(Refused::NoChampion)?;
            let previous = view
                .previous
                .ok_or(Refused::NothingToRollBackTo(champion))?;
            (
                previous,
                format!("rollback command: {reason}"),
                pin.then_some(previous),
            )
        }
        Action::Pin { version } => (version, format!("pin command: {reason}"), Some(version)),
        Action::Unpin => {
            let message = match pinned {
                Some((v, _)) => format!("v{v} unpinned: the gate decides again"),
                None => "nothing was pinned".to_owned(),
            };
            return Ok(Plan {
                aliases: Vec::new(),
                pin: Some(pin_record(None, command)),
                message,
            });
        }
    };
    let content = (view.content)(target).ok_or(Refused::NoSuchVersion(target))?;
    let mut aliases = Vec::new();
    let mut message = match pin {
        Some(v) => format!("v{v} pinned"),
        None => String::new(),
    };
    if view.champion == Some(target) {
        if pin.is_none() {
            message = format!("v{target} is the champion already; nothing changed");
        }
    } else {
        let mut champion = AliasRecord::new(Alias::Champion, Some(target), view.champion, &words);
        champion.bundle_sha256 = Some(content);
        champion.asked_by = Some(command.asked_by.clone());
        let mut cleared = AliasRecord::new(Alias::Challenger, None, view.challenger, &words);
        cleared.asked_by = Some(command.asked_by.clone());
        aliases = vec![champion, cleared];
        let changed = format!(
            "v{target} is the champion (was {})",
            view.champion
                .map_or_else(|| "none".to_owned(), |v| format!("v{v}"))
        );
        message = if message.is_empty() {
            changed
        } else {
            format!("{changed}; {message}")
        };
    }
    Ok(Plan {
        aliases,
        pin: pin.map(|v| pin_record(Some(v), command)),
        message,
    })
}

fn pin_record(version: Option<u32>, command: &CommandRecord) -> PinRecord {
    PinRecord {
        version,
        reason: command.reason.clone(),
        asked_by: command.asked_by.clone(),
        set_at_ms: now_ms(),
    }
}

impl CommandRecord {
    /// A new command of `action`, asked now by `asked_by`, that expires after `wait_ms`.
    pub fn ask(action: Action, reason: &str, asked_by: &str, wait_ms: i64) -> Self {
        let now = now_ms();
        CommandRecord {
            id: format!("{now}-{:08x}", rand::random::<u32>()),
            action,
            reason: reason.to_owned(),
            asked_by: asked_by.to_owned(),
            asked_at_ms: now,
            expires_at_ms: now + wait_ms,
            answer: None,
        }
    }

    /// This command with its answer.
    pub fn answered(&self, result: &Result<Plan, Refused>, answered_by: &str) -> Self {
        let (applied, message) = match result {
            Ok(plan) => (true, plan.message.clone()),
            Err(refused) => (false, refused.to_string()),
        };
        CommandRecord {
            answer: Some(Answer {
                applied,
                message,
                answered_by: answered_by.to_owned(),
                at_ms: now_ms(),
            }),
            ..self.clone()
        }
    }
}

/// `user@host` of this process, for the records of who asked.
pub fn asked_by() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(crate::util::host::user_name);
    format!("{user}@{}", crate::util::host::hostname())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(
        champion: u32,
        previous: Option<u32>,
        pin: Option<&'a PinRecord>,
        content: &'a (dyn Fn(u32) -> Option<String> + Sync),
    ) -> View<'a> {
        View {
            champion: Some(champion),
            previous,
            challenger: Some(champion + 1),
            pin,
            content,
        }
    }

    fn ask(action: Action) -> CommandRecord {
        CommandRecord::ask(action, "because", "ops@host", 30_000)
    }

    #[test]
    fn commands_plan_their_records_or_say_why_not() {
        let content = |v: u32| (v <= 3).then(|| format!("sha-{v}"));
        let v = view(3, Some(2), None, &content);
        let now = now_ms();

        let p = plan(&v, &ask(Action::Promote { version: 1 }), now).unwrap();
        assert_eq!(p.new_champion(), Some(1));
        assert_eq!(p.aliases[0].previous, Some(3));
        assert_eq!(p.aliases[0].bundle_sha256.as_deref(), Some("sha-1"));
        assert_eq!(p.aliases[0].asked_by.as_deref(), Some("ops@host"));
        assert_eq!(p.aliases[0].reason, "promote command: because");
        assert_eq!(
            (p.aliases[1].version, p.aliases[1].previous),
            (None, Some(4))
        );
        assert_eq!(p.pin, None);

        let p = plan(&v, &ask(Action::Rollback { pin: false }), now).unwrap();
        assert_eq!(p.new_champion(), Some(2));
        let p = plan(&v, &ask(Action::Rollback { pin: true }), now).unwrap();
        assert_eq!(p.pin.as_ref().and_then(|p| p.version), Some(2));

        assert_eq!(
            plan(&v, &ask(Action::Promote { version: 9 }), now),
            Err(Refused::NoSuchVersion(9))
        );
        let first = view(1, None, None, &content);
        assert_eq!(
            plan(&first, &ask(Action::Rollback { pin: false }), now),
            Err(Refused::NothingToRollBackTo(1))
        );
        let late = ask(Action::Unpin);
        assert!(matches!(
            plan(&v, &late, late.expires_at_ms + 1),
            Err(Refused::Expired(_))
        ));

        // Pinning the champion changes no alias; pinning another makes it the champion.
        let p = plan(&v, &ask(Action::Pin { version: 3 }), now).unwrap();
        assert!(p.aliases.is_empty());
        assert_eq!(p.pin.unwrap().version, Some(3));
        let p = plan(&v, &ask(Action::Pin { version: 1 }), now).unwrap();
        assert_eq!(p.new_champion(), Some(1));
    }

    #[test]
    fn while_pinned_only_a_pin_a_pinning_rollback_or_an_unpin_is_applied() {
        let content = |v: u32| (v <= 3).then(|| format!("sha-{v}"));
        let pin = PinRecord {
            version: Some(3),
            reason: "audit".into(),
            asked_by: "ops@host".into(),
            set_at_ms: 0,
        };
        let v = view(3, Some(2), Some(&pin), &content);
        let now = now_ms();
        for refused in [
            Action::Promote { version: 2 },
            Action::Rollback { pin: false },
        ] {
            assert!(matches!(
                plan(&v, &ask(refused), now),
                Err(Refused::Pinned { version: 3, .. })
            ));
        }
        assert!(plan(&v, &ask(Action::Rollback { pin: true }), now).is_ok());
        assert!(plan(&v, &ask(Action::Pin { version: 1 }), now).is_ok());
        let p = plan(&v, &ask(Action::Unpin), now).unwrap();
        assert_eq!(p.pin.unwrap().version, None);
        assert!(p.aliases.is_empty());
    }
}
