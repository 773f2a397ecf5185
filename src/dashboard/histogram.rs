//! A latency histogram with fixed logarithmic bins: cheap to fill at any rate, to merge over a
//! window of seconds, and to read quantiles from (each within one bin, 12 % wide).

/// Upper edge of the first bin, in milliseconds.
const FIRST_MS: f64 = 0.25;
/// Each bin is this much wider than the one before.
const GROWTH: f64 = 1.12;
/// 0.25 ms × 1.12^127 ≈ 7 minutes: anything slower lands in the last bin.
const BINS: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    counts: Vec<u32>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BINS],
            total: 0,
        }
    }
}

fn upper_edge(bin: usize) -> f64 {
    FIRST_MS * GROWTH.powi(bin as i32)
}

impl Histogram {
    pub fn add(&mut self, ms: f64) {
        let bin = if ms <= FIRST_MS {
            0
        } else {
            ((ms / FIRST_MS).ln() / GROWTH.ln()).ceil() as usize
        };
        self.counts[bin.min(BINS - 1)] += 1;
        self.total += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The upper edge of the bin holding the `q` quantile, `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bin, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(upper_edge(bin));
            }
        }
        Some(upper_edge(BINS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_within_one_bin_of_the_truth() {
        let mut h = Histogram::default();
        for i in 1..=1000 {
            h.add(i as f64 / 10.0); // 0.1 .. 100 ms
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((50.0..50.0 * GROWTH).contains(&p50), "p50 {p50}");
        assert!((99.0..99.0 * GROWTH).contains(&p99), "p99 {p99}");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn merging_adds_the_counts() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.add(1.0);
        b.add(1000.0);
        b.add(1e12);
        a.merge(&b);
        assert_eq!(a.total, 3);
        assert!(a.quantile(1.0).unwrap() > 1e5);
        assert!(a.quantile(0.3).unwrap() < 1.2);
    }
}
