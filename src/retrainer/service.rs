//! The retrainer as the worker loop runs it: keep rows (and feed the gate with them), start a
//! retrain when one is due and neither a retrain nor a gate is running, take in a finished
//! retrain, and publish the gate's decisions.

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::gating::GateRun;
use super::retrain::{retrain, Retrained, StreamRows, Trainer, Verdict};
use super::{Event, GateEvent, Promotion, Retrainer, RetrainerError, RetrainerStats, StepReport};
use crate::bundle::{Bundle, BundleFiles, Manifest};
use crate::features::DriftWindow;
use crate::gate::log_loss;
use crate::gate::Decision;
use crate::kafka::InMessage;
use crate::registry::{Alias, AliasRecord, Registry};
use crate::stream::decode::decode_request;
use crate::stream::worker::{Delivery, Worker};
use crate::train::TrainError;
use crate::triggers::{Fired, PageHinkley};

/// Labels between two progress reports of the gate.
const PROGRESS_EVERY: u64 = 200;

pub struct Service<F> {
    trainer: Arc<Trainer>,
    retrainer: Retrainer,
    /// The champion, parent of the next version.
    parent: Manifest,
    champion: Arc<Bundle>,
    gate: Option<GateRun>,
    training: Option<JoinHandle<Result<Retrained, RetrainerError>>>,
    /// A retrain that finished, not taken in yet.
    finished: Option<Result<Result<Retrained, RetrainerError>, tokio::task::JoinError>>,
    /// Cancels every retrain when the service stops.
    stop_training: CancellationToken,
    stats: RetrainerStats,
    on_event: F,
    /// When the last retrain started (or the service, for the time trigger).
    last_start: Instant,
    started_any: bool,
    /// Recent requests' histogram against the champion's training one.
    drift: Option<DriftWindow>,
    /// The champion's log loss on new labeled rows.
    loss: Option<PageHinkley>,
    /// A drift trigger that fired, waiting for its retrain to start.
    fired: Option<Fired>,
}

impl<F: Fn(&Event) + Send + Sync + 'static> Service<F> {
    /// The service over `champion`, with the gate the registry's challenger record describes
    /// rebuilt by replaying the rows file.
    pub async fn start(
        trainer: Arc<Trainer>,
        retrainer: Retrainer,
        champion: BundleFiles,
        registry: &Registry,
        stop_training: CancellationToken,
        on_event: F,
    ) -> Result<Self, RetrainerError> {
        let parent = champion.manifest.clone();
        let champion = Arc::new(tokio::task::spawn_blocking(move || champion.load()).await??);
        let mut gate = None;
        if let (Promotion::Gate(settings), Some(record)) =
            (trainer.config.promotion, registry.alias(Alias::Challenger))
        {
            let to_resume = record.version.filter(|&v| v != parent.version);
            let loaded = match to_resume {
                Some(v) => {
                    let store = trainer.config.store.clone();
                    match tokio::task::spawn_blocking(move || store.load(v)).await? {
                        Ok(c) => Some((v, c)),
                        Err(e) => {
                            // Its gate cannot go on; the next retrain brings a new challenger.
                            tracing::error!(
                                "retrainer: challenger v{v} cannot be loaded, its gate is \
                                 dropped: {}",
                                crate::error_chain(&e)
                            );
                            None
                        }
                    }
                }
                None => None,
            };
            if let Some((v, challenger)) = loaded {
                let mut run = GateRun::new(
                    Arc::new(challenger),
                    champion.clone(),
                    record.probation,
                    record.from_offsets.clone(),
                    settings,
                );
                let rows = retrainer.log().rows().to_vec();
                let run = tokio::task::spawn_blocking(move || {
                    run.feed(&rows);
                    run
                })
                .await?;
                tracing::info!(
                    "retrainer: gate of v{} against v{} resumed from the rows file: {} labels",
                    v,
                    parent.version,
                    run.gate.labels()
                );
                on_event(&Event::Gate(GateEvent {
                    challenger: v,
                    champion: parent.version,
                    probation: run.probation,
                    evidence: run.gate.evidence(),
                    decision: None,
                }));
                gate = Some(run);
            }
        }
        Ok(Service {
            trainer,
            retrainer,
            parent,
            champion,
            gate,
            training: None,
            finished: None,
            stop_training,
            stats: RetrainerStats::default(),
            on_event,
            last_start: Instant::now(),
            started_any: false,
            drift: None,
            loss: None,
            fired: None,
        }
        .with_fresh_monitors())
    }

    /// Drift monitors started anew against the champion.
    fn with_fresh_monitors(mut self) -> Self {
        self.reset_monitors();
        self
    }

    /// The feature-drift window starts anew against the (new) champion's histograms, and a
    /// feature-drift alarm raised against the former one is dropped. The loss-drift test goes on:
    /// it watches the level of the stream's losses, and restarting it on already-drifted rows
    /// would learn the drift as normal.
    fn reset_monitors(&mut self) {
        let t = &self.trainer.config.triggers;
        self.drift = t
            .psi
            .map(|_| DriftWindow::new(self.champion.processor.drift_reference()));
        if self.loss.is_none() {
            self.loss = t.loss_drift.map(PageHinkley::new);
        }
        if self
            .fired
            .as_ref()
            .is_some_and(|f| f.kind == "feature_drift")
        {
            self.fired = None;
        }
    }

    /// Feeds the drift monitors with a batch and the labeled rows it added (CPU work).
    fn monitor(&mut self, batch: &[InMessage], new_rows: &[crate::retrainer::StoredRow]) {
        let triggers = self.trainer.config.triggers;
        if let (Some(window), Some(threshold)) = (self.drift.as_mut(), triggers.psi) {
            let records: Vec<_> = batch
                .iter()
                .filter_map(|m| decode_request(m.payload.as_deref()).ok())
                .map(|r| r.record)
                .collect();
            window.add(&self.champion.processor.transform_batch(records.iter()));
            if window.rows() as usize >= triggers.psi_window {
                let reference = self.champion.processor.drift_reference();
                let psi = reference.psi(window);
                let names = crate::features::feature_names();
                (self.on_event)(&Event::FeatureDrift {
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
                    let fired = Fired {
                        kind: "feature_drift".into(),
                        figures: format!(
                            "PSI of {worst} {value:.3} > {threshold} over the last {} requests",
                            window.rows()
                        ),
                    };
                    tracing::info!("retrainer: drift: {}", fired.figures);
                    (self.on_event)(&Event::Drift(fired.clone()));
                    self.fired = Some(fired);
                }
                *window = DriftWindow::new(reference);
            }
        }
        if let Some(ph) = self.loss.as_mut() {
            let records = new_rows.iter().map(|r| &r.row).collect::<Vec<_>>();
            if let Ok(probs) = self.champion.predict(records.into_iter()) {
                for (r, p) in new_rows.iter().zip(probs) {
                    if ph.observe(log_loss(p, r.label)) && self.fired.is_none() {
                        let fired = Fired {
                            kind: "loss_drift".into(),
                            figures: format!(
                                "Page-Hinkley statistic {:.1} of the champion's log loss over {} \
                                 labeled rows",
                                ph.statistic(),
                                ph.observations()
                            ),
                        };
                        tracing::info!("retrainer: drift: {}", fired.figures);
                        (self.on_event)(&Event::Drift(fired.clone()));
                        self.fired = Some(fired);
                    }
                }
            }
        }
    }

    /// The next moment at which [`Self::due`] may change its answer without a new record: the
    /// end of the minimum gap after the last retrain, or of the time trigger's period.
    fn next_look(&self) -> Option<Instant> {
        let t = &self.trainer.config.triggers;
        let now = Instant::now();
        let gap_end = self.started_any.then(|| self.last_start + t.min_gap);
        let period_end = t.every.map(|every| self.last_start + every);
        gap_end
            .into_iter()
            .chain(period_end)
            .filter(|&at| at > now)
            .min()
    }

    /// The trigger that calls for a retrain now, if any: none while a retrain or a gate runs,
    /// or within the minimum gap of the last retrain.
    fn due(&self) -> Option<Fired> {
        let t = &self.trainer.config.triggers;
        if self.training.is_some() || self.gate.is_some() {
            return None;
        }
        let since = self.last_start.elapsed();
        if self.started_any && since < t.min_gap {
            return None;
        }
        let new_rows = self.retrainer.new_rows();
        // A drift alarm retrains only with new rows to learn from: a shift that no model can
        // undo would otherwise retrain again and again on the same rows.
        if let Some(f) = self
            .fired
            .as_ref()
            .filter(|_| new_rows >= t.min_rows.max(1))
        {
            return Some(f.clone());
        }
        if self.retrainer.retrain_due() {
            return Some(Fired {
                kind: "rows".into(),
                figures: format!("{new_rows} new labeled rows"),
            });
        }
        match t.every {
            Some(every) if since >= every && new_rows >= t.min_rows.max(1) => Some(Fired {
                kind: "time".into(),
                figures: format!(
                    "{:.0} s since the last retrain, {new_rows} new labeled rows",
                    since.as_secs_f64()
                ),
            }),
            _ => None,
        }
    }

    /// Takes in the result of a retrain that finished.
    async fn take_result(
        &mut self,
        result: Result<Retrained, RetrainerError>,
    ) -> Result<(), RetrainerError> {
        let done = match result {
            Ok(done) => done,
            Err(RetrainerError::Train(TrainError::Cancelled)) => return Ok(()),
            Err(e) => return Err(e),
        };
        (self.on_event)(&Event::Retrained(done.event.clone()));
        if !matches!(done.verdict, Verdict::TooLarge) {
            self.stats.versions.push(done.manifest.version);
        }
        match done.verdict {
            Verdict::Champion(bundle) => {
                self.champion = bundle;
                self.reset_monitors();
                self.parent = done.manifest;
            }
            Verdict::Challenger(bundle) => {
                let Promotion::Gate(settings) = self.trainer.config.promotion else {
                    unreachable!("a challenger only comes from the gate")
                };
                let mut run = GateRun::new(
                    bundle,
                    self.champion.clone(),
                    false,
                    done.from_offsets,
                    settings,
                );
                // Rows stored during the retrain, after its cut-off, count already (scored on a
                // blocking thread: they may be many).
                let rows = self.retrainer.log().rows().to_vec();
                let run = tokio::task::spawn_blocking(move || {
                    run.feed(&rows);
                    run
                })
                .await?;
                self.gate = Some(run);
            }
            Verdict::RejectedOffline | Verdict::TooLarge => {
                self.stats.decisions.push(done.event.outcome)
            }
        }
        Ok(())
    }

    fn start_retrain(&mut self, trigger: Fired) {
        self.fired = None;
        self.last_start = Instant::now();
        self.started_any = true;
        self.loss = self
            .trainer
            .config
            .triggers
            .loss_drift
            .map(PageHinkley::new);
        if let Some(w) = self.drift.as_mut() {
            *w = DriftWindow::new(self.champion.processor.drift_reference());
        }
        let log = self.retrainer.log();
        let stream = StreamRows {
            rows: log.rows().to_vec(),
            offsets: log.offsets(),
        };
        self.retrainer.trained_on_all();
        self.training = Some(tokio::spawn(retrain(
            self.trainer.clone(),
            stream,
            self.parent.clone(),
            self.champion.clone(),
            trigger,
            self.stop_training.child_token(),
        )));
    }

    /// Reports the gate's progress, and publishes its decision once it makes one.
    pub async fn apply_gate(&mut self) -> Result<(), RetrainerError> {
        let Some(run) = self.gate.as_mut() else {
            return Ok(());
        };
        let decision = run.decision();
        let (c, p) = (run.challenger_version(), run.champion_version());
        let event = |decision: Option<String>, run: &GateRun| GateEvent {
            challenger: c,
            champion: p,
            probation: run.probation,
            evidence: run.gate.evidence(),
            decision,
        };
        if decision == Decision::Continue {
            if run.gate.labels() >= run.reported + PROGRESS_EVERY {
                run.reported = run.gate.labels();
                (self.on_event)(&Event::Gate(event(None, run)));
            }
            return Ok(());
        }
        let run = self.gate.take().expect("a gate is running");
        let evidence = run.gate.evidence();
        let alias = |alias, version, previous, reason: &str| AliasRecord {
            evidence: Some(evidence.clone()),
            ..AliasRecord::new(alias, version, previous, reason)
        };
        let promote = decision == Decision::Promote;
        let (records, words, new_champion) = match (run.probation, promote) {
            (false, true) => {
                let words = format!("v{c} promoted over v{p} by the gate");
                let mut probation = alias(
                    Alias::Challenger,
                    Some(p),
                    Some(c),
                    &format!("probation after promoting v{c}"),
                );
                probation.probation = true;
                probation.from_offsets = self.retrainer.log().offsets();
                (
                    vec![alias(Alias::Champion, Some(c), Some(p), &words), probation],
                    words,
                    Some(run.challenger.clone()),
                )
            }
            (false, false) => {
                let words = match run.decision() {
                    Decision::Reject { undecided: true } => {
                        format!("v{c} rejected by the gate: not better than v{p} within the labels allowed")
                    }
                    _ => format!(
                        "v{c} rejected by the gate: it cannot be better than v{p} by the margin"
                    ),
                };
                (
                    vec![alias(Alias::Challenger, None, Some(c), &words)],
                    words,
                    None,
                )
            }
            (true, true) => {
                let words = format!("rolled back to v{c}: it proved better than v{p} on probation");
                (
                    vec![
                        alias(Alias::Champion, Some(c), Some(p), &words),
                        alias(Alias::Challenger, None, Some(c), &words),
                    ],
                    words,
                    Some(run.challenger.clone()),
                )
            }
            (true, false) => {
                let words = format!("v{p} passed probation against v{c}");
                (
                    vec![alias(Alias::Challenger, None, Some(c), &words)],
                    words,
                    None,
                )
            }
        };
        self.trainer.publisher.publish(None, &records).await?;
        tracing::info!("retrainer: {words}");
        if let Some(bundle) = new_champion {
            let v = bundle.manifest.version;
            let store = self.trainer.config.store.clone();
            tokio::task::spawn_blocking(move || store.promote(v)).await??;
            self.parent = bundle.manifest.clone();
            self.champion = bundle;
            self.reset_monitors();
            // The promoted challenger's former champion goes on probation.
            if let (false, Some(probation)) = (run.probation, records.get(1)) {
                let Promotion::Gate(settings) = self.trainer.config.promotion else {
                    unreachable!("decisions only come from the gate")
                };
                self.gate = Some(GateRun::new(
                    run.champion.clone(),
                    self.champion.clone(),
                    true,
                    probation.from_offsets.clone(),
                    settings,
                ));
            }
        }
        (self.on_event)(&Event::Gate(event(Some(words.clone()), &run)));
        self.stats.decisions.push(words);
        Ok(())
    }

    /// Stops: waits for a cancelled retrain to end, and says what was done.
    pub async fn stop(mut self) -> Result<RetrainerStats, RetrainerError> {
        if let Some(result) = self.finished.take() {
            self.take_result(result?).await?;
        }
        if let Some(task) = self.training.take() {
            tracing::info!("retrainer: stopping the retrain in progress");
            let result = task.await?;
            self.take_result(result).await?;
        }
        Ok(RetrainerStats {
            rows: self.retrainer.log().len(),
            ..self.stats
        })
    }
}

impl<F: Fn(&Event) + Send + Sync + 'static> Worker for Service<F> {
    type Output = StepReport;
    type Delivered = StepReport;
    type Error = RetrainerError;

    fn step(&mut self, batch: &[InMessage]) -> Result<StepReport, RetrainerError> {
        let before = self.retrainer.log().len();
        let report = self.retrainer.step(batch)?;
        let new_rows = self.retrainer.log().rows()[before..].to_vec();
        if let Some(run) = self.gate.as_mut() {
            run.feed(&new_rows);
        }
        self.monitor(batch, &new_rows);
        Ok(report)
    }

    /// Nothing to send: the rows are durable once the step returns.
    fn deliver(&mut self, report: StepReport) -> Delivery<StepReport, RetrainerError> {
        Box::pin(std::future::ready(Ok(report)))
    }

    async fn after_commit(&mut self, report: StepReport) -> Result<(), RetrainerError> {
        self.stats.skipped += report.skipped as u64;
        self.apply_gate().await?;
        if let Some(trigger) = self.due() {
            self.start_retrain(trigger);
        }
        Ok(())
    }

    /// Waits for the retrain in progress to finish (cancel-safe: awaiting a `&mut JoinHandle`
    /// loses nothing, and the result is kept with no await after it); without one, returns at
    /// once if a retrain is due (a restart over enough stored rows), else waits until the
    /// minimum gap or the time trigger's period ends, when a retrain held back may be due with
    /// no new record to say so.
    async fn background(&mut self) {
        let Some(task) = self.training.as_mut() else {
            if self.due().is_some() {
                // Due already (a restart over enough stored rows): no record needs to come.
                return;
            }
            return match self.next_look() {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            };
        };
        let result = task.await;
        self.training = None;
        self.finished = Some(result);
    }

    /// Takes in the finished retrain, if any, and starts the next one if one is due.
    async fn on_background(&mut self) -> Result<(), RetrainerError> {
        if let Some(result) = self.finished.take() {
            self.take_result(result?).await?;
        }
        self.apply_gate().await?;
        if let Some(trigger) = self.due() {
            self.start_retrain(trigger);
        }
        Ok(())
    }
}
