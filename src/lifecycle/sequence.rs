//! An anytime-valid confidence sequence for the mean of bounded values, such as a rate (values
//! 0 or 1) or the difference of two models' answers on the same row (−1, 0 or 1): the
//! predictable plug-in empirical-Bernstein sequence of Waudby-Smith and Ramdas ("Estimating
//! means of bounded random variables by betting", 2023, theorem 2). With probability at least
//! 1 − α it holds the true mean at every count at once, whatever the distribution within the
//! bounds — it needs no normal approximation, which a rate near 0 or 1 in a group of a few dozen
//! rows would not bear — and it narrows with the values' observed spread, so that two models
//! that mostly agree give a tight interval for the mean of their difference.

/// The sequence's running sums (values mapped to [0, 1]).
#[derive(Debug, Clone, PartialEq)]
pub struct MeanSequence {
    alpha: f64,
    /// The values' bounds: x in [low, low + width].
    low: f64,
    width: f64,
    n: u64,
    sum: f64,
    /// Σ (yᵢ − μ̂ᵢ)², μ̂ᵢ the regularised mean after i values.
    sum_sq_dev: f64,
    sum_lambda: f64,
    sum_lambda_y: f64,
    /// Σ vᵢ ψ(λᵢ).
    sum_penalty: f64,
}

/// The largest bet: the paper's c = 1/2.
const MAX_LAMBDA: f64 = 0.5;

impl MeanSequence {
    /// A sequence for values in [low, high], at error rate `alpha`.
    pub fn new(alpha: f64, low: f64, high: f64) -> Self {
        assert!(high > low && alpha > 0.0 && alpha < 1.0);
        MeanSequence {
            alpha,
            low,
            width: high - low,
            n: 0,
            sum: 0.0,
            sum_sq_dev: 0.0,
            sum_lambda: 0.0,
            sum_lambda_y: 0.0,
            sum_penalty: 0.0,
        }
    }

    /// Values seen.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The plain mean of the values seen (`None` before any).
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.low + self.width * self.sum / self.n as f64)
    }

    /// Adds a value (clamped to the bounds).
    pub fn push(&mut self, x: f64) {
        let y = ((x - self.low) / self.width).clamp(0.0, 1.0);
        let t = (self.n + 1) as f64;
        // The mean and variance estimates before this value (μ̂₀ = 1/2, σ̂₀² = 1/4).
        let mean_before = (0.5 + self.sum) / t;
        let var_before = (0.25 + self.sum_sq_dev) / t;
        let lambda = ((2.0 * (2.0 / self.alpha).ln()) / (var_before * t * (1.0 + t).ln()))
            .sqrt()
            .min(MAX_LAMBDA);
        let v = 4.0 * (y - mean_before).powi(2);
        let psi = (-(1.0 - lambda).ln() - lambda) / 4.0;
        self.sum_lambda += lambda;
        self.sum_lambda_y += lambda * y;
        self.sum_penalty += v * psi;
        self.n += 1;
        self.sum += y;
        let mean_now = (0.5 + self.sum) / (t + 1.0);
        self.sum_sq_dev += (y - mean_now).powi(2);
    }

    /// The interval for the mean now, within the bounds; the whole range before any value.
    pub fn interval(&self) -> [f64; 2] {
        if self.n == 0 {
            return [self.low, self.low + self.width];
        }
        let centre = self.sum_lambda_y / self.sum_lambda;
        let half = ((2.0 / self.alpha).ln() + self.sum_penalty) / self.sum_lambda;
        let lo = (centre - half).max(0.0);
        let hi = (centre + half).min(1.0);
        [self.low + self.width * lo, self.low + self.width * hi]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_interval_holds_the_mean_at_every_count_in_all_but_alpha_of_runs() {
        // 400 runs of 2,000 coin flips (p = 0.1, a rate in a small group): count the runs in
        // which the interval ever missed p.
        let (alpha, p, runs) = (0.05, 0.1, 400);
        let mut missed = 0;
        for seed in 0..runs {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut s = MeanSequence::new(alpha, 0.0, 1.0);
            let mut ever = false;
            for _ in 0..2_000 {
                s.push(f64::from(u8::from(rng.random_bool(p))));
                let [lo, hi] = s.interval();
                ever |= !(lo..=hi).contains(&p);
            }
            missed += u64::from(ever);
        }
        let rate = missed as f64 / runs as f64;
        eprintln!("missed the mean at some count in {rate:.3} of runs");
        assert!(rate <= alpha, "{rate}");
    }

    #[test]
    fn it_narrows_with_more_values_and_with_less_spread() {
        let mut rng = StdRng::seed_from_u64(1);
        let width = |n: usize, p: f64, rng: &mut StdRng| {
            let mut s = MeanSequence::new(0.05, -1.0, 1.0);
            for _ in 0..n {
                s.push(f64::from(u8::from(rng.random_bool(p))));
            }
            let [lo, hi] = s.interval();
            hi - lo
        };
        let (few, many) = (width(100, 0.5, &mut rng), width(10_000, 0.5, &mut rng));
        assert!(many < few / 5.0, "{few} {many}");
        // Values that are mostly 0 (two models that mostly agree) give a narrower interval.
        let (spread, agreed) = (width(1_000, 0.5, &mut rng), width(1_000, 0.02, &mut rng));
        assert!(agreed < spread / 2.0, "{spread} {agreed}");
        assert_eq!(MeanSequence::new(0.05, -1.0, 1.0).interval(), [-1.0, 1.0]);
    }
}
