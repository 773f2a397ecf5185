//! The drift triggers' monitors against the champion: the feature-drift window (PSI of recent
//! requests against the champion's training histograms) and the loss-drift test (Page-Hinkley
//! on the champion's log loss on new labeled rows). Each batch feeds them; an alarm is kept as
//! the trigger that waits for its retrain.

use super::rowlog::StoredRow;
use super::Event;
use crate::bundle::Bundle;
use crate::features::DriftWindow;
use crate::kafka::InMessage;
use crate::lifecycle::gate::log_loss;
use crate::lifecycle::triggers::{PageHinkley, Triggers};
use crate::lifecycle::{Fired, TriggerKind};
use crate::stream::decode::decode_request;

pub struct Monitors {
    triggers: Triggers,
    /// Recent requests' histogram against the champion's training one.
    drift: Option<DriftWindow>,
    /// The champion's log loss on new labeled rows.
    loss: Option<PageHinkley>,
    /// A drift trigger that fired, waiting for its retrain to start.
    fired: Option<Fired>,
}

impl Monitors {
    pub fn new(triggers: Triggers, champion: &Bundle) -> Self {
        let mut m = Monitors {
            triggers,
            drift: None,
            loss: None,
            fired: None,
        };
        m.new_champion(champion);
        m
    }

    /// The drift alarm waiting for its retrain, if any.
    pub fn fired(&self) -> Option<&Fired> {
        self.fired.as_ref()
    }

    /// A new champion serves: the feature-drift window starts anew against its histograms, and
    /// a feature-drift alarm raised against the former one is dropped. The loss-drift test goes
    /// on: it watches the level of the stream's losses, and restarting it on already-drifted
    /// rows would learn the drift as normal.
    pub fn new_champion(&mut self, champion: &Bundle) {
        self.drift = self
            .triggers
            .psi
            .map(|_| DriftWindow::new(champion.processor.drift_reference()));
        if self.loss.is_none() {
            self.loss = self.triggers.loss_drift.map(PageHinkley::new);
        }
        if self
            .fired
            .as_ref()
            .is_some_and(|f| f.kind == TriggerKind::FeatureDrift)
        {
            self.fired = None;
        }
    }

    /// A retrain started: the alarm is answered, and both monitors start anew.
    pub fn retrain_started(&mut self, champion: &Bundle) {
        self.fired = None;
        self.loss = self.triggers.loss_drift.map(PageHinkley::new);
        if let Some(w) = self.drift.as_mut() {
            *w = DriftWindow::new(champion.processor.drift_reference());
        }
    }

    /// Feeds a batch of requests and the labeled rows it added (CPU work); returns what there
    /// is to tell: each window's PSI, and a drift alarm.
    pub fn observe(
        &mut self,
        champion: &Bundle,
        batch: &[InMessage],
        new_rows: &[StoredRow],
    ) -> Vec<Event> {
        let mut events = Vec::new();
        self.observe_features(champion, batch, &mut events);
        self.observe_losses(champion, new_rows, &mut events);
        events
    }

    fn observe_features(&mut self, champion: &Bundle, batch: &[InMessage], out: &mut Vec<Event>) {
        let (Some(window), Some(threshold)) = (self.drift.as_mut(), self.triggers.psi) else {
            return;
        };
        let records: Vec<_> = batch
            .iter()
            .filter_map(|m| decode_request(m.payload.as_deref()).ok())
            .map(|r| r.record)
            .collect();
        window.add(&champion.processor.transform_batch(records.iter()));
        if (window.rows() as usize) < self.triggers.psi_window {
            return;
        }
        let reference = champion.processor.drift_reference();
        let psi = reference.psi(window);
        let names = crate::features::feature_names();
        out.push(Event::FeatureDrift {
            psi: names.iter().cloned().zip(psi.iter().copied()).collect(),
            rows: window.rows(),
        });
        let (worst, value) = psi
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(j, &v)| (names[j].clone(), v))
            .unwrap_or_default();
        if value > threshold && self.fired.is_none() {
            let fired = Fired::new(
                TriggerKind::FeatureDrift,
                format!(
                    "PSI of {worst} {value:.3} > {threshold} over the last {} requests",
                    window.rows()
                ),
            );
            tracing::info!("retrainer: drift: {}", fired.figures);
            out.push(Event::Drift(fired.clone()));
            self.fired = Some(fired);
        }
        *window = DriftWindow::new(reference);
    }

    fn observe_losses(&mut self, champion: &Bundle, new_rows: &[StoredRow], out: &mut Vec<Event>) {
        let Some(ph) = self.loss.as_mut() else {
            return;
        };
        let records = new_rows.iter().map(|r| &r.row).collect::<Vec<_>>();
        let Ok(probs) = champion.predict(records.into_iter()) else {
            return;
        };
        for (r, p) in new_rows.iter().zip(probs) {
            if ph.observe(log_loss(p, r.label)) && self.fired.is_none() {
                let fired = Fired::new(
                    TriggerKind::LossDrift,
                    format!(
                        "Page-Hinkley statistic {:.1} of the champion's log loss over {} labeled \
                         rows",
                        ph.statistic(),
                        ph.observations()
                    ),
                );
                tracing::info!("retrainer: drift: {}", fired.figures);
                out.push(Event::Drift(fired.clone()));
                self.fired = Some(fired);
            }
        }
    }
}
