//! The retrainer's work on one batch, without a broker: join requests to their labels
//! ([`LabelJoin`]), keep the labeled rows durably (once each, however often a record is
//! replayed), and say when a retrain is due.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use super::labels::LabelJoin;
use super::rowlog::{Compacted, Retention, RowLog};
use super::RetrainerError;
use crate::kafka::InMessage;
use crate::stream::dead_letter::DeadLetterRecord;

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Labeled rows new to the log, now fsynced.
    pub appended: usize,
    /// Records read again (a restart before their batch was committed), and labeled rows
    /// already in the log: counted, never silently lost.
    pub replayed: usize,
    /// Requests that cannot be scored (the predictor dead-letters those) or reuse another
    /// request's id.
    pub skipped: usize,
    /// The log holds `retrain_every` rows more than the model in use was trained on.
    pub retrain_due: bool,
    /// Labels that cannot be used, to be dead-lettered before the batch is committed.
    pub dead_letters: Vec<DeadLetterRecord>,
    /// Held labels among them: their removal is journalled once their dead letters are sent.
    pub dropped: Vec<String>,
}

/// Keeps labeled rows and counts them towards the next retrain.
pub struct Retrainer {
    log: RowLog,
    labels: LabelJoin,
    /// Per `topic/partition`, the offset from which rows are new to the last model trained.
    trained_offsets: BTreeMap<String, i64>,
    /// Rows of the log at or above `trained_offsets`.
    new_rows: usize,
    retrain_every: NonZeroUsize,
}

impl Retrainer {
    /// `trained_offsets`: per `topic/partition`, the next offset after the last stream row the
    /// champion was trained on (its manifest's `stream_offsets`). Rows of the log below them
    /// count as trained on, so a new log that re-reads the topic does not retrain on the same
    /// rows again.
    pub fn new(
        log: RowLog,
        labels: LabelJoin,
        trained_offsets: &BTreeMap<String, i64>,
        retrain_every: NonZeroUsize,
    ) -> Self {
        let new_rows = log
            .rows()
            .iter()
            .filter(|r| r.at_or_after(trained_offsets))
            .count();
        Retrainer {
            log,
            labels,
            trained_offsets: trained_offsets.clone(),
            new_rows,
            retrain_every,
        }
    }

    /// Joins the batch's requests and labels (read at `now_ms`), appends the rows completed to
    /// the log, then journals the join (both fsynced before it returns).
    pub fn step(&mut self, batch: &[InMessage], now_ms: i64) -> Result<StepReport, RetrainerError> {
        let mut joining = self.labels.join(batch, now_ms);
        for row in &mut joining.rows {
            row.stored_at_ms = now_ms;
        }
        let completed = joining.rows.len();
        let before = self.log.len();
        let appended = self.log.append(joining.rows)?;
        self.labels.persist()?;
        self.new_rows += self.log.rows()[before..]
            .iter()
            .filter(|r| r.at_or_after(&self.trained_offsets))
            .count();
        Ok(StepReport {
            appended,
            replayed: completed - appended + joining.replayed,
            skipped: joining.skipped,
            retrain_due: self.retrain_due(),
            dead_letters: joining.dead_letters,
            dropped: joining.dropped,
        })
    }
    /// Compacts the log to `retention` (see [`RowLog::compact`]). The new rows dropped still
    /// count toward the next retrain: they came, and a window smaller than `retrain_every` must
    /// not stop retrains.
    pub fn compact(
        &mut self,
        retention: &Retention,
        now_ms: i64,
    ) -> Result<Compacted, RetrainerError> {
        Ok(self.log.compact(retention, now_ms)?)
    }

    pub fn retrain_due(&self) -> bool {
        self.new_rows >= self.retrain_every.get()
    }

    /// Records that a model is being trained on every row of the log.
    pub fn trained_on_all(&mut self) {
        self.trained_offsets = self.log.offsets();
        self.new_rows = 0;
    }

    /// Labeled rows stored since the last model was trained.
    pub fn new_rows(&self) -> usize {
        self.new_rows
    }

    /// Rows of the log the last model was trained on.
    pub fn trained_rows(&self) -> usize {
        self.log.len().saturating_sub(self.new_rows)
    }

    pub fn log(&self) -> &RowLog {
        &self.log
    }

    pub fn labels(&self) -> &LabelJoin {
        &self.labels
    }

    pub fn labels_mut(&mut self) -> &mut LabelJoin {
        &mut self.labels
    }
}
