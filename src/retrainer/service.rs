//! The retrainer as the worker loop runs it: keep rows (and feed the gate and the drift
//! monitors with them), start a retrain when the schedule says one is due, take in a finished
//! retrain, and carry out the gate's decisions.

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use tokio::sync::{mpsc, watch};

mod commanded;

use super::gating::GateRun;
use super::monitors::Monitors;
use super::operator::Operator;
use super::retrain::{retrain, Retrained, StreamRows, Trainer};
use super::verdict::{verdict, Verdict};
use super::{Event, GateEvent, Promotion, Retrainer, RetrainerError, RetrainerStats, StepReport};
use crate::bundle::{Bundle, BundleFiles};
use crate::kafka::{Ends, InMessage};
use crate::lifecycle::gate::{Decision, GateSettings};
use crate::lifecycle::triggers::{Now, Schedule};
use crate::lifecycle::{Decided, Fired, RetrainOutcome};
use crate::registry::{Alias, CommandRecord, Registry, RegistryError};
use crate::stream::worker::{Delivery, Worker};
use crate::train::TrainError;

/// Labels between two progress reports of the gate.
const PROGRESS_EVERY: u64 = 200;

type Finished = Result<Result<Retrained, RetrainerError>, tokio::task::JoinError>;

/// The retrain running in a task of its own, if any.
struct Training {
    task: Option<JoinHandle<Result<Retrained, RetrainerError>>>,
    /// A retrain that finished, not taken in yet.
    finished: Option<Finished>,
    /// Cancels every retrain when the service stops.
    stop: CancellationToken,
}

/// What a service is told besides its batches.
pub struct Feeds {
    /// Operators' commands.
    pub commands: mpsc::Receiver<CommandRecord>,
    /// The consumer's looks at its partitions' ends (see [`crate::kafka::Subscription`]).
    pub looks: watch::Receiver<Option<Ends>>,
}

pub struct Service<F> {
    trainer: Arc<Trainer>,
    retrainer: Retrainer,
    /// The champion, parent of the next version.
    champion: Arc<Bundle>,
    gate: Option<GateRun>,
    training: Training,
    schedule: Schedule,
    monitors: Monitors,
    stats: RetrainerStats,
    operator: Operator,
    /// The consumer's looks at its partitions' ends, for the label join's clock.
    looks: watch::Receiver<Option<Ends>>,
    on_event: F,
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
        feeds: Feeds,
        on_event: F,
    ) -> Result<Self, RetrainerError> {
        let Feeds { commands, looks } = feeds;
        let scoring = trainer.config.scoring;
        let champion =
            Arc::new(tokio::task::spawn_blocking(move || champion.load(scoring)).await??);
        let triggers = trainer.config.triggers;
        let mut service = Service {
            monitors: Monitors::new(triggers, &champion),
            schedule: Schedule::new(triggers, Instant::now()),
            trainer,
            retrainer,
            champion,
            gate: None,
            training: Training {
                task: None,
                finished: None,
                stop: stop_training,
            },
            stats: RetrainerStats::default(),
            operator: Operator::new(registry, commands),
            looks,
            on_event,
        };
        if let Some(pin) = service
            .operator
            .pin
            .as_ref()
            .filter(|p| p.version.is_some())
        {
            tracing::info!(
                "retrainer: v{} is pinned (by {}: {}): the gate's promotions and rollbacks are \
                 held",
                pin.version.unwrap_or_default(),
                pin.asked_by,
                pin.reason
            );
        }
        service.emit_pin();
        service.resume_gate(registry).await?;
        Ok(service)
    }

    fn gate_settings(&self) -> Option<GateSettings> {
        match self.trainer.config.promotion {
            Promotion::Gate(settings) => Some(settings),
            Promotion::Always => None,
        }
    }

    /// Resumes the gate of the registry's challenger, if one runs, by replaying the rows file.
    async fn resume_gate(&mut self, registry: &Registry) -> Result<(), RetrainerError> {
        let (Some(settings), Some(record)) =
            (self.gate_settings(), registry.alias(Alias::Challenger))
        else {
            return Ok(());
        };
        let champion = self.champion.manifest.version;
        let Some(v) = record.version.filter(|&v| v != champion) else {
            return Ok(());
        };
        let (store, scoring) = (
            self.trainer.config.store.clone(),
            self.trainer.config.scoring,
        );
        let challenger = match tokio::task::spawn_blocking(move || store.load(v, scoring)).await? {
            Ok(c) => c,
            Err(e) => {
                // Its gate cannot go on; the next retrain brings a new challenger.
                tracing::error!(
                    "retrainer: challenger v{v} cannot be loaded, its gate is dropped: {}",
                    crate::error_chain(&e)
                );
                return Ok(());
            }
        };
        let run = GateRun::new(
            Arc::new(challenger),
            self.champion.clone(),
            record.probation,
            record.from_offsets.clone(),
            settings,
        );
        let run = self.fed_with_stored_rows(run).await?;
        tracing::info!(
            "retrainer: gate of v{v} against v{champion} resumed from the rows file: {} labels",
            run.gate.labels()
        );
        (self.on_event)(&Event::Gate(progress(&run)));
        self.gate = Some(run);
        Ok(())
    }

    /// `run`, told which rows its models were trained on, fed with every row stored so far
    /// that counts for it (on a blocking thread: they may be many).
    async fn fed_with_stored_rows(&self, mut run: GateRun) -> Result<GateRun, RetrainerError> {
        let rows = self.retrainer.log().rows().to_vec();
        let base = self.trainer.base_keys.clone();
        Ok(tokio::task::spawn_blocking(move || {
            run.leave_out_trained(&base, &rows);
            run.feed(&rows);
            run
        })
        .await?)
    }

    fn emit(&self, event: Event) {
        (self.on_event)(&event);
    }

    /// The version the running gate shadows, if any.
    fn gate_challenger(&self) -> Option<u32> {
        self.gate.as_ref().map(|g| g.challenger_version())
    }

    /// Ends the running gate, if any, without a decision (its challenger was cleared).
    fn drop_gate(&mut self) {
        if let Some(run) = self.gate.take() {
            tracing::info!(
                "retrainer: the gate of v{} against v{} ends undecided: an operator changed the \
                 champion",
                run.challenger_version(),
                run.champion_version()
            );
        }
    }

    /// Retires the versions no longer needed: all but the champion, the gate's two, the
    /// previous champion, a pinned one and the newest `keep_versions`. A tombstone on each
    /// one's bundle key first, then its local files. A failure costs nothing but a warning
    /// (the next decision tries again), unless this retrainer was fenced.
    async fn retire_old_versions(&mut self) -> Result<(), RetrainerError> {
        let config = &self.trainer.config;
        let store = config.store.clone();
        let local = match tokio::task::spawn_blocking(move || store.versions()).await? {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("retrainer: versions not listed: {}", crate::error_chain(&e));
                return Ok(());
            }
        };
        let mut keep: std::collections::BTreeSet<u32> = local
            .iter()
            .rev()
            .take(config.keep_versions.get())
            .copied()
            .collect();
        keep.insert(self.champion.manifest.version);
        keep.extend(self.operator.previous);
        keep.extend(self.operator.pinned());
        if let Some(run) = &self.gate {
            keep.extend([run.challenger_version(), run.champion_version()]);
        }
        let retire: Vec<u32> = local.into_iter().filter(|v| !keep.contains(v)).collect();
        if retire.is_empty() {
            return Ok(());
        }
        match self.trainer.publisher.retire(&retire).await {
            Ok(()) => {}
            Err(e @ RegistryError::Fenced { .. }) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(
                    "retrainer: versions {retire:?} not retired: {}",
                    crate::error_chain(&e)
                );
                return Ok(());
            }
        }
        let store = config.store.clone();
        let gone = retire.clone();
        let removed =
            tokio::task::spawn_blocking(move || gone.iter().try_for_each(|&v| store.remove(v)))
                .await?;
        if let Err(e) = removed {
            tracing::warn!(
                "retrainer: the files of a retired version not removed: {}",
                crate::error_chain(&e)
            );
        }
        tracing::info!(
            "retrainer: retired {} (a tombstone on {}, local files removed); kept {keep:?}",
            retire
                .iter()
                .map(|v| format!("v{v}"))
                .collect::<Vec<_>>()
                .join(", "),
            config.kafka.topics.models
        );
        config.metrics.retired(retire.len());
        Ok(())
    }

    /// A new champion serves from now on.
    fn serve(&mut self, champion: Arc<Bundle>) {
        let before = self.champion.manifest.version;
        if champion.manifest.version != before {
            self.operator.previous = Some(before);
        }
        self.champion = champion;
        self.monitors.new_champion(&self.champion);
    }

    /// Tells the metrics whether a version is pinned.
    fn emit_pin(&self) {
        self.trainer
            .config
            .metrics
            .pinned
            .set(i64::from(self.operator.pinned().is_some()));
    }

    /// The trigger that calls for a retrain now, if any.
    fn due(&self) -> Option<Fired> {
        let state = Now {
            busy: self.training.task.is_some() || self.gate.is_some(),
            new_rows: self.retrainer.new_rows(),
            rows_due: self.retrainer.retrain_due(),
            fired: self.monitors.fired(),
        };
        self.schedule.due(state, Instant::now())
    }

    /// Takes in the result of a retrain that finished.
    async fn take_result(
        &mut self,
        result: Result<Retrained, RetrainerError>,
    ) -> Result<(), RetrainerError> {
        let done = match result {
            Ok(done) => done,
            Err(RetrainerError::Train(TrainError::Cancelled)) => return Ok(()),
            // Fenced: another retrainer took over the registry; this one must stop.
            Err(e @ RetrainerError::Registry(RegistryError::Fenced { .. })) => return Err(e),
            // A retrain that failed costs that retrain, never the service: the next one is
            // due after as many new rows again.
            Err(e) => {
                tracing::error!(
                    "retrainer: the retrain failed, nothing published: {}",
                    crate::error_chain(&e)
                );
                self.stats.failed_retrains += 1;
                return Ok(());
            }
        };
        let version = done.manifest.version;
        self.emit(Event::Retrained(done.event.clone()));
        let outcome = done.event.outcome;
        if !matches!(outcome, RetrainOutcome::Refused { .. }) {
            self.stats.versions.push(version);
        }
        match (outcome, done.bundle, self.gate_settings()) {
            (RetrainOutcome::Champion, Some(bundle), _) => self.serve(bundle),
            (RetrainOutcome::Challenger, Some(bundle), Some(settings)) => {
                let run = GateRun::new(
                    bundle,
                    self.champion.clone(),
                    false,
                    done.from_offsets,
                    settings,
                );
                // Rows stored during the retrain, after its cut-off, count already.
                self.gate = Some(self.fed_with_stored_rows(run).await?);
            }
            (outcome, _, _) => self
                .stats
                .decisions
                .push(Decided::NotShadowed { version, outcome }),
        }
        self.retire_old_versions().await
    }

    fn start_retrain(&mut self, trigger: Fired) {
        self.schedule.started(Instant::now());
        self.monitors.retrain_started(&self.champion);
        let log = self.retrainer.log();
        let retention = &self.trainer.config.retention;
        let stream = StreamRows {
            rows: log
                .retained(retention, crate::stream::messages::now_ms())
                .to_vec(),
            offsets: log.offsets(),
        };
        self.retrainer.trained_on_all();
        self.training.task = Some(tokio::spawn(retrain(
            self.trainer.clone(),
            stream,
            self.champion.manifest.clone(),
            self.champion.clone(),
            trigger,
            self.operator.pinned(),
            self.training.stop.child_token(),
        )));
    }

    /// Reports the gate's progress, and carries out its decision once it makes one.
    pub async fn apply_gate(&mut self) -> Result<(), RetrainerError> {
        let Some(run) = self.gate.as_mut() else {
            return Ok(());
        };
        let decision = run.decision();
        let evidence = run.evidence();
        // The offsets a probation counts from (only read for a decision: it walks the log).
        let offsets = match decision {
            Decision::Continue => Default::default(),
            _ => self.retrainer.log().offsets(),
        };
        let decided = verdict(
            &decision,
            run.probation,
            run.challenger_version(),
            run.champion_version(),
            &evidence,
            &offsets,
            self.operator.pinned().is_some(),
        );
        let Some(verdict) = decided else {
            // Rows left out count towards a report too: a gate starved by rows its models were
            // trained on (a repeated input) says so.
            let seen = run.gate.labels() + run.left_out;
            if seen >= run.reported + PROGRESS_EVERY {
                run.reported = seen;
                let event = Event::Gate(progress(run));
                self.emit(event);
            }
            return Ok(());
        };
        let run = self.gate.take().expect("a gate is running");
        self.carry_out(run, verdict).await
    }

    /// Publishes a decision's alias records, then serves the new champion (if any) and puts the
    /// former one on probation (after a promotion).
    async fn carry_out(
        &mut self,
        run: GateRun,
        mut verdict: Verdict,
    ) -> Result<(), RetrainerError> {
        for r in &mut verdict.records {
            r.bundle_sha256 = [&run.challenger, &run.champion]
                .into_iter()
                .find(|b| Some(b.manifest.version) == r.version)
                .map(|b| b.manifest.bundle_sha256());
        }
        self.trainer
            .publisher
            .publish(None, &verdict.records)
            .await?;
        let mut event = progress(&run);
        tracing::info!(
            "retrainer: {} ({}, margin {}; {} rows after the cut-off left out: a model was \
             trained on their like)",
            verdict.outcome,
            event.evidence,
            event.evidence.delta,
            run.left_out
        );
        if verdict.outcome.changes_champion() {
            let v = run.challenger_version();
            let store = self.trainer.config.store.clone();
            tokio::task::spawn_blocking(move || store.promote(v)).await??;
            self.serve(run.challenger.clone());
        }
        if let (Some(from), Some(settings)) = (verdict.probation_from, self.gate_settings()) {
            let probation = GateRun::new(
                run.champion.clone(),
                self.champion.clone(),
                true,
                from,
                settings,
            );
            self.gate = Some(self.fed_with_stored_rows(probation).await?);
        }
        event.decision = Some(verdict.outcome);
        self.emit(Event::Gate(event));
        self.stats.decisions.push(Decided::Gate(verdict.outcome));
        self.retire_old_versions().await
    }

    /// Stops: waits for a cancelled retrain to end, and says what was done.
    pub async fn stop(mut self) -> Result<RetrainerStats, RetrainerError> {
        if let Some(result) = self.training.finished.take() {
            self.take_result(result?).await?;
        }
        if let Some(task) = self.training.task.take() {
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

impl<F: Fn(&Event) + Send + Sync + 'static> Service<F> {
    /// Sends dead letters of labels and waits for their acknowledgements.
    fn send_dead_letters(
        &self,
        letters: Vec<crate::stream::dead_letter::DeadLetterRecord>,
    ) -> impl std::future::Future<Output = Result<(), RetrainerError>> + Send + 'static {
        let (producer, topic) = (
            self.trainer.dlq.clone(),
            self.trainer.config.kafka.topics.dlq.clone(),
        );
        let metrics = self.trainer.config.metrics.clone();
        async move {
            if letters.is_empty() {
                return Ok(());
            }
            let reasons: Vec<String> = letters.iter().map(|l| l.reason().to_owned()).collect();
            let sends = letters
                .into_iter()
                .map(|l| crate::stream::dead_letter::send_dead_letter(&producer, &topic, l));
            for sent in futures::future::join_all(sends).await {
                if let Err((source, _)) = sent {
                    return Err(RetrainerError::Broker(
                        crate::kafka::BrokerError::Delivery {
                            topic: topic.clone(),
                            source,
                        },
                    ));
                }
            }
            metrics.label_dead_letters(reasons.iter().map(String::as_str));
            Ok(())
        }
    }

    /// Gives the label join the consumer's latest look at its partitions' ends (again, if it
    /// had it: [`Self::background`]'s wait for the next look marks it seen before this runs).
    fn take_look(&mut self) {
        if let Some(ends) = self.looks.borrow_and_update().as_ref() {
            self.retrainer.labels_mut().looked(ends);
        }
    }

    fn count_join(&self, wall_ms: i64) {
        let labels = self.retrainer.labels();
        let metrics = &self.trainer.config.metrics;
        metrics.joined(labels.counts(), labels.pending());
        metrics
            .label_join_clock_lag_seconds
            .set(labels.clock_lag_ms(wall_ms) as f64 / 1000.0);
    }

    /// Expires what waited a window in the join, between batches: dead-letters the labels
    /// whose request never came, then journals that they left.
    async fn expire_labels(&mut self) -> Result<(), RetrainerError> {
        self.take_look();
        let now = crate::stream::messages::now_ms();
        let expired = self.retrainer.labels_mut().expire(now);
        self.count_join(now);
        if expired.dead_letters.is_empty() {
            return Ok(());
        }
        self.send_dead_letters(expired.dead_letters).await?;
        self.retrainer.labels_mut().dropped(expired.dropped)?;
        Ok(())
    }
}

/// The gate's progress, with no decision.
fn progress(run: &GateRun) -> GateEvent {
    GateEvent {
        challenger: run.challenger_version(),
        champion: run.champion_version(),
        probation: run.probation,
        evidence: run.evidence(),
        left_out: run.left_out,
        decision: None,
    }
}

impl<F: Fn(&Event) + Send + Sync + 'static> Worker for Service<F> {
    type Output = StepReport;
    type Delivered = StepReport;
    type Error = RetrainerError;

    fn step(&mut self, batch: &[InMessage]) -> Result<StepReport, RetrainerError> {
        let before = self.retrainer.log().len();
        self.take_look();
        let now_ms = crate::stream::messages::now_ms();
        let report = self.retrainer.step(batch, now_ms)?;
        self.count_join(now_ms);
        let new_rows = &self.retrainer.log().rows()[before..];
        if let Some(run) = self.gate.as_mut() {
            run.feed(new_rows);
        }
        for event in self.monitors.observe(&self.champion, batch, new_rows) {
            (self.on_event)(&event);
        }
        let retention = self.trainer.config.retention;
        let compacted = self.retrainer.compact(&retention, now_ms)?;
        self.trainer
            .config
            .metrics
            .rows(compacted.kept, compacted.dropped);
        if compacted.dropped > 0 {
            tracing::info!(
                "retrainer: rows file compacted to its retention: {} oldest rows dropped, {} kept",
                compacted.dropped,
                compacted.kept
            );
        }
        Ok(report)
    }

    /// The rows are durable once the step returns: only labels it cannot use are sent, as
    /// dead letters, before the batch is committed.
    fn deliver(&mut self, mut report: StepReport) -> Delivery<StepReport, RetrainerError> {
        let letters = std::mem::take(&mut report.dead_letters);
        let sending = self.send_dead_letters(letters);
        Box::pin(async move {
            sending.await?;
            Ok(report)
        })
    }

    async fn after_commit(&mut self, report: StepReport) -> Result<(), RetrainerError> {
        self.stats.skipped += report.skipped as u64;
        if !report.dropped.is_empty() {
            self.retrainer.labels_mut().dropped(report.dropped)?;
        }
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
        // Labels waiting for their request expire even when nothing else comes.
        let expiry = self.retrainer.labels().next_expiry();
        let Some(task) = self.training.task.as_mut() else {
            if self.due().is_some() {
                return;
            }
            let next = self.schedule.next_look(Instant::now());
            return tokio::select! {
                () = self.operator.wait() => {}
                () = sleep_until(next) => {}
                () = sleep_until(expiry) => {}
                () = looked(&mut self.looks, expiry.is_some()) => {}
            };
        };
        let finished = tokio::select! {
            () = self.operator.wait() => None,
            result = task => Some(result),
            () = sleep_until(expiry) => None,
            () = looked(&mut self.looks, expiry.is_some()) => None,
        };
        if let Some(result) = finished {
            self.training.task = None;
            self.training.finished = Some(result);
        }
    }

    /// Takes in the finished retrain, if any, applies an operator's command, if one came, and
    /// starts the next retrain if one is due.
    async fn on_background(&mut self) -> Result<(), RetrainerError> {
        self.expire_labels().await?;
        if let Some(result) = self.training.finished.take() {
            self.take_result(result?).await?;
        }
        if let Some(command) = self.operator.take() {
            self.apply_command(command).await?;
        }
        self.apply_gate().await?;
        if let Some(trigger) = self.due() {
            self.start_retrain(trigger);
        }
        Ok(())
    }
}

/// Waits for the next look at the input's ends when something waits to expire (a look moves
/// the join's clock); else forever.
async fn looked(looks: &mut watch::Receiver<Option<Ends>>, waiting: bool) {
    if !waiting || looks.changed().await.is_err() {
        std::future::pending().await
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
