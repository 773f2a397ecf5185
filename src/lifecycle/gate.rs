//! The gate between a challenger and the champion: a sequential test on the paired difference
//! of their log losses on the same labeled requests, d = ℓ(challenger) − ℓ(champion), valid
//! however often it looks.
//!
//! The d's are grouped in batches of `batch` consecutive requests, and the batch means (nearly
//! independent even when neighbouring requests are alike) are treated as normal with the
//! variance estimated from them. Around their mean runs a normal-mixture confidence sequence
//! (the interval of Robbins' mixture sequential probability ratio test, mixing variance
//! τ² = s²/m₀): with probability at least 1 − α it holds the true mean at every look at once.
//! The challenger is promoted when the whole interval lies below −δ (better by more than δ),
//! rejected when it lies above −δ (it cannot be better by δ), and rejected when `max_labels`
//! pass with neither.

use serde::{Deserialize, Serialize};

use super::Evidence;

/// Probabilities are clipped to [EPS, 1 − EPS] before their log loss is taken.
pub const EPS: f64 = 1e-4;

/// Log loss of probability `p` of `>50K` for the true label, `p` clipped.
pub fn log_loss(p: f64, label: bool) -> f64 {
    let p = p.clamp(EPS, 1.0 - EPS);
    if label {
        -p.ln()
    } else {
        -(1.0 - p).ln()
    }
}

/// The gate's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GateSettings {
    /// Error rate of each decision, however often the gate looks.
    pub alpha: f64,
    /// The margin: promote only a challenger better by more than this (mean log loss).
    pub delta: f64,
    /// Labeled requests before any decision.
    pub min_labels: u64,
    /// Labeled requests after which an undecided challenger is rejected.
    pub max_labels: u64,
    /// Requests per batch mean.
    pub batch: u64,
    /// Batches at which the interval is tightest (the mixture's m₀).
    pub tuned_batches: f64,
    /// The fairness margin ε: a challenger that widens the gap in true- or false-positive rate
    /// between groups by more than this, with confidence, is rejected
    /// ([`super::fairness`]).
    #[serde(default = "default_fairness_delta")]
    pub fairness_delta: f64,
}

fn default_fairness_delta() -> f64 {
    crate::defaults::gate::FAIRNESS_DELTA
}

impl Default for GateSettings {
    fn default() -> Self {
        use crate::defaults::gate;
        GateSettings {
            alpha: gate::ALPHA,
            delta: gate::DELTA,
            min_labels: gate::MIN_LABELS,
            max_labels: gate::MAX_LABELS,
            batch: gate::BATCH,
            tuned_batches: gate::TUNED_BATCHES,
            fairness_delta: gate::FAIRNESS_DELTA,
        }
    }
}

/// What the gate says now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not enough evidence either way yet.
    Continue,
    /// The challenger is better by more than δ.
    Promote,
    /// The challenger cannot be better by δ (or `max_labels` passed undecided).
    Reject { undecided: bool },
    /// The fairness condition decides against the side it checks: the challenger widens a gap
    /// between groups by more than ε (or, on probation, the champion does against the former
    /// champion), however the losses compare.
    Unfair,
}

/// The running test.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    settings: GateSettings,
    /// Labeled requests seen.
    n: u64,
    sum_d: f64,
    /// The batch being filled.
    open: (u64, f64),
    /// Closed batches: count, sum and sum of squares of their means.
    batches: u64,
    sum_means: f64,
    sum_sq_means: f64,
}

impl Gate {
    pub fn new(settings: GateSettings) -> Self {
        Gate {
            settings,
            n: 0,
            sum_d: 0.0,
            open: (0, 0.0),
            batches: 0,
            sum_means: 0.0,
            sum_sq_means: 0.0,
        }
    }

    pub fn settings(&self) -> &GateSettings {
        &self.settings
    }

    /// Adds one labeled request scored by both: `challenger` and `champion` are their
    /// probabilities of `>50K`.
    pub fn observe(&mut self, challenger: f64, champion: f64, label: bool) {
        self.observe_d(log_loss(challenger, label) - log_loss(champion, label));
    }

    /// Adds one paired difference d = ℓ(challenger) − ℓ(champion).
    pub fn observe_d(&mut self, d: f64) {
        self.n += 1;
        self.sum_d += d;
        self.open.0 += 1;
        self.open.1 += d;
        if self.open.0 == self.settings.batch {
            let mean = self.open.1 / self.open.0 as f64;
            self.batches += 1;
            self.sum_means += mean;
            self.sum_sq_means += mean * mean;
            self.open = (0, 0.0);
        }
    }

    pub fn labels(&self) -> u64 {
        self.n
    }

    /// The always-valid interval for the mean of d, over the closed batches; `None` before two.
    pub fn interval(&self) -> Option<[f64; 2]> {
        let (mean, var) = self.batch_moments()?;
        let half = self.half_width(var);
        Some([mean - half, mean + half])
    }

    /// Mean and variance of the closed batches' means.
    fn batch_moments(&self) -> Option<(f64, f64)> {
        if self.batches < 2 {
            return None;
        }
        let m = self.batches as f64;
        let mean = self.sum_means / m;
        let var = ((self.sum_sq_means - m * mean * mean) / (m - 1.0)).max(1e-12);
        Some((mean, var))
    }

    /// Half-width of the mixture interval after `batches` batch means of variance `var`.
    fn half_width(&self, var: f64) -> f64 {
        let m = self.batches as f64;
        let r = 1.0 / self.settings.tuned_batches; // τ² = r · var
        let growth = 1.0 + m * r;
        let level = (1.0 / self.settings.alpha).ln() + 0.5 * growth.ln();
        (2.0 * var * growth / (m * m * r) * level).sqrt()
    }

    /// Log of the mixture likelihood ratio against "the mean of d is −δ" (the challenger is
    /// better by exactly the margin): large when the data are far from it either way.
    pub fn statistic(&self) -> Option<f64> {
        let (mean, var) = self.batch_moments()?;
        let m = self.batches as f64;
        let tau2 = var / self.settings.tuned_batches;
        let shift = mean + self.settings.delta;
        Some(
            0.5 * (var / (var + m * tau2)).ln()
                + m * m * tau2 * shift * shift / (2.0 * var * (var + m * tau2)),
        )
    }

    pub fn decision(&self) -> Decision {
        let s = &self.settings;
        if self.n < s.min_labels {
            return Decision::Continue;
        }
        if let Some([lo, hi]) = self.interval() {
            if hi < -s.delta {
                return Decision::Promote;
            }
            if lo > -s.delta {
                return Decision::Reject { undecided: false };
            }
        }
        if self.n >= s.max_labels {
            return Decision::Reject { undecided: true };
        }
        Decision::Continue
    }

    /// The figures of the test now, as an alias record carries them.
    pub fn evidence(&self) -> Evidence {
        Evidence {
            n: self.n,
            mean_d: if self.n > 0 {
                self.sum_d / self.n as f64
            } else {
                0.0
            },
            // Before two batches nothing is known; JSON has no infinities.
            interval: self.interval().unwrap_or([f64::MIN, f64::MAX]),
            statistic: self.statistic().unwrap_or(0.0),
            alpha: self.settings.alpha,
            delta: self.settings.delta,
            fairness: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A stream of d's like those of two LightGBM models on adult.test (standard deviation
    /// 0.14, heavy tails: a tenth of the requests spread three times wider), with neighbouring
    /// requests correlated (AR(1), φ = 0.3), around `mean`.
    struct Ds {
        rng: StdRng,
        mean: f64,
        carry: f64,
    }

    impl Ds {
        fn new(seed: u64, mean: f64) -> Self {
            Ds {
                rng: StdRng::seed_from_u64(seed),
                mean,
                carry: 0.0,
            }
        }

        fn normal(&mut self) -> f64 {
            // Box-Muller.
            let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = self.rng.random();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }

        fn next(&mut self) -> f64 {
            let wide = self.rng.random_bool(0.1);
            let e = self.normal() * if wide { 0.42 } else { 0.06 };
            let phi: f64 = 0.3;
            self.carry = phi * self.carry + (1.0 - phi * phi).sqrt() * e;
            self.mean + self.carry
        }
    }

    /// Runs the gate on `runs` seeded streams; returns (promoted, rejected, labels used) counts.
    fn simulate(mean: f64, runs: u64, settings: GateSettings) -> (u64, u64, Vec<u64>) {
        let (mut promoted, mut rejected, mut used) = (0, 0, Vec::new());
        for seed in 0..runs {
            let mut ds = Ds::new(seed, mean);
            let mut gate = Gate::new(settings);
            loop {
                gate.observe_d(ds.next());
                match gate.decision() {
                    Decision::Continue => continue,
                    Decision::Promote => promoted += 1,
                    Decision::Reject { .. } | Decision::Unfair => rejected += 1,
                }
                used.push(gate.labels());
                break;
            }
        }
        (promoted, rejected, used)
    }

    #[test]
    fn the_simulated_stream_has_the_spread_of_real_model_pairs() {
        let mut ds = Ds::new(1, 0.0);
        let v: Vec<f64> = (0..200_000).map(|_| ds.next()).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!((0.13..0.16).contains(&sd), "{sd}");
        assert!(mean.abs() < 0.002, "{mean}");
    }

    #[test]
    fn equal_models_are_promoted_in_at_most_alpha_of_runs() {
        let s = GateSettings::default();
        let (promoted, rejected, _) = simulate(0.0, 1000, s);
        assert_eq!(promoted + rejected, 1000);
        let rate = promoted as f64 / 1000.0;
        eprintln!("equal models: promoted in {rate:.3} of runs");
        assert!(rate <= s.alpha, "{rate}");
    }

    #[test]
    fn a_model_better_by_exactly_the_margin_is_promoted_in_at_most_alpha_of_runs() {
        // The hardest null: the challenger is better, but not by more than δ.
        let s = GateSettings::default();
        let (promoted, _, _) = simulate(-s.delta, 1000, s);
        let rate = promoted as f64 / 1000.0;
        eprintln!("better by exactly δ: promoted in {rate:.3} of runs");
        assert!(rate <= s.alpha, "{rate}");
    }

    #[test]
    fn a_model_better_by_twice_the_margin_is_promoted_in_80_percent_of_runs() {
        let s = GateSettings::default();
        let (promoted, _, used) = simulate(-2.0 * s.delta, 1000, s);
        let rate = promoted as f64 / 1000.0;
        let mut used = used;
        used.sort_unstable();
        eprintln!(
            "better by 2δ: promoted in {rate:.3} of runs, labels used: median {}, p90 {}",
            used[used.len() / 2],
            used[used.len() * 9 / 10]
        );
        assert!(rate >= 0.8, "{rate}");
    }

    #[test]
    fn a_worse_model_is_rejected_and_never_promoted() {
        let s = GateSettings::default();
        let (promoted, rejected, used) = simulate(0.05, 300, s);
        assert_eq!((promoted, rejected), (0, 300));
        assert!(
            used.iter().all(|&n| n < s.max_labels),
            "decided before n_max"
        );
    }

    #[test]
    fn log_losses_are_clipped() {
        assert!((log_loss(0.0, true) - (-(EPS.ln()))).abs() < 1e-12);
        assert!((log_loss(1.0, true)).abs() < 1e-3);
        assert!((log_loss(0.5, false) - 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn nothing_is_decided_before_the_minimum_sample() {
        let mut gate = Gate::new(GateSettings::default());
        for _ in 0..199 {
            gate.observe(0.99, 0.01, true); // challenger far better
        }
        assert_eq!(gate.decision(), Decision::Continue);
        gate.observe(0.99, 0.01, true);
        assert_eq!(gate.decision(), Decision::Promote);
        let e = gate.evidence();
        assert_eq!(e.n, 200);
        assert!(e.mean_d < -4.0 && e.interval[1] < -e.delta, "{e:?}");
    }
}
