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

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which trigger fired, and on what figures (recorded in the new version's manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fired {
    /// `rows`, `time`, `feature_drift` or `loss_drift`.
    pub kind: String,
    pub figures: String,
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
        Triggers {
            every: None,
            min_rows: 100,
            psi: Some(0.25),
            psi_window: 2000,
            loss_drift: Some(PageHinkleySettings::default()),
            min_gap: Duration::from_secs(5),
        }
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
    /// Per-row log losses of a good model on this data have a mean near 0.28 and a standard
    /// deviation near 0.45: with δ = 0.05 and λ = 100 a steady stream practically never alarms
    /// (the chance that a walk with drift −0.05 and step deviation 0.45 ever climbs 100 is about
    /// e^(−2·0.05·100/0.45²) ≈ 1e-22), while flipped labels (losses near 2) alarm within about
    /// 60 rows.
    fn default() -> Self {
        PageHinkleySettings {
            delta: 0.05,
            lambda: 100.0,
            min_n: 100,
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
}
