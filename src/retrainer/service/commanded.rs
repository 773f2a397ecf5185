//! An operator's command, applied by the running retrainer: planned against what it serves,
//! the new champion loaded before anything is written, then the records and the command's
//! answer published in one transaction, and served.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Service;
use crate::registry::commands::{plan, Refused, View};
use crate::registry::{Action, CommandRecord};
use crate::retrainer::{CommandEvent, Event, RetrainerError};
use crate::stream::messages::now_ms;

impl<F: Fn(&Event) + Send + Sync + 'static> Service<F> {
    /// Applies `command` (or refuses it) and publishes its answer. Only an error of the broker
    /// or a fencing is an error; a command that cannot be carried out is answered so.
    pub(super) async fn apply_command(
        &mut self,
        command: CommandRecord,
    ) -> Result<(), RetrainerError> {
        let champion = self.champion.manifest.version;
        let target = match command.action {
            Action::Promote { version } | Action::Pin { version } => Some(version),
            Action::Rollback { .. } => self.operator.previous,
            Action::Unpin => None,
        };
        // The content of the version asked for, as the local cache of the registry has it.
        let store = self.trainer.config.store.clone();
        let contents: BTreeMap<u32, String> = match target {
            Some(v) => {
                tokio::task::spawn_blocking(move || {
                    store
                        .versions()
                        .ok()
                        .filter(|vs| vs.contains(&v))
                        .and_then(|_| store.read_files(v).ok())
                        .map(|f| BTreeMap::from([(v, f.manifest.bundle_sha256())]))
                        .unwrap_or_default()
                })
                .await?
            }
            None => BTreeMap::new(),
        };
        let content = |v: u32| contents.get(&v).cloned();
        let view = View {
            champion: Some(champion),
            previous: self.operator.previous,
            challenger: self.gate_challenger(),
            pin: self.operator.pin.as_ref(),
            content: &content,
        };
        let mut result = plan(&view, &command, now_ms());
        // The new champion loads before anything is written.
        let mut bundle = None;
        if let Some(v) = result.as_ref().ok().and_then(|p| p.new_champion()) {
            let (store, scoring) = (
                self.trainer.config.store.clone(),
                self.trainer.config.scoring,
            );
            match tokio::task::spawn_blocking(move || store.load(v, scoring)).await? {
                Ok(b) => bundle = Some(Arc::new(b)),
                Err(e) => {
                    result = Err(Refused::DoesNotLoad {
                        version: v,
                        reason: crate::error_chain(&e),
                    })
                }
            }
        }
        let by = format!(
            "the retrainer ({})",
            self.trainer
                .config
                .instance_id
                .as_deref()
                .unwrap_or("dynamic member")
        );
        let answered = command.answered(&result, &by);
        let publisher = &self.trainer.publisher;
        match &result {
            Ok(p) => {
                publisher
                    .publish_all(None, &p.aliases, p.pin.as_ref(), Some(&answered))
                    .await?
            }
            Err(_) => {
                publisher
                    .publish_all(None, &[], None, Some(&answered))
                    .await?
            }
        }
        let answer = answered.answer.as_ref().map_or("", |a| a.message.as_str());
        let mut new_champion = None;
        match result {
            Ok(p) => {
                tracing::info!(
                    "retrainer: {} command of {} applied: {answer} ({})",
                    command.action.as_label(),
                    command.asked_by,
                    command.reason
                );
                if let Some(b) = bundle {
                    let v = b.manifest.version;
                    let store = self.trainer.config.store.clone();
                    tokio::task::spawn_blocking(move || store.promote(v)).await??;
                    self.serve(b);
                    // The challenger was cleared: its comparison was with the former champion.
                    self.drop_gate();
                    new_champion = Some(v);
                }
                if let Some(pin) = p.pin {
                    self.operator.pin = Some(pin);
                }
            }
            Err(_) => tracing::warn!(
                "retrainer: {} command of {} refused: {answer}",
                command.action.as_label(),
                command.asked_by
            ),
        }
        self.emit_pin();
        self.emit(Event::Command(CommandEvent {
            command: answered,
            champion: new_champion,
            pinned: self.operator.pinned(),
        }));
        Ok(())
    }
}
