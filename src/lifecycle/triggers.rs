//! When to retrain. Each trigger is a setting; whichever fires first starts a retrain, no sooner
//! than `min_gap` after the last one, and the new version's manifest records which fired and on
//! what figures.
//!
//! - rows: every N new labeled rows (the retrainer's `retrain_every`);
//! - time: `every` has passed with at least `min_rows` new labeled rows;
//! - feature drift: the population stability index of some feature over the last `psi_window`
//!   requests (labeled or not) against the champion's training histogram exceeds `psi`;
//! - loss drift: a Page-Hinkley test on the champion's log loss on the labeled rows stored since
//!   it was trained detects a rise.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Which trigger fired, and on what figures (recorded in the new version's manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fired {
    pub kind: TriggerKind,
    pub figures: String,
}

impl Fired {
    pub fn new(kind: TriggerKind, figures: impl Into<String>) -> Self {
        Fired {
            kind,
            figures: figures.into(),
        }
    }
}

/// The kinds of trigger; in manifests and metric labels `rows`, `time`, `feature_drift`,
/// `loss_drift`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// Enough new labeled rows.
    Rows,
    /// The period passed, with enough new rows.
    Time,
    /// A feature's PSI crossed its threshold.
    FeatureDrift,
    /// The Page-Hinkley test saw the champion's log loss rise.
    LossDrift,
}

impl TriggerKind {
    /// The label of metrics and MLflow tags, as serialized in manifests.
    pub fn as_label(self) -> &'static str {
        match self {
            TriggerKind::Rows => "rows",
            TriggerKind::Time => "time",
            TriggerKind::FeatureDrift => "feature_drift",
            TriggerKind::LossDrift => "loss_drift",
        }
    }
}

impl std::fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TriggerKind::Rows => "rows",
            TriggerKind::Time => "time",
            TriggerKind::FeatureDrift => "feature drift",
            TriggerKind::LossDrift => "loss drift",
        })
    }
}

/// The triggers besides the count of new rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Triggers {
    /// The time trigger: this long since the last retrain (or the start) …
    pub every: Option<Duration>,
    /// … with at least this many new labeled rows.
    pub min_rows: usize,
    /// The feature-drift trigger's PSI threshold (`None`: off) and window of requests.
    pub psi: Option<f64>,
    pub psi_window: usize,
    /// The loss-drift trigger (`None`: off).
    pub loss_drift: Option<PageHinkleySettings>,
    /// No retrain starts sooner than this after the last one started.
    pub min_gap: Duration,
}

impl Default for Triggers {
    fn default() -> Self {
        use crate::defaults::triggers;
        Triggers {
            every: triggers::EVERY,
            min_rows: triggers::MIN_ROWS,
            psi: triggers::PSI,
            psi_window: triggers::PSI_WINDOW.get(),
            loss_drift: triggers::LOSS_DRIFT.then(PageHinkleySettings::default),
            min_gap: triggers::MIN_GAP,
        }
    }
}

/// When the next retrain may start, as a pure function of the time (`now` is a parameter, so
/// tests need no clock): the rows, time and drift triggers, held back while a retrain or a gate
/// runs and within the minimum gap of the last retrain.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    triggers: Triggers,
    /// When the last retrain started, or the schedule did (for the time trigger).
    last_start: Instant,
    started_any: bool,
}

/// What the schedule is asked about: the state of the retrainer at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Now<'a> {
    /// A retrain or a gate runs.
    pub busy: bool,
    /// Labeled rows stored since the last retrain's cut-off.
    pub new_rows: usize,
    /// The rows trigger's count is reached.
    pub rows_due: bool,
    /// A drift trigger that fired and waits.
    pub fired: Option<&'a Fired>,
}

impl Schedule {
    pub fn new(triggers: Triggers, now: Instant) -> Self {
        Schedule {
            triggers,
            last_start: now,
            started_any: false,
        }
    }

    /// A retrain started at `now`.
    pub fn started(&mut self, now: Instant) {
        self.last_start = now;
        self.started_any = true;
    }

    /// The trigger that calls for a retrain at `now`, if any.
    pub fn due(&self, state: Now<'_>, now: Instant) -> Option<Fired> {
        let t = &self.triggers;
        if state.busy {
            return None;
        }
        let since = now.saturating_duration_since(self.last_start);
        if self.started_any && since < t.min_gap {
            return None;
        }
        let enough = state.new_rows >= t.min_rows.max(1);
        // A drift alarm retrains only with new rows to learn from: a shift that no model can
        // undo would otherwise retrain again and again on the same rows.
        if let Some(f) = state.fired.filter(|_| enough) {
            return Some(f.clone());
        }
        if state.rows_due {
            return Some(Fired::new(
                TriggerKind::Rows,
                format!("{} new labeled rows", state.new_rows),
            ));
        }
        match t.every {
            Some(every) if since >= every && enough => Some(Fired::new(
                TriggerKind::Time,
                format!(
                    "{:.0} s since the last retrain, {} new labeled rows",
                    since.as_secs_f64(),
                    state.new_rows
                ),
            )),
            _ => None,
        }
    }

    /// The next moment after `now` at which [`Self::due`] may change its answer without a new
    /// record: the end of the minimum gap after the last retrain, or of the time trigger's
    /// period.
    pub fn next_look(&self, now: Instant) -> Option<Instant> {
        let t = &self.triggers;
        let gap_end = self.started_any.then(|| self.last_start + t.min_gap);
        let period_end = t.every.map(|every| self.last_start + every);
        gap_end
            .into_iter()
            .chain(period_end)
            .filter(|&at| at > now)
            .min()
    }
}

/// Page-Hinkley settings: the tolerated rise `delta` per observation and the alarm threshold
/// `lambda` on the cumulative rise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageHinkleySettings {
    pub delta: f64,
    pub lambda: f64,
    /// Observations before an alarm may sound.
    pub min_n: u64,
}

impl Default for PageHinkleySettings {
    /// [`crate::defaults::loss_drift`], which says why these values.
    fn default() -> Self {
        use crate::defaults::loss_drift;
        PageHinkleySettings {
            delta: loss_drift::DELTA,
            lambda: loss_drift::LAMBDA,
            min_n: loss_drift::MIN_N,
        }
    }
}

/// The Page-Hinkley test for a rise in the mean of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct PageHinkley {
    settings: PageHinkleySettings,
    n: u64,
    mean: f64,
    cumulative: f64,
    minimum: f64,
}

impl PageHinkley {
    pub fn new(settings: PageHinkleySettings) -> Self {
        PageHinkley {
            settings,
            n: 0,
            mean: 0.0,
            cumulative: 0.0,
            minimum: 0.0,
        }
    }

    /// Adds an observation; returns whether the test now detects a rise.
    pub fn observe(&mut self, x: f64) -> bool {
        self.n += 1;
        self.mean += (x - self.mean) / self.n as f64;
        self.cumulative += x - self.mean - self.settings.delta;
        self.minimum = self.minimum.min(self.cumulative);
        self.alarm()
    }

    /// The cumulative rise above its minimum: the statistic compared with λ.
    pub fn statistic(&self) -> f64 {
        self.cumulative - self.minimum
    }

    pub fn alarm(&self) -> bool {
        self.n >= self.settings.min_n && self.statistic() > self.settings.lambda
    }

    pub fn observations(&self) -> u64 {
        self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Log losses like a good model's: mostly small, sometimes large (mean ≈ 0.28, sd ≈ 0.45).
    fn loss(rng: &mut StdRng, flipped: bool) -> f64 {
        let p_right = if rng.random_bool(0.85) {
            rng.random_range(0.7..0.999)
        } else {
            rng.random_range(0.2..0.7)
        };
        let p: f64 = if flipped { 1.0 - p_right } else { p_right };
        -f64::ln(p.clamp(1e-4, 1.0 - 1e-4))
    }

    #[test]
    fn a_steady_stream_never_alarms_and_flipped_labels_alarm_quickly() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut ph = PageHinkley::new(PageHinkleySettings::default());
            for _ in 0..20_000 {
                assert!(
                    !ph.observe(loss(&mut rng, false)),
                    "seed {seed}: a false alarm"
                );
            }
            let mut after = 0;
            while !ph.observe(loss(&mut rng, true)) {
                after += 1;
                assert!(
                    after < 500,
                    "seed {seed}: no alarm after 500 flipped labels"
                );
            }
            assert!(after < 150, "seed {seed}: {after} rows to alarm");
        }
    }

    fn triggers() -> Triggers {
        Triggers {
            every: Some(Duration::from_secs(60)),
            min_rows: 100,
            min_gap: Duration::from_secs(5),
            ..Triggers::default()
        }
    }

    #[test]
    fn the_schedule_holds_back_while_busy_and_within_the_gap() {
        let t0 = Instant::now();
        let mut s = Schedule::new(triggers(), t0);
        let rows_due = Now {
            new_rows: 1000,
            rows_due: true,
            ..Now::default()
        };
        assert_eq!(s.due(rows_due, t0).unwrap().kind, TriggerKind::Rows);
        assert_eq!(
            s.due(
                Now {
                    busy: true,
                    ..rows_due
                },
                t0
            ),
            None
        );
        s.started(t0);
        let later = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(s.due(rows_due, later(4)), None, "within the minimum gap");
        assert_eq!(s.next_look(later(4)), Some(later(5)));
        assert_eq!(s.due(rows_due, later(5)).unwrap().kind, TriggerKind::Rows);
    }

    #[test]
    fn the_time_trigger_and_a_drift_alarm_need_new_rows() {
        let t0 = Instant::now();
        let s = Schedule::new(triggers(), t0);
        let at = t0 + Duration::from_secs(61);
        let few = Now {
            new_rows: 99,
            ..Now::default()
        };
        assert_eq!(s.due(few, at), None, "time is up, but too few new rows");
        let enough = Now {
            new_rows: 100,
            ..Now::default()
        };
        assert_eq!(s.due(enough, at).unwrap().kind, TriggerKind::Time);
        assert_eq!(s.due(enough, t0), None, "the period has not passed");
        assert_eq!(s.next_look(t0), Some(t0 + Duration::from_secs(60)));

        let alarm = Fired::new(TriggerKind::LossDrift, "Page-Hinkley");
        let drifted = |new_rows| Now {
            new_rows,
            fired: Some(&alarm),
            ..Now::default()
        };
        assert_eq!(s.due(drifted(0), t0), None, "nothing new to learn from");
        assert_eq!(s.due(drifted(100), t0), Some(alarm.clone()));
    }
}
