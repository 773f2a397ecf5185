//! The retrainer's work on one batch, without a broker: keep the labeled, valid rows durably
//! (once each, however often a record is replayed) and say when a retrain is due.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use super::rowlog::{fingerprint, RowLog, RowLogError, StoredRow};
use crate::data::parse_label;
use crate::kafka::InMessage;
use crate::stream::decode::decode_request;

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Labeled rows new to the log, now fsynced.
    pub appended: usize,
    /// Labeled rows already in the log (a replayed record): counted, never silently lost.
    pub replayed: usize,
    /// Records without a label, or invalid (the predictor dead-letters those).
    pub skipped: usize,
    /// The log holds `retrain_every` rows more than the model in use was trained on.
    pub retrain_due: bool,
}

/// Keeps labeled rows and counts them towards the next retrain.
pub struct Retrainer {
    log: RowLog,
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
            trained_offsets: trained_offsets.clone(),
            new_rows,
            retrain_every,
        }
    }

    /// Appends the batch's labeled rows to the log (fsynced before it returns).
    pub fn step(&mut self, batch: &[InMessage]) -> Result<StepReport, RowLogError> {
        let mut report = StepReport::default();
        let rows: Vec<StoredRow> = batch
            .iter()
            .filter_map(|m| {
                let request = decode_request(m.payload.as_deref()).ok()?;
                let label = request.income_bracket.as_deref().and_then(parse_label)?;
                Some(StoredRow {
                    topic: m.topic.clone(),
                    partition: m.partition,
                    offset: m.offset,
                    generation: 0,
                    fingerprint: fingerprint(m.payload.as_deref().unwrap_or_default()),
                    label,
                    row: request.record,
                })
            })
            .collect();
        report.skipped = batch.len() - rows.len();
        let labeled = rows.len();
        let before = self.log.len();
        report.appended = self.log.append(rows)?;
        self.new_rows += self.log.rows()[before..]
            .iter()
            .filter(|r| r.at_or_after(&self.trained_offsets))
            .count();
        report.replayed = labeled - report.appended;
        report.retrain_due = self.retrain_due();
        Ok(report)
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
        self.log.len() - self.new_rows
    }

    pub fn log(&self) -> &RowLog {
        &self.log
    }
}
