//! The demo's own lines about the retrainer, printed between the predictions.

use crate::retrainer;

/// A retrainer event as the demo shows it (the drift measures of each window are not shown).
pub(super) fn event_line(e: &retrainer::Event) -> Option<String> {
    Some(match e {
        retrainer::Event::FeatureDrift { .. } => return None,
        retrainer::Event::Retrained(e) => format!(
            ">>> retrain ({}: {}): v{} trained on {} stream rows, CV log loss {:.4}, in {:.1} s: {}",
            e.trigger.kind,
            e.trigger.figures,
            e.version,
            e.rows,
            e.cv_log_loss,
            (e.finished_at_ms - e.started_at_ms) as f64 / 1000.0,
            e.outcome
        ),
        retrainer::Event::Drift(f) => format!(">>> drift ({}): {}", f.kind, f.figures),
        retrainer::Event::Gate(g) => format!(">>> {g}"),
        retrainer::Event::Command(c) => format!(
            ">>> {} command of {}: {}",
            c.command.action.as_label(),
            c.command.asked_by,
            c.command.answer.as_ref().map_or("", |a| a.message.as_str())
        ),
    })
}
