//! What the dashboard knows: the topics' records folded into per-second counts, latency
//! histograms, per-version accuracy, the registry's story and the drift of the requests. Plain
//! data, fed by the reader and read by the page as a [`Snapshot`].

use std::collections::{BTreeMap, VecDeque};

use super::histogram::Histogram;
use super::snapshot::{
    AliasView, DriftView, EstimateView, Explained, GateView, ImportanceView, Latest,
    LatestDeadLetter, MinuteImportance, Moment, Series, Snapshot, Step, Tally as TallyView, Totals,
    VersionView, WindowView,
};
use crate::bundle::Manifest;
use crate::features::{feature_names, DriftWindow, FeatureProcessor};
use crate::join::{Join, LabelIn, Outcome, Position};
use crate::lifecycle::calibration::Calibration;
use crate::lifecycle::estimate::Estimate;
use crate::lifecycle::gate::{log_loss, Gate, GateSettings};
use crate::lifecycle::groups::{GroupFigures, Groups};
use crate::lifecycle::triggers::Triggers;
use crate::registry::{Alias, AliasRecord};
use crate::stream::messages::{now_ms, Prediction, Request};

/// Seconds of per-second counts kept.
const HISTORY_SECS: i64 = 900;
/// Seconds the page's throughput and latency charts show.
const CHART_SECS: i64 = 300;
const MIN_CHART_SECS: i64 = 60;
/// The accuracy charts' step.
const STEP_SECS: i64 = 5;
/// Steps in a window of the estimated-against-realised chart (a minute).
const WINDOW_STEPS: i64 = 12;
/// Steps of per-version history kept; older ones are folded into a running base.
const MAX_STEPS: usize = 720;
const LATEST: usize = 12;
/// Explained predictions shown, and reasons shown of each.
const LATEST_EXPLAINED: usize = 8;
/// Minutes of each version's importance kept, for its attribution over time.
const IMPORTANCE_MINUTES: usize = 60;
const MINUTE_MS: i64 = 60_000;
const REASONS_SHOWN: usize = 3;
const TIMELINE: usize = 40;
/// Versions the board keeps figures of, besides the champion, the challenger and the version
/// drift is measured for: the newest. An older one is forgotten (its row leaves the page), so
/// that months of retrains do not grow the board or its page.
pub const VERSIONS_KEPT: usize = 20;
/// Requests in a window before its PSI is shown (fewer say little).
const DRIFT_MIN_ROWS: u64 = 200;

#[derive(Debug, Default, Clone)]
struct Second {
    requests: u64,
    predictions: u64,
    dead_letters: u64,
    latency: Histogram,
}

/// Labeled predictions of one model: how many, how many right, summed log loss.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Tally {
    pub labeled: u64,
    pub correct: u64,
    pub loss_sum: f64,
}

impl Tally {
    fn add(&mut self, p: f64, label: bool) {
        self.labeled += 1;
        self.correct += u64::from((p >= 0.5) == label);
        self.loss_sum += log_loss(p, label);
    }

    fn plus(&mut self, o: &Tally) {
        self.labeled += o.labeled;
        self.correct += o.correct;
        self.loss_sum += o.loss_sum;
    }

    fn view(&self) -> Option<TallyView> {
        (self.labeled > 0).then(|| TallyView {
            labeled: self.labeled,
            accuracy: self.correct as f64 / self.labeled as f64,
            log_loss: self.loss_sum / self.labeled as f64,
        })
    }
}

/// An estimate as the page shows it (none on no predictions).
fn estimate_view(e: &Estimate) -> Option<EstimateView> {
    Some(EstimateView {
        predictions: e.predictions,
        accuracy: e.accuracy()?,
        log_loss: e.log_loss()?,
    })
}

/// One step of a version: labeled predictions served and in shadow, and the estimate of its
/// served predictions.
#[derive(Debug, Default, Clone, Copy)]
struct StepTally {
    served: Tally,
    /// Of `served`, the predictions of rows whose features had not come before (in the stream,
    /// or in the rows every version was trained on): rows no version can have trained on.
    new_rows: Tally,
    shadow: Tally,
    estimate: Estimate,
}

impl StepTally {
    fn plus(&mut self, o: &StepTally) {
        self.served.plus(&o.served);
        self.new_rows.plus(&o.new_rows);
        self.shadow.plus(&o.shadow);
        self.estimate.plus(&o.estimate);
    }
}

/// One version: its manifest's figures and its live scores, served and in shadow.
#[derive(Debug, Default)]
struct Version {
    manifest: Option<Manifest>,
    processor: Option<FeatureProcessor>,
    predictions: u64,
    /// Before the oldest step kept.
    base: StepTally,
    steps: BTreeMap<i64, StepTally>,
    /// Its served predictions' calibration, on their labels.
    calibration: Calibration,
    importance: Importance,
    /// The same, minute by minute (of the predictions' time), the last [`IMPORTANCE_MINUTES`].
    importance_minutes: BTreeMap<i64, Importance>,
    /// Its served predictions' figures per group, on their labels, over rows whose features
    /// came for the first time.
    groups: GroupFigures,
}

/// Sums of the absolute contributions of each feature over the predictions a version served
/// with their reasons.
#[derive(Debug, Default)]
struct Importance {
    explained: u64,
    /// By column, as [`feature_names`].
    sums: Vec<f64>,
}

impl Importance {
    /// Adds a prediction's reasons; reasons naming no feature of the model are passed over.
    fn add(&mut self, reasons: &[crate::stream::messages::Reason], names: &[String]) {
        self.sums.resize(names.len(), 0.0);
        self.explained += 1;
        for r in reasons {
            if let Some(j) = names.iter().position(|n| *n == r.feature) {
                if r.contribution.is_finite() {
                    self.sums[j] += r.contribution.abs();
                }
            }
        }
    }

    /// Each feature's mean |contribution|, by column.
    fn means(&self, columns: usize) -> Vec<f64> {
        let n = self.explained.max(1) as f64;
        (0..columns)
            .map(|j| self.sums.get(j).copied().unwrap_or(0.0) / n)
            .collect()
    }

    fn view(&self, names: &[String]) -> Option<ImportanceView> {
        if self.explained == 0 {
            return None;
        }
        let mut features: Vec<(String, f64)> =
            names.iter().cloned().zip(self.means(names.len())).collect();
        features.sort_by(|a, b| b.1.total_cmp(&a.1));
        Some(ImportanceView {
            explained: self.explained,
            features,
            minutes: Vec::new(),
        })
    }
}

/// How far two importances' shares lie apart: the total variation distance between each
/// feature's share of the summed importance (0: the same shares; 1: no feature in common).
fn shift(a: &[f64], b: &[f64]) -> f64 {
    let (ta, tb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    if ta <= 0.0 || tb <= 0.0 {
        return 0.0;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x / ta - y / tb).abs())
        .sum::<f64>()
        / 2.0
}

impl Version {
    /// Adds a prediction's reasons, made at `at_ms`, to its importance and to its minute's.
    fn add_reasons(
        &mut self,
        at_ms: i64,
        reasons: &[crate::stream::messages::Reason],
        names: &[String],
    ) {
        self.importance.add(reasons, names);
        let minute = at_ms.div_euclid(MINUTE_MS);
        if self.importance_minutes.len() >= IMPORTANCE_MINUTES
            && !self.importance_minutes.contains_key(&minute)
        {
            // A late record of a minute no longer kept stays out; a new minute pushes out
            // the oldest.
            match self.importance_minutes.first_key_value() {
                Some((&oldest, _)) if minute < oldest => return,
                _ => {
                    self.importance_minutes.pop_first();
                }
            }
        }
        self.importance_minutes
            .entry(minute)
            .or_default()
            .add(reasons, names);
    }

    /// Its importance with its minutes, each feature's minute means in the order of the
    /// whole's features.
    fn importance_view(&self, names: &[String]) -> Option<ImportanceView> {
        let mut view = self.importance.view(names)?;
        let whole = self.importance.means(names.len());
        let order: Vec<usize> = view
            .features
            .iter()
            .filter_map(|(f, _)| names.iter().position(|n| n == f))
            .collect();
        view.minutes = self
            .importance_minutes
            .iter()
            .map(|(&m, imp)| {
                let means = imp.means(names.len());
                MinuteImportance {
                    t: (m + 1) * MINUTE_MS,
                    explained: imp.explained,
                    shift: shift(&means, &whole),
                    means: order.iter().map(|&j| means[j]).collect(),
                }
            })
            .collect();
        Some(view)
    }

    fn step(&mut self, at_ms: i64) -> &mut StepTally {
        let s = at_ms.div_euclid(STEP_SECS * 1000);
        if self.steps.len() >= MAX_STEPS && !self.steps.contains_key(&s) {
            if let Some((_, old)) = self.steps.pop_first() {
                self.base.plus(&old);
            }
        }
        self.steps.entry(s).or_default()
    }

    fn totals(&self) -> StepTally {
        let mut all = self.base;
        for x in self.steps.values() {
            all.plus(x);
        }
        all
    }

    /// Cumulative accuracy and log loss at the end of each step: served, in shadow, and
    /// estimated from the served probabilities.
    fn series(&self) -> (Vec<Step>, Vec<Step>, Vec<Step>) {
        let mut run = self.base;
        let (mut served, mut shadow, mut estimated) = (Vec::new(), Vec::new(), Vec::new());
        for (&s, add) in &self.steps {
            let t = (s + 1) * STEP_SECS * 1000;
            run.plus(add);
            let realised = |v: TallyView| Step {
                t,
                accuracy: v.accuracy,
                log_loss: v.log_loss,
                n: v.labeled,
            };
            if add.served.labeled > 0 {
                served.extend(run.served.view().map(realised));
            }
            if add.shadow.labeled > 0 {
                shadow.extend(run.shadow.view().map(realised));
            }
            if add.estimate.predictions > 0 {
                estimated.extend(estimate_view(&run.estimate).map(|e| Step {
                    t,
                    accuracy: e.accuracy,
                    log_loss: e.log_loss,
                    n: e.predictions,
                }));
            }
        }
        (served, shadow, estimated)
    }
}

impl Version {
    /// Per window of [`WINDOW_STEPS`] steps: the estimate of the predictions served in it, and
    /// what their labels show as they come (late labels count in their prediction's window).
    fn windows(&self) -> Vec<WindowView> {
        let mut out: Vec<WindowView> = Vec::new();
        let mut current: Option<(i64, StepTally)> = None;
        let close = |w: i64, t: &StepTally| {
            let e = estimate_view(&t.estimate)?;
            Some(WindowView {
                t: (w + 1) * WINDOW_STEPS * STEP_SECS * 1000,
                predictions: e.predictions,
                estimated_accuracy: e.accuracy,
                estimated_log_loss: e.log_loss,
                realised: t.served.view(),
            })
        };
        for (&s, add) in &self.steps {
            let w = s.div_euclid(WINDOW_STEPS);
            match current.as_mut() {
                Some((cw, t)) if *cw == w => t.plus(add),
                _ => {
                    if let Some((cw, t)) = current.take() {
                        out.extend(close(cw, &t));
                    }
                    current = Some((w, *add));
                }
            }
        }
        if let Some((cw, t)) = current {
            out.extend(close(cw, &t));
        }
        out
    }
}

/// The gate as replayed from the predictions: the retrainer decides, this shows its progress.
#[derive(Debug)]
struct GateReplay {
    challenger: u32,
    champion: u32,
    probation: bool,
    from_offsets: BTreeMap<String, i64>,
    gate: Gate,
}

#[derive(Debug)]
struct Drift {
    version: u32,
    window: DriftWindow,
    /// The last full window's PSI per feature, and its size.
    last: Option<(Vec<f64>, u64)>,
}

/// What a dead letter says besides its reason: its error, and where its record was read
/// (`topic/partition@offset`, empty when not said).
#[derive(Debug, Clone, Default)]
pub struct DeadLetterSeen {
    pub error: String,
    pub source: String,
}

/// Dead letters listed on the page, newest first.
const LATEST_DEAD: usize = 8;

/// What a prediction scored, waiting for its label.
#[derive(Debug, Clone)]
struct Scored {
    model_version: u32,
    probability: f64,
    challenger: Option<(u32, f64)>,
    predicted_at_ms: i64,
    /// Its request's features came for the first time (false when not known).
    new_row: bool,
    /// Its request's groups (none when its request was not read).
    groups: Option<Groups>,
}

/// Which requests' features come for the first time: a row that came before may be one a
/// retrain trained on, so that its prediction is no evidence of skill. The stream's rows are
/// remembered up to [`NOVELTY_ROWS`], the oldest forgotten first: far more than a retrainer
/// keeps to train on (100,000 by default), so a row forgotten here has left every window a
/// kept version trained on, unless versions live very long.
#[derive(Debug, Default)]
struct Novelty {
    /// Hashes of the base training rows' features, when given.
    base: std::collections::HashSet<u64>,
    /// Hashes of the stream's rows remembered, with how many of `order` they are.
    seen: std::collections::HashMap<u64, u32>,
    /// The stream's rows remembered, oldest first.
    order: VecDeque<u64>,
    /// Requests read, by partition and offset, waiting for their prediction: new or not, when
    /// read, and the row's groups.
    waiting: std::collections::HashMap<(i32, i64), (bool, i64, Groups)>,
    /// Waiting entries are dropped after this long (a request never predicted).
    keep_ms: i64,
    inserts: u64,
}

/// The stream rows the dashboard remembers to tell a new row from one that came before.
pub const NOVELTY_ROWS: usize = 500_000;

impl Novelty {
    fn request(&mut self, partition: i32, offset: i64, record: &crate::data::CensusRow, now: i64) {
        let key = record.features_key();
        let new = !self.base.contains(&key) && !self.seen.contains_key(&key);
        self.remember(key, NOVELTY_ROWS);
        self.waiting
            .insert((partition, offset), (new, now, Groups::of(record)));
        self.inserts += 1;
        if self.inserts.is_multiple_of(10_000) {
            let oldest = now - self.keep_ms;
            self.waiting.retain(|_, (_, at, _)| *at >= oldest);
        }
    }

    /// Remembers a stream row, forgetting the oldest beyond `cap`.
    fn remember(&mut self, key: u64, cap: usize) {
        *self.seen.entry(key).or_default() += 1;
        self.order.push_back(key);
        while self.order.len() > cap {
            let old = self.order.pop_front().expect("more than cap");
            if let std::collections::hash_map::Entry::Occupied(mut e) = self.seen.entry(old) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
    }

    /// Whether the request at this place was new (false when it was not read yet), and its
    /// row's groups (when it was).
    fn prediction(&mut self, partition: i32, offset: i64) -> (bool, Option<Groups>) {
        match self.waiting.remove(&(partition, offset)) {
            Some((new, _, groups)) => (new, Some(groups)),
            None => (false, None),
        }
    }
}

pub struct Board {
    /// The stream's topics are read from records written then on (`None`: from the beginning).
    pub since_ms: Option<i64>,
    requests_topic: String,
    /// Predictions joined to their labels (inline, or from the labels topic), as the
    /// retrainer joins requests: the page's accuracy and log loss rest on its matches.
    labels: Join<Scored>,
    novelty: Novelty,
    gate_settings: GateSettings,
    drift_window: u64,
    drift_psi: Option<f64>,
    seconds: BTreeMap<i64, Second>,
    totals: Totals,
    dead_letters: BTreeMap<String, u64>,
    latest_dead: VecDeque<LatestDeadLetter>,
    versions: BTreeMap<u32, Version>,
    /// Versions forgotten beyond [`VERSIONS_KEPT`] and not shown again, and the highest
    /// forgotten: a late record of such a version counts for nothing (unless it plays a part
    /// again).
    forgotten: u64,
    forgotten_up_to: Option<u32>,
    /// The highest version of a bundle record read.
    highest_bundle: Option<u32>,
    champion: Option<AliasRecord>,
    challenger: Option<AliasRecord>,
    timeline: VecDeque<Moment>,
    gate: Option<GateReplay>,
    drift: Option<Drift>,
    latest: VecDeque<Latest>,
    latest_explained: VecDeque<Explained>,
    /// The model's feature names, for the reasons of predictions.
    feature_names: Vec<String>,
    lag: Option<i64>,
}

impl Board {
    /// `triggers`: the drift window and threshold, as the retrainer's.
    pub fn new(requests_topic: &str, gate_settings: GateSettings, triggers: &Triggers) -> Self {
        Board {
            since_ms: None,
            requests_topic: requests_topic.to_owned(),
            labels: Join::new(crate::defaults::LABEL_WINDOW),
            novelty: Novelty {
                keep_ms: crate::defaults::LABEL_WINDOW.as_millis() as i64,
                ..Novelty::default()
            },
            gate_settings,
            drift_window: triggers.psi_window.max(1) as u64,
            drift_psi: triggers.psi,
            seconds: BTreeMap::new(),
            totals: Totals::default(),
            dead_letters: BTreeMap::new(),
            latest_dead: VecDeque::new(),
            versions: BTreeMap::new(),
            forgotten: 0,
            forgotten_up_to: None,
            highest_bundle: None,
            champion: None,
            challenger: None,
            timeline: VecDeque::new(),
            gate: None,
            drift: None,
            latest: VecDeque::new(),
            latest_explained: VecDeque::new(),
            feature_names: feature_names(),
            lag: None,
        }
    }

    /// How long a prediction waits for its label (as the retrainer's `--label-window-secs`).
    pub fn with_label_window(mut self, window: std::time::Duration) -> Self {
        self.labels = Join::new(window);
        self.novelty.keep_ms = window.as_millis() as i64;
        self
    }

    /// Rows every version was trained on (adult.data): a request with their features is no
    /// new row.
    pub fn with_base_rows<'a>(
        mut self,
        rows: impl Iterator<Item = &'a crate::data::CensusRow>,
    ) -> Self {
        self.novelty.base.extend(rows.map(|r| r.features_key()));
        self
    }

    fn second(&mut self, at_ms: i64) -> &mut Second {
        let s = at_ms.div_euclid(1000);
        if let Some((&newest, _)) = self.seconds.last_key_value() {
            if s > newest {
                while let Some(e) = self.seconds.first_entry() {
                    if *e.key() > s - HISTORY_SECS {
                        break;
                    }
                    e.remove();
                }
            }
        }
        self.seconds.entry(s).or_default()
    }

    /// A record of the requests topic, valid or not, written at `at_ms`, read at this partition
    /// and offset.
    pub fn request(&mut self, at_ms: i64, place: (i32, i64), payload: Option<&[u8]>) {
        self.totals.requests += 1;
        self.second(at_ms).requests += 1;
        let Some(request) = payload.and_then(|p| serde_json::from_slice::<Request>(p).ok()) else {
            return;
        };
        self.novelty
            .request(place.0, place.1, &request.record, now_ms());
        let Some(drift) = self.drift.as_mut() else {
            return;
        };
        let Some(processor) = self
            .versions
            .get(&drift.version)
            .and_then(|v| v.processor.as_ref())
        else {
            return;
        };
        drift.window.add(&processor.transform(&request.record));
        if drift.window.rows() >= self.drift_window {
            let reference = processor.drift_reference();
            drift.last = Some((reference.psi(&drift.window), drift.window.rows()));
            drift.window = DriftWindow::new(reference);
        }
    }

    pub fn prediction(&mut self, p: &Prediction) {
        self.totals.predictions += 1;
        let latency = (p.predicted_at_ms - p.sent_at_ms).max(0) as f64;
        let second = self.second(p.predicted_at_ms);
        second.predictions += 1;
        second.latency.add(latency);
        let inline = p
            .income_bracket
            .as_deref()
            .and_then(crate::data::parse_label);
        let names = std::mem::take(&mut self.feature_names);
        if let Some(version) = self.version_mut(p.model_version) {
            version.predictions += 1;
            if !p.reasons.is_empty() {
                version.add_reasons(p.predicted_at_ms, &p.reasons, &names);
            }
        }
        // The challenger's, from its reasons in shadow on the same predictions.
        if let (Some(v), false) = (p.challenger_version, p.challenger_reasons.is_empty()) {
            if let Some(version) = self.version_mut(v) {
                version.add_reasons(p.predicted_at_ms, &p.challenger_reasons, &names);
            }
        }
        self.feature_names = names;
        if !p.reasons.is_empty() {
            if self.latest_explained.len() == LATEST_EXPLAINED {
                self.latest_explained.pop_back();
            }
            self.latest_explained.push_front(Explained {
                request_id: p.request_id.clone(),
                probability: p.probability,
                model_version: p.model_version,
                at_ms: p.predicted_at_ms,
                reasons: p.reasons.iter().take(REASONS_SHOWN).cloned().collect(),
            });
        }

        let (new_row, groups) = self.novelty.prediction(p.partition, p.offset);
        let scored = Scored {
            model_version: p.model_version,
            probability: p.probability,
            challenger: p.challenger_version.zip(p.challenger_probability),
            predicted_at_ms: p.predicted_at_ms,
            new_row,
            groups,
        };
        // Keyed by where its request was read: a prediction made twice is one request.
        let position = Position {
            topic: self.requests_topic.clone(),
            partition: p.partition,
            offset: p.offset,
        };
        let outcome = self
            .labels
            .request(&p.request_id, position, scored, inline, now_ms());
        // Estimated once per request: a prediction made again is a replay of the join.
        if !matches!(outcome, Outcome::Replayed) {
            if let Some(version) = self.version_mut(p.model_version) {
                version.step(p.predicted_at_ms).estimate.add(p.probability);
            }
        }
        self.joined(outcome);
        if self.latest.len() == LATEST {
            self.latest.pop_back();
        }
        self.latest.push_front(Latest {
            request_id: p.request_id.clone(),
            probability: p.probability,
            predicted: p.predicted.clone(),
            truth: p.income_bracket.clone(),
            model_version: p.model_version,
            challenger_version: p.challenger_version,
            challenger_probability: p.challenger_probability,
            latency_ms: latency,
            at_ms: p.predicted_at_ms,
        });
    }

    /// A record of the labels topic (the retrainer dead-letters those it cannot use).
    pub fn label(&mut self, position: Position, payload: Option<&[u8]>) {
        let Ok((label, truth)) = crate::stream::decode::decode_label(payload) else {
            return;
        };
        let held = LabelIn {
            position,
            label: truth,
            labeled_at_ms: label.labeled_at_ms,
            key: None,
            payload: Vec::new(),
        };
        let outcome = self.labels.label(&label.request_id, held, now_ms());
        self.joined(outcome);
    }

    /// Counts a match of the join for its versions, at its prediction's time.
    fn joined(&mut self, outcome: Outcome<Scored>) {
        self.labels.expire(now_ms());
        // Nothing here is journalled or dead-lettered: the retrainer does both.
        self.labels.take_ops();
        self.labels.take_dead();
        let Outcome::Matched(m) = outcome else {
            return;
        };
        let (s, label) = (m.value, m.label);
        if let Some(served) = self.version_mut(s.model_version) {
            served.calibration.add(s.probability, label);
            // On new rows only: a row a version may have trained on is no evidence of how it
            // treats the row's group.
            if let (Some(groups), true) = (s.groups, s.new_row) {
                served.groups.add(groups, s.probability, label);
            }
            let step = served.step(s.predicted_at_ms);
            step.served.add(s.probability, label);
            if s.new_row {
                step.new_rows.add(s.probability, label);
            }
        }
        if let Some((cv, cp)) = s.challenger {
            // A challenger is scored, as the retrainer's gate counts, never on a row it may
            // have trained on: not on a row whose features came before (a repeated input's
            // rows may be in its training set), nor one of adult.data. A prediction read before
            // its request (other topics, other pace) cannot be told, and counts.
            let repeated = !s.new_row && s.groups.is_some();
            if let Some(shadowed) = self.version_mut(cv).filter(|_| !repeated) {
                shadowed.step(s.predicted_at_ms).shadow.add(cp, label);
            }
            if let Some(g) = self.gate.as_mut() {
                let key = format!("{}/{}", self.requests_topic, m.request.partition);
                let after_cutoff = g
                    .from_offsets
                    .get(&key)
                    .is_none_or(|&o| m.request.offset >= o);
                if g.challenger == cv && g.champion == s.model_version && after_cutoff && !repeated
                {
                    g.gate.observe(cp, s.probability, label);
                }
            }
        }
    }

    pub fn dead_letter(&mut self, at_ms: i64, reason: &str, seen: DeadLetterSeen) {
        self.totals.dead_letters += 1;
        self.second(at_ms).dead_letters += 1;
        *self.dead_letters.entry(reason.to_owned()).or_default() += 1;
        if self.latest_dead.len() == LATEST_DEAD {
            self.latest_dead.pop_back();
        }
        self.latest_dead.push_front(LatestDeadLetter {
            at_ms,
            reason: reason.to_owned(),
            error: seen.error,
            source: seen.source,
        });
    }

    pub fn set_lag(&mut self, lag: Option<i64>) {
        self.lag = lag;
    }

    fn moment(&mut self, m: Moment) {
        if self.timeline.len() == TIMELINE {
            self.timeline.pop_front();
        }
        self.timeline.push_back(m);
    }

    /// A bundle record: its manifest, and its processor when it loaded (for drift).
    pub fn bundle(&mut self, manifest: Manifest, processor: Option<FeatureProcessor>) {
        let m = &manifest;
        let trigger = m.trigger.as_ref().map_or_else(
            || "bootstrap".to_owned(),
            |t| format!("{}: {}", t.kind, t.figures),
        );
        let mut text = format!(
            "v{} trained ({trigger}) on {} base + {} stream rows, CV log loss {:.4}",
            m.version, m.training_data.base_rows, m.training_data.stream_rows, m.cv.log_loss
        );
        if let Some(t) = &m.test_metrics {
            text.push_str(&format!(
                "; test AUC {:.4}, log loss {:.4}",
                t.roc_auc, t.log_loss
            ));
        }
        let (at_ms, version) = (m.created_at.timestamp_millis(), m.version);
        self.moment(Moment {
            at_ms,
            kind: "trained",
            version: Some(version),
            text,
        });
        self.highest_bundle = self.highest_bundle.max(Some(version));
        if let Some(v) = self.version_mut(version) {
            v.manifest = Some(manifest);
            v.processor = processor;
        }
        self.restart_drift();
        self.forget_old_versions();
    }

    pub fn alias(&mut self, a: AliasRecord) {
        let evidence = a
            .evidence
            .as_ref()
            .map_or(String::new(), |e| format!(" ({e})"));
        let (kind, text) = match (a.alias, a.version) {
            (Alias::Champion, Some(v)) => ("champion", format!("v{v} champion: {}", a.reason)),
            (Alias::Champion, None) => ("champion", format!("no champion: {}", a.reason)),
            (Alias::Challenger, Some(v)) if a.probation => (
                "challenger",
                format!("v{v} shadowed on probation: {}", a.reason),
            ),
            (Alias::Challenger, Some(v)) => {
                ("challenger", format!("v{v} challenger: {}", a.reason))
            }
            (Alias::Challenger, None) => ("decided", a.reason.clone()),
        };
        self.moment(Moment {
            at_ms: a.set_at_ms,
            kind,
            version: a.version,
            text: text + &evidence,
        });
        match a.alias {
            Alias::Champion => self.champion = Some(a),
            Alias::Challenger => self.challenger = Some(a),
        }
        self.restart_gate();
        self.restart_drift();
        self.forget_old_versions();
    }

    /// The figures of `version`, made if it has none yet; `None` for a version forgotten (see
    /// [`VERSIONS_KEPT`]) that plays no part now.
    fn version_mut(&mut self, version: u32) -> Option<&mut Version> {
        let forgotten = self.forgotten_up_to.is_some_and(|f| version <= f)
            && !self.versions.contains_key(&version)
            && !self.in_use(version);
        // A prediction of a version far above every bundle read is junk: counted, it would
        // stay among the newest for good.
        let junk = self
            .highest_bundle
            .is_some_and(|h| version > h.saturating_add(crate::registry::MAX_VERSION_GAP));
        if forgotten || junk {
            return None;
        }
        if !self.versions.contains_key(&version)
            && self.forgotten_up_to.is_some_and(|f| version <= f)
        {
            // A forgotten version in use again: shown again, no longer counted as forgotten.
            self.forgotten = self.forgotten.saturating_sub(1);
        }
        Some(self.versions.entry(version).or_default())
    }

    /// Whether `version` is the champion, the previous champion (a rollback may name it
    /// again), the challenger or the version drift is measured for.
    fn in_use(&self, version: u32) -> bool {
        self.version_of(Alias::Champion) == Some(version)
            || self.champion.as_ref().and_then(|a| a.previous) == Some(version)
            || self.version_of(Alias::Challenger) == Some(version)
            || self.drift.as_ref().is_some_and(|d| d.version == version)
    }

    /// Forgets the versions older than the newest [`VERSIONS_KEPT`], except those in use.
    fn forget_old_versions(&mut self) {
        if self.versions.len() <= VERSIONS_KEPT {
            return;
        }
        let newest: Vec<u32> = self
            .versions
            .keys()
            .rev()
            .take(VERSIONS_KEPT)
            .copied()
            .collect();
        let old: Vec<u32> = self
            .versions
            .keys()
            .copied()
            .filter(|v| !newest.contains(v) && !self.in_use(*v))
            .collect();
        for v in old {
            self.versions.remove(&v);
            self.forgotten += 1;
            self.forgotten_up_to = self.forgotten_up_to.max(Some(v));
        }
    }

    fn version_of(&self, alias: Alias) -> Option<u32> {
        match alias {
            Alias::Champion => self.champion.as_ref(),
            Alias::Challenger => self.challenger.as_ref(),
        }
        .and_then(|a| a.version)
    }

    fn restart_gate(&mut self) {
        let pair = self.challenger.as_ref().and_then(|c| {
            Some((
                c.version?,
                self.version_of(Alias::Champion)?,
                c.probation,
                c.from_offsets.clone(),
            ))
        });
        let same = match (&self.gate, &pair) {
            (Some(g), Some((c, h, ..))) => g.challenger == *c && g.champion == *h,
            _ => false,
        };
        if !same {
            self.gate = pair.map(
                |(challenger, champion, probation, from_offsets)| GateReplay {
                    challenger,
                    champion,
                    probation,
                    from_offsets,
                    gate: Gate::new(self.gate_settings),
                },
            );
        }
    }

    /// Drift is measured against the champion's training data: a new champion starts anew.
    fn restart_drift(&mut self) {
        let Some(champion) = self.version_of(Alias::Champion) else {
            return;
        };
        if self.drift.as_ref().is_some_and(|d| d.version == champion) {
            return;
        }
        let Some(processor) = self
            .versions
            .get(&champion)
            .and_then(|v| v.processor.as_ref())
        else {
            return;
        };
        self.drift = Some(Drift {
            version: champion,
            window: DriftWindow::new(processor.drift_reference()),
            last: None,
        });
    }

    pub fn snapshot(&self, now_ms: i64) -> Snapshot {
        let now_s = now_ms.div_euclid(1000);
        let sum = |from: i64, to: i64, f: fn(&Second) -> u64| -> u64 {
            self.seconds.range(from..=to).map(|(_, s)| f(s)).sum()
        };
        let rate = |f: fn(&Second) -> u64| sum(now_s - 5, now_s - 1, f) as f64 / 5.0;
        let mut recent = Histogram::default();
        for (_, s) in self.seconds.range(now_s - 10..=now_s) {
            recent.merge(&s.latency);
        }
        // The charts start where the records do: at most CHART_SECS ago, at least a minute.
        let first = self.seconds.first_key_value().map_or(now_s, |(&s, _)| s);
        let start = first.clamp(now_s - CHART_SECS, now_s - MIN_CHART_SECS);
        let mut series = Series::default();
        for t in start..now_s {
            let s = self.seconds.get(&t);
            series.t.push(t * 1000);
            series.requests.push(s.map_or(0, |s| s.requests));
            series.predictions.push(s.map_or(0, |s| s.predictions));
            series.dead_letters.push(s.map_or(0, |s| s.dead_letters));
            series.p50_ms.push(s.and_then(|s| s.latency.quantile(0.5)));
            series.p99_ms.push(s.and_then(|s| s.latency.quantile(0.99)));
        }
        let champion = self.version_of(Alias::Champion);
        let challenger = self.version_of(Alias::Challenger);
        let versions = self
            .versions
            .iter()
            .filter(|(_, v)| {
                v.manifest.is_some()
                    || v.predictions > 0
                    || !v.steps.is_empty()
                    || v.importance.explained > 0
            })
            .map(|(&version, v)| {
                let all = v.totals();
                let (served_series, shadow_series, estimated_series) = v.series();
                let role = if Some(version) == champion {
                    "champion"
                } else if Some(version) == challenger {
                    "challenger"
                } else {
                    "retired"
                };
                VersionView {
                    version,
                    role,
                    created_at_ms: v.manifest.as_ref().map(|m| m.created_at.timestamp_millis()),
                    cv_log_loss: v.manifest.as_ref().map(|m| m.cv.log_loss),
                    test_auc: v
                        .manifest
                        .as_ref()
                        .and_then(|m| m.test_metrics.as_ref().map(|t| t.roc_auc)),
                    test: v.manifest.as_ref().and_then(|m| m.test_metrics),
                    predictions: v.predictions,
                    served: all.served.view(),
                    new_rows: all.new_rows.view(),
                    shadow: all.shadow.view(),
                    served_series,
                    shadow_series,
                    estimated: estimate_view(&all.estimate),
                    calibration: v.calibration.view(),
                    // Minute by minute only for the versions in use: the page draws those.
                    importance: if role == "retired" {
                        v.importance.view(&self.feature_names)
                    } else {
                        v.importance_view(&self.feature_names)
                    },
                    groups: v.groups.view(),
                    estimated_series,
                    windows: v.windows(),
                }
            })
            .collect();
        let alias_view = |a: &Option<AliasRecord>| {
            a.as_ref().map(|a| AliasView {
                version: a.version,
                set_at_ms: a.set_at_ms,
                reason: a.reason.clone(),
                probation: a.probation,
            })
        };
        let gate = self.gate.as_ref().map(|g| {
            let e = g.gate.evidence();
            GateView {
                challenger: g.challenger,
                champion: g.champion,
                probation: g.probation,
                labels: g.gate.labels(),
                min_labels: self.gate_settings.min_labels,
                max_labels: self.gate_settings.max_labels,
                mean_d: e.mean_d,
                interval: g.gate.interval(),
                delta: self.gate_settings.delta,
                alpha: self.gate_settings.alpha,
            }
        });
        let drift = self.drift.as_ref().map(|d| {
            let (psi, rows, complete) = match &d.last {
                Some((psi, rows)) => (Some(psi.clone()), *rows, true),
                None if d.window.rows() >= DRIFT_MIN_ROWS => {
                    // A version whose processor did not load has no drift to show.
                    let psi = self
                        .versions
                        .get(&d.version)
                        .and_then(|v| v.processor.as_ref())
                        .map(|p| p.drift_reference().psi(&d.window));
                    (psi, d.window.rows(), false)
                }
                None => (None, d.window.rows(), false),
            };
            DriftView {
                version: d.version,
                rows,
                complete,
                threshold: self.drift_psi,
                features: psi.map_or_else(Vec::new, |psi| {
                    feature_names().into_iter().zip(psi).collect()
                }),
            }
        });
        Snapshot {
            now_ms,
            since_ms: self.since_ms,
            totals: Totals {
                labels_pending: self.labels.pending_requests() as u64,
                ..self.totals
            },
            requests_per_s: rate(|s| s.requests),
            predictions_per_s: rate(|s| s.predictions),
            p50_ms: recent.quantile(0.5),
            p99_ms: recent.quantile(0.99),
            lag: self.lag,
            series,
            versions,
            versions_forgotten: self.forgotten,
            versions_kept: VERSIONS_KEPT,
            champion: alias_view(&self.champion),
            challenger: alias_view(&self.challenger),
            gate,
            timeline: self.timeline.iter().rev().cloned().collect(),
            dead_letters: self.dead_letters.clone(),
            latest_dead_letters: self.latest_dead.iter().cloned().collect(),
            drift,
            latest: self.latest.iter().cloned().collect(),
            latest_explained: self.latest_explained.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    /// A reason naming `feature`, its value left out.
    fn reason(feature: &str, contribution: f64) -> crate::stream::messages::Reason {
        crate::stream::messages::Reason {
            feature: feature.into(),
            value: "x".into(),
            contribution,
        }
    }

    fn prediction(i: i64, version: u32, p: f64, truth: Option<&str>) -> Prediction {
        Prediction {
            request_id: format!("r{i}"),
            probability: p,
            predicted: if p >= 0.5 { ">50K" } else { "<=50K" }.into(),
            income_bracket: truth.map(str::to_owned),
            model_version: version,
            bundle_sha256: String::new(),
            challenger_version: None,
            challenger_probability: None,
            sent_at_ms: NOW - 3000 + i,
            predicted_at_ms: NOW - 3000 + i + 4,
            partition: 0,
            offset: i,
            reasons: Vec::new(),
            challenger_reasons: Vec::new(),
        }
    }

    fn board() -> Board {
        Board::new("req", GateSettings::default(), &Triggers::default())
    }

    #[test]
    fn counts_rates_latency_and_accuracy_per_version() {
        let mut b = board();
        for i in 0..100 {
            b.request(NOW - 3000 + i, (0, i), None);
            // v1 right on 3 of 4 labeled, v2 on all.
            let truth = if i % 4 == 0 { ">50K" } else { "<=50K" };
            b.prediction(&prediction(i, 1 + (i % 2) as u32, 0.2, Some(truth)));
        }
        b.dead_letter(NOW - 2000, "not_json", DeadLetterSeen::default());
        b.dead_letter(NOW - 2000, "not_json", DeadLetterSeen::default());
        b.dead_letter(
            NOW - 1500,
            "wrong_type",
            DeadLetterSeen {
                error: "age: invalid type".into(),
                source: "req/0@7".into(),
            },
        );
        let s = b.snapshot(NOW);
        assert_eq!(s.totals.requests, 100);
        assert_eq!(s.totals.predictions, 100);
        assert_eq!(s.totals.dead_letters, 3);
        assert_eq!(s.dead_letters["not_json"], 2);
        assert_eq!(s.dead_letters["wrong_type"], 1);
        assert_eq!(s.latest_dead_letters.len(), 3);
        let newest = &s.latest_dead_letters[0];
        assert_eq!(
            (
                newest.reason.as_str(),
                newest.error.as_str(),
                newest.source.as_str()
            ),
            ("wrong_type", "age: invalid type", "req/0@7")
        );
        assert!(
            (s.predictions_per_s - 20.0).abs() < 1e-9,
            "{}",
            s.predictions_per_s
        );
        let p50 = s.p50_ms.unwrap();
        assert!((4.0..4.5).contains(&p50), "p50 {p50}");
        let v1 = s.versions.iter().find(|v| v.version == 1).unwrap();
        let v2 = s.versions.iter().find(|v| v.version == 2).unwrap();
        assert_eq!(v1.predictions, 50);
        // v1 gets the even i: i % 4 == 0 is half of them, all wrong (p 0.2 says <=50K).
        assert_eq!(v1.served.unwrap().accuracy, 0.5);
        assert_eq!(v2.served.unwrap().accuracy, 1.0);
        assert!(v1.served.unwrap().log_loss > v2.served.unwrap().log_loss);
        assert_eq!(v1.served_series.last().unwrap().accuracy, 0.5);
        assert_eq!(s.latest.len(), LATEST);
        assert_eq!(s.latest[0].request_id, "r99");
        // The charts' series: one point a second, the counts where the records are.
        assert_eq!(s.series.predictions.iter().sum::<u64>(), 100);
    }

    /// A request of person `k` (the same `k`, the same features).
    fn request_of(i: i64, k: i64) -> Vec<u8> {
        let mut row = crate::features::tests::row("Private", "Sales", "United-States", 20.0);
        row.fnlwgt = 1000.0 + k as f64;
        serde_json::to_vec(&serde_json::json!({
            "request_id": format!("r{i}"),
            "sent_at_ms": NOW - 3000 + i,
            "record": row,
        }))
        .unwrap()
    }

    #[test]
    fn each_version_has_figures_per_group_from_its_requests_rows_and_labels() {
        let mut b = board();
        for i in 0..300 {
            let mut row = crate::features::tests::row("Private", "Sales", "United-States", 30.0);
            row.sex = if i % 2 == 0 { "Male" } else { "Female" }.into();
            // Rows 200.. repeat rows 0..: no evidence, left out.
            row.fnlwgt = 1000.0 + (i % 200) as f64;
            let request = serde_json::json!({"request_id": format!("r{i}"), "sent_at_ms": NOW, "record": row});
            b.request(
                NOW - 3000 + i,
                (0, i),
                Some(&serde_json::to_vec(&request).unwrap()),
            );
            // All earn more; v1 says so to the men only.
            let p = if i % 2 == 0 { 0.9 } else { 0.1 };
            b.prediction(&prediction(i, 1, p, Some(">50K")));
        }
        // A prediction whose request was never read has no groups: counted elsewhere only.
        b.prediction(&prediction(500, 1, 0.9, Some(">50K")));
        let s = b.snapshot(NOW);
        let v1 = s.versions.iter().find(|v| v.version == 1).unwrap();
        let groups = v1.groups.as_ref().expect("figures per group");
        let sex = groups.iter().find(|a| a.attribute == "sex").unwrap();
        let tpr: Vec<(String, f64, u64)> = sex
            .groups
            .iter()
            .map(|g| (g.group.clone(), g.tpr.unwrap().value, g.labeled))
            .collect();
        assert_eq!(
            tpr,
            [
                ("Male".to_owned(), 1.0, 100),
                ("Female".to_owned(), 0.0, 100)
            ]
        );
        let eo = sex.equalized_odds.unwrap();
        assert_eq!(eo.value, 1.0);
        assert!(eo.interval[0] > 0.7, "{eo:?}");
        let age = groups.iter().find(|a| a.attribute == "age").unwrap();
        assert_eq!(age.groups[0].group, "25-34");
        assert_eq!(age.groups[0].labeled, 200);
    }

    #[test]
    fn accuracy_on_new_rows_counts_only_features_that_come_for_the_first_time() {
        let known = {
            let mut row = crate::features::tests::row("Private", "Sales", "United-States", 20.0);
            row.fnlwgt = 1000.0 + 9.0;
            row
        };
        // Person 9 is a base training row; persons 0..9 come three times. v1 serves the first
        // pass (right on half); v2, trained on the first pass, "remembers" every repeat.
        let mut b = board().with_base_rows(std::iter::once(&known));
        for pass in 0..3 {
            for k in 0..10 {
                let i = pass * 10 + k;
                b.request(NOW - 3000 + i, (0, i), Some(&request_of(i, k)));
                let truth = if k % 2 == 0 { ">50K" } else { "<=50K" };
                let (version, p) = match pass {
                    0 => (1, 0.2),
                    _ => (2, if k % 2 == 0 { 0.9 } else { 0.1 }),
                };
                b.prediction(&prediction(i, version, p, Some(truth)));
            }
        }
        // A prediction whose request was never read is not counted as new.
        b.prediction(&prediction(99, 1, 0.2, Some("<=50K")));
        let s = b.snapshot(NOW);
        let v = |n: u32| s.versions.iter().find(|v| v.version == n).unwrap();
        assert_eq!(
            v(2).served.unwrap().accuracy,
            1.0,
            "served: inflated by repeats"
        );
        assert_eq!(v(2).served.unwrap().labeled, 20);
        assert_eq!(v(2).new_rows, None, "no new row reached v2");
        let new = v(1).new_rows.unwrap();
        assert_eq!(new.labeled, 9, "persons 0..8, not the base row, not r99");
        assert_eq!(v(1).served.unwrap().labeled, 11);
        assert!((new.accuracy - 4.0 / 9.0).abs() < 1e-12, "{}", new.accuracy);
    }

    fn label_record(offset: i64, id: &str, truth: &str) -> (Position, Vec<u8>) {
        let position = Position {
            topic: "labels".into(),
            partition: 0,
            offset,
        };
        let payload =
            format!(r#"{{"request_id":"{id}","income_bracket":"{truth}","labeled_at_ms":1}}"#);
        (position, payload.into_bytes())
    }

    #[test]
    fn each_minute_has_its_estimate_and_the_realised_figure_of_the_labels_come_for_it() {
        let mut b = board();
        // NOW is on a minute's boundary: 20 predictions in the minute before it (p 0.9, all
        // labelled and right), 10 in the one before that (p 0.6, unlabelled).
        assert_eq!(NOW % 60_000, 0);
        for i in 0..30 {
            let (at, p, truth) = match i {
                0..10 => (NOW - 90_000 + i, 0.6, None),
                _ => (NOW - 30_000 + i, 0.9, Some(">50K")),
            };
            let mut x = prediction(i, 1, p, truth);
            x.predicted_at_ms = at;
            b.prediction(&x);
        }
        let s = b.snapshot(NOW);
        let w = &s.versions[0].windows;
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!((w[0].t, w[0].predictions), (NOW - 60_000, 10));
        assert!((w[0].estimated_accuracy - 0.6).abs() < 1e-12);
        assert_eq!(w[0].realised, None, "no label came for the first minute");
        assert_eq!((w[1].t, w[1].predictions), (NOW, 20));
        assert!((w[1].estimated_accuracy - 0.9).abs() < 1e-12);
        let r = w[1].realised.unwrap();
        assert_eq!((r.labeled, r.accuracy), (20, 1.0));
    }

    #[test]
    fn labels_apart_are_joined_to_their_predictions_late_early_or_never() {
        let mut b = board();
        // r0..r9 predicted without labels; r10's label comes before its prediction.
        for i in 0..10 {
            b.prediction(&prediction(i, 1, 0.2, None));
        }
        let (at, bytes) = label_record(0, "r10", "<=50K");
        b.label(at, Some(&bytes));
        b.prediction(&prediction(10, 1, 0.2, None));
        let s = b.snapshot(NOW);
        assert_eq!(s.totals.labels_pending, 10, "r0..r9 wait for their labels");
        let v1 = s.versions.iter().find(|v| v.version == 1).unwrap();
        assert_eq!(v1.served.unwrap().labeled, 1);
        // Labels for r0..r5 come (r0 and r1 say >50K: wrong), r3's twice, one for nobody.
        for i in 0..6 {
            let truth = if i < 2 { ">50K" } else { "<=50K" };
            let (at, bytes) = label_record(i + 1, &format!("r{i}"), truth);
            b.label(at, Some(&bytes));
        }
        let (at, bytes) = label_record(20, "r3", ">50K");
        b.label(at, Some(&bytes));
        let (at, bytes) = label_record(21, "ghost", ">50K");
        b.label(at, Some(&bytes));
        b.label(label_record(22, "x", "").0, Some(b"not json"));
        // A prediction made twice (at-least-once) is one request.
        b.prediction(&prediction(4, 1, 0.2, None));
        let s = b.snapshot(NOW);
        let v1 = s.versions.iter().find(|v| v.version == 1).unwrap();
        let served = v1.served.unwrap();
        assert_eq!(served.labeled, 7, "r10 and r0..r5, each once");
        assert!((served.accuracy - 5.0 / 7.0).abs() < 1e-12);
        assert_eq!(s.totals.labels_pending, 4, "r6..r9");
        // The estimate rests on every prediction, labelled or not, each request once: p 0.2 is
        // right 80 % of the time if calibrated, with an expected log loss of its entropy.
        let e = v1.estimated.unwrap();
        assert_eq!(e.predictions, 11);
        assert!((e.accuracy - 0.8).abs() < 1e-12);
        let entropy = -(0.2f64 * 0.2f64.ln() + 0.8 * 0.8f64.ln());
        assert!((e.log_loss - entropy).abs() < 1e-12);
        assert_eq!(v1.estimated_series.last().unwrap().n, 11);
        // Calibration on the 7 labels: all at p 0.2, 2 of them >50K.
        let c = v1.calibration.as_ref().unwrap();
        assert_eq!((c.labels, c.bins.len()), (7, 1));
        assert!((c.bins[0].observed - 2.0 / 7.0).abs() < 1e-12);
        assert!((c.ece - (2.0 / 7.0 - 0.2)).abs() < 1e-12);
        assert_eq!(v1.served_series.last().unwrap().n, 7);
    }

    #[test]
    fn the_gate_replay_counts_the_pair_named_by_the_registry_after_the_cutoff() {
        let mut b = board();
        b.alias(AliasRecord::new(
            Alias::Champion,
            Some(1),
            None,
            "bootstrap",
        ));
        let mut challenger = AliasRecord::new(Alias::Challenger, Some(2), None, "retrain");
        challenger.from_offsets.insert("req/0".into(), 10);
        b.alias(challenger);
        // Offsets 0..40 are persons 0..40; offsets 40..50 repeat persons 10..20; the requests
        // of offsets 50..55 are not read (yet).
        for i in 0..55 {
            let person = if i < 40 { i } else { i - 30 };
            if i < 50 {
                b.request(NOW - 3000 + i, (0, i), Some(&request_of(i, person)));
            }
            let mut p = prediction(i, 1, 0.3, Some("<=50K"));
            p.challenger_version = Some(if (30..40).contains(&i) { 3 } else { 2 });
            p.challenger_probability = Some(0.1);
            b.prediction(&p);
        }
        let s = b.snapshot(NOW);
        let g = s.gate.unwrap();
        assert_eq!((g.challenger, g.champion), (2, 1));
        // Offsets 10..30 and 50..55 with challenger 2: 25 pairs; below the cut-off, another
        // challenger's, or a repeated row (which the models may have trained on) do not count.
        assert_eq!(g.labels, 25);
        assert!(g.mean_d < 0.0, "the challenger is better: {}", g.mean_d);
        // Its shadow scores count from before the cut-off too, but never on repeated rows.
        let v2 = s.versions.iter().find(|v| v.version == 2).unwrap();
        assert_eq!(v2.shadow.unwrap().labeled, 35);
        assert_eq!(v2.role, "challenger");

        // A decision clears the challenger: no gate, and the timeline says why.
        let mut decided = AliasRecord::new(Alias::Challenger, None, Some(2), "v2 rejected");
        decided.evidence = None;
        b.alias(decided);
        let s = b.snapshot(NOW);
        assert!(s.gate.is_none());
        assert_eq!(s.timeline[0].kind, "decided");
        assert_eq!(s.timeline[0].text, "v2 rejected");
        assert_eq!(s.timeline.len(), 3);
    }

    #[test]
    fn old_seconds_are_dropped_and_the_chart_starts_with_the_records() {
        let mut b = board();
        b.request(NOW - 2000 * 1000, (0, 0), None);
        b.request(NOW - 1000, (0, 1), None);
        assert_eq!(b.seconds.len(), 1, "the old second is past the history");
        let s = b.snapshot(NOW);
        assert_eq!(s.series.t.len(), MIN_CHART_SECS as usize);
        assert_eq!(s.totals.requests, 2);
    }

    #[test]
    fn novelty_forgets_the_oldest_stream_rows_beyond_its_cap_and_never_the_base_rows() {
        let mut n = Novelty::default();
        n.base.insert(7);
        for key in [1, 2, 1, 3] {
            n.remember(key, 3);
        }
        // 1 came twice: it stays while one of its two is among the newest three.
        assert_eq!(n.order, [2, 1, 3]);
        assert_eq!(n.seen.get(&1), Some(&1));
        n.remember(4, 3);
        assert!(!n.seen.contains_key(&2), "the oldest forgotten");
        n.remember(5, 3);
        assert!(!n.seen.contains_key(&1));
        assert_eq!(n.seen.len(), 3);
        assert!(n.base.contains(&7), "base rows are never forgotten");
    }

    #[test]
    fn only_the_newest_versions_and_those_in_use_are_kept_and_a_forgotten_one_stays_forgotten() {
        let mut b = board();
        b.alias(AliasRecord::new(
            Alias::Champion,
            Some(1),
            None,
            "bootstrap",
        ));
        let mut i = 0;
        for v in 2..=40 {
            b.alias(AliasRecord::new(
                Alias::Challenger,
                Some(v),
                None,
                "retrain",
            ));
            for _ in 0..3 {
                let mut p = prediction(i, 1, 0.3, Some("<=50K"));
                p.challenger_version = Some(v);
                p.challenger_probability = Some(0.1);
                b.prediction(&p);
                i += 1;
            }
            b.alias(AliasRecord::new(
                Alias::Challenger,
                None,
                Some(v),
                "rejected",
            ));
        }
        let kept: Vec<u32> = b.versions.keys().copied().collect();
        let mut want = vec![1];
        want.extend(21..=40);
        assert_eq!(kept, want, "the champion and the newest {VERSIONS_KEPT}");
        let s = b.snapshot(NOW);
        assert_eq!(s.versions_forgotten, 19);
        assert_eq!(s.versions.len(), 21);
        assert_eq!(
            s.versions[0].predictions, 117,
            "the champion's figures are whole"
        );

        // A late shadow score of a forgotten version counts for nothing...
        let mut p = prediction(i, 1, 0.3, Some("<=50K"));
        p.challenger_version = Some(5);
        p.challenger_probability = Some(0.1);
        b.prediction(&p);
        assert!(!b.versions.contains_key(&5));
        // ... unless it plays a part again (an operator promotes it).
        b.alias(AliasRecord::new(
            Alias::Champion,
            Some(5),
            Some(1),
            "promoted",
        ));
        b.prediction(&prediction(i + 1, 5, 0.3, Some("<=50K")));
        assert_eq!(b.versions[&5].predictions, 1);
        // v1, no longer champion nor the previous one, and older than the newest 20, is
        // forgotten in its turn: v2..v20 but v5, and v1, are not shown.
        b.alias(AliasRecord::new(
            Alias::Champion,
            Some(40),
            Some(5),
            "promoted",
        ));
        assert!(!b.versions.contains_key(&1));
        assert!(b.versions.contains_key(&5), "the previous champion is kept");
        assert_eq!(b.snapshot(NOW).versions_forgotten, 19);
        // A prediction of a version far above every bundle is junk once bundles were read.
        b.highest_bundle = Some(40);
        b.prediction(&prediction(i + 2, u32::MAX, 0.3, None));
        assert!(!b.versions.contains_key(&u32::MAX));
    }

    #[test]
    fn importance_is_the_mean_size_of_each_features_contribution_over_explained_predictions() {
        let mut b = board();
        let mut p = prediction(0, 1, 0.8, None);
        p.reasons = vec![
            reason("capital_gain", 2.0),
            reason("age", -1.0),
            reason("sex", 0.5),
            reason("race", 0.25),
        ];
        b.prediction(&p);
        let mut p = prediction(1, 1, 0.3, None);
        p.reasons = vec![reason("age", 3.0), reason("no_such_feature", 9.0)];
        b.prediction(&p);
        // Unexplained predictions count for nothing.
        b.prediction(&prediction(2, 1, 0.3, None));
        let s = b.snapshot(NOW);
        let v1 = s.versions.iter().find(|v| v.version == 1).unwrap();
        let importance = v1.importance.as_ref().unwrap();
        assert_eq!(importance.explained, 2);
        assert_eq!(importance.features.len(), feature_names().len());
        let of = |f: &str| importance.features.iter().find(|(n, _)| n == f).unwrap().1;
        assert_eq!(importance.features[0], ("age".to_string(), 2.0));
        assert_eq!(of("capital_gain"), 1.0);
        assert_eq!(of("sex"), 0.25);
        assert_eq!(of("workclass"), 0.0);
        // The latest explained, newest first, with their three largest reasons.
        assert_eq!(s.latest_explained.len(), 2);
        assert_eq!(s.latest_explained[0].request_id, "r1");
        let first: Vec<&str> = s.latest_explained[1]
            .reasons
            .iter()
            .map(|r| r.feature.as_str())
            .collect();
        assert_eq!(first, ["capital_gain", "age", "sex"]);

        // A challenger's reasons in shadow make its own importance, on the same predictions.
        let mut p = prediction(3, 1, 0.3, None);
        p.challenger_version = Some(2);
        p.challenger_probability = Some(0.4);
        p.reasons = vec![reason("age", 1.0)];
        p.challenger_reasons = vec![reason("sex", -4.0)];
        b.prediction(&p);
        let s = b.snapshot(NOW);
        let v2 = s.versions.iter().find(|v| v.version == 2).unwrap();
        let importance = v2.importance.as_ref().unwrap();
        assert_eq!(importance.explained, 1);
        assert_eq!(importance.features[0], ("sex".to_string(), 4.0));
        let v1 = s.versions.iter().find(|v| v.version == 1).unwrap();
        assert_eq!(v1.importance.as_ref().unwrap().explained, 3);
    }

    #[test]
    fn the_champions_importance_is_kept_minute_by_minute_with_how_far_each_minute_moved() {
        let mut b = board();
        b.alias(AliasRecord::new(
            Alias::Champion,
            Some(1),
            None,
            "bootstrap",
        ));
        // Minute 0: age alone, twice; minute 1: sex alone. A retired version keeps no minutes.
        let explained = |i: i64, at_ms: i64, version: u32, reasons| {
            let mut p = prediction(i, version, 0.4, None);
            p.predicted_at_ms = at_ms;
            p.reasons = reasons;
            p
        };
        let t0 = NOW - NOW.rem_euclid(MINUTE_MS);
        b.prediction(&explained(0, t0 + 5, 1, vec![reason("age", 2.0)]));
        b.prediction(&explained(1, t0 + 9, 1, vec![reason("age", -1.0)]));
        b.prediction(&explained(2, t0 + MINUTE_MS, 1, vec![reason("sex", 3.0)]));
        b.prediction(&explained(3, t0 + 7, 3, vec![reason("sex", 3.0)]));
        let s = b.snapshot(NOW + MINUTE_MS);
        let v1 = s.versions.iter().find(|v| v.version == 1).unwrap();
        let importance = v1.importance.as_ref().unwrap();
        // The whole: age 1.0, sex 1.0, so each minute's shares lie half from the whole's.
        assert_eq!(importance.explained, 3);
        let minutes = &importance.minutes;
        assert_eq!(minutes.len(), 2);
        assert_eq!((minutes[0].t, minutes[0].explained), (t0 + MINUTE_MS, 2));
        assert_eq!(
            (minutes[1].t, minutes[1].explained),
            (t0 + 2 * MINUTE_MS, 1)
        );
        let at = |name: &str| {
            importance
                .features
                .iter()
                .position(|(f, _)| f == name)
                .unwrap()
        };
        assert_eq!(minutes[0].means[at("age")], 1.5);
        assert_eq!(minutes[0].means[at("sex")], 0.0);
        assert_eq!(minutes[1].means[at("sex")], 3.0);
        assert_eq!(minutes[0].means.len(), importance.features.len());
        assert!(
            (minutes[0].shift - 0.5).abs() < 1e-12,
            "{}",
            minutes[0].shift
        );
        assert!(
            (minutes[1].shift - 0.5).abs() < 1e-12,
            "{}",
            minutes[1].shift
        );
        let v3 = s.versions.iter().find(|v| v.version == 3).unwrap();
        assert!(v3.importance.as_ref().unwrap().minutes.is_empty());

        // Only the last hour's minutes are kept; a late record of a minute gone stays out of
        // the minutes (its whole still counts it).
        for m in 2..=IMPORTANCE_MINUTES as i64 + 5 {
            b.prediction(&explained(
                10 + m,
                t0 + m * MINUTE_MS,
                1,
                vec![reason("age", 1.0)],
            ));
        }
        b.prediction(&explained(999, t0 + 3, 1, vec![reason("age", 1.0)]));
        let s = b.snapshot(NOW + 70 * MINUTE_MS);
        let v1 = s.versions.iter().find(|v| v.version == 1).unwrap();
        let importance = v1.importance.as_ref().unwrap();
        assert_eq!(importance.minutes.len(), IMPORTANCE_MINUTES);
        assert_eq!(importance.minutes[0].t, t0 + 7 * MINUTE_MS);
        assert_eq!(importance.explained, 3 + IMPORTANCE_MINUTES as u64 + 4 + 1);
    }
}
