//! Operators' hand on a running retrainer: their commands come in on a channel (from
//! [`crate::registry::watch_commands`]) and the retrainer, the registry's one writer, applies
//! them between batches; the pin they set holds the gate's promotions and rollbacks.

use tokio::sync::mpsc;

use crate::registry::{CommandRecord, PinRecord, Registry};

/// Commands waiting, and what the operator set.
pub struct Operator {
    /// The pin as the registry says (version `None`: unpinned).
    pub pin: Option<PinRecord>,
    /// The champion's previous version (what a rollback goes back to).
    pub previous: Option<u32>,
    commands: mpsc::Receiver<CommandRecord>,
    /// A command received, not applied yet.
    received: Option<CommandRecord>,
}

impl Operator {
    pub fn new(registry: &Registry, commands: mpsc::Receiver<CommandRecord>) -> Self {
        Operator {
            pin: registry.pin().cloned(),
            previous: registry
                .alias(crate::registry::Alias::Champion)
                .and_then(|a| a.previous),
            commands,
            received: None,
        }
    }

    /// The version an operator pinned, if any.
    pub fn pinned(&self) -> Option<u32> {
        self.pin.as_ref().and_then(|p| p.version)
    }

    /// Waits for the next command (cancel-safe: a command received is kept until taken).
    pub async fn wait(&mut self) {
        if self.received.is_some() {
            return;
        }
        match self.commands.recv().await {
            Some(c) => self.received = Some(c),
            // Nobody listens for commands any more (the watcher stopped): wait for nothing.
            None => std::future::pending().await,
        }
    }

    pub fn take(&mut self) -> Option<CommandRecord> {
        self.received.take()
    }
}
