//! The retrainer's work on one batch, without a broker: keep the labeled, valid rows durably
//! (once each, however often a record is replayed) and say when a retrain is due.

use std::num::NonZeroUsize;

use super::rowlog::{RowLog, RowLogError, StoredRow};
use crate::data::parse_label;
use crate::kafka::InMessage;
use crate::stream::decode::decode_request;

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Labeled rows new to the log, now fsynced.
    pub appended: usize,
    /// Labeled rows already in the log (a replayed record).
    pub replayed: usize,
    /// Records without a label, or invalid (the predictor dead-letters those).
    pub skipped: usize,
    /// The log holds `retrain_every` rows more than the model in use was trained on.
    pub retrain_due: bool,
}

/// Keeps labeled rows and counts them towards the next retrain.
pub struct Retrainer {
    log: RowLog,
    /// Rows of the log the model in use was trained on.
    trained_rows: usize,
    retrain_every: NonZeroUsize,
}

impl Retrainer {
    /// `trained_rows`: how many of the log's rows the model in use was trained on (a log that
    /// was reset restarts the count from zero).
    pub fn new(log: RowLog, trained_rows: usize, retrain_every: NonZeroUsize) -> Self {
        Retrainer {
            trained_rows: trained_rows.min(log.len()),
            log,
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
                    label,
                    row: request.record,
                })
            })
            .collect();
        report.skipped = batch.len() - rows.len();
        let labeled = rows.len();
        report.appended = self.log.append(rows)?;
        report.replayed = labeled - report.appended;
        report.retrain_due = self.retrain_due();
        Ok(report)
    }

    pub fn retrain_due(&self) -> bool {
        self.log.len() >= self.trained_rows + self.retrain_every.get()
    }

    /// Records that a model was trained on every row of the log.
    pub fn trained_on_all(&mut self) {
        self.trained_rows = self.log.len();
    }

    pub fn trained_rows(&self) -> usize {
        self.trained_rows
    }

    pub fn log(&self) -> &RowLog {
        &self.log
    }
}
