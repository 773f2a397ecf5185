//! Fresh rows, one at a time: a row of the pool (adult.test by default) drawn at random, its
//! numbers jittered within plausible ranges (its hours worked another's of the same sex and
//! occupation), redrawn if it is the exact copy of any UCI row,
//! then the scenario's drift at this point of the stream, and a label drawn from the
//! [`Reference`]'s probability.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::reference::Reference;
use crate::data::CensusRow;

/// What changes along the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Nothing: rows like adult.test's, labels from the reference.
    Fresh,
    /// Covariate shift: everyone older, by up to 15 years at full drift (capped at 90); the
    /// concept (the reference) stays.
    Ageing,
    /// Label shift: the share of `>50K` moves from the pool's to one half at full drift, each
    /// class's rows staying as they were.
    LabelShift,
    /// Concept drift: being married stops raising the odds of `>50K` (the married and the
    /// others have the same average odds at full drift); who is asked stays the same.
    ConceptDrift,
}

/// A scenario: its kind, how strong its drift gets and how fast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    pub kind: Kind,
    /// The drift at its full, in [0, 1].
    pub strength: f64,
    /// The drift grows linearly from the first row to full at this row, then stays.
    pub ramp_rows: usize,
    pub seed: u64,
}

/// One made row, its label, and the reference's probability of `>50K` for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Made {
    pub row: CensusRow,
    pub label: bool,
    pub probability: f64,
}

/// What the best possible model would score on the rows made so far: it knows each row's
/// probability, so its expected accuracy is the mean of `max(p, 1 − p)` and its expected log
/// loss the mean binary entropy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ceiling {
    pub rows: usize,
    accuracy_sum: f64,
    log_loss_sum: f64,
}

impl Ceiling {
    fn add(&mut self, p: f64) {
        let p = p.clamp(1e-15, 1.0 - 1e-15);
        self.rows += 1;
        self.accuracy_sum += p.max(1.0 - p);
        self.log_loss_sum += -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
    }

    pub fn accuracy(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.accuracy_sum / self.rows as f64)
    }

    pub fn log_loss(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.log_loss_sum / self.rows as f64)
    }
}

/// Tries at a row that is no copy of a UCI row, or at a label of the wanted class, before the
/// generator takes what it has (never seen in practice: the weight alone is jittered).
const MAX_TRIES: usize = 1_000;

#[derive(Debug)]
pub struct Generator {
    pool: Vec<CensusRow>,
    reference: Arc<Reference>,
    /// Hours worked of the pool's rows, by sex and occupation: a made row's hours are another
    /// such row's (hot-deck), so that their distribution, spikes at 40 and 50 included, stays.
    hours: HashMap<(String, String), Vec<f64>>,
    /// Hashes of every UCI row's features: a made row is never one of them.
    known: HashSet<u64>,
    scenario: Scenario,
    /// The pool's share of `>50K` under the reference: where a label shift starts.
    base_positive: f64,
    rng: StdRng,
    made: usize,
    pub ceiling: Ceiling,
}

impl Generator {
    /// A generator drawing from `pool`, never making a copy of a row of `known`.
    pub fn new(
        pool: Vec<CensusRow>,
        known: &[CensusRow],
        reference: Arc<Reference>,
        scenario: Scenario,
    ) -> Self {
        assert!(!pool.is_empty(), "a pool of rows to draw from");
        let base_positive =
            pool.iter().map(|r| reference.probability(r)).sum::<f64>() / pool.len() as f64;
        let mut hours: HashMap<(String, String), Vec<f64>> = HashMap::new();
        for r in &pool {
            hours
                .entry((r.sex.clone(), r.occupation.clone()))
                .or_default()
                .push(r.hours_per_week);
        }
        Generator {
            hours,
            known: known
                .iter()
                .chain(&pool)
                .map(CensusRow::features_key)
                .collect(),
            pool,
            reference,
            scenario,
            base_positive,
            rng: StdRng::seed_from_u64(scenario.seed),
            made: 0,
            ceiling: Ceiling::default(),
        }
    }

    /// Rows in the pool made rows are drawn from.
    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// The drift at row `i` (from 0), in [0, strength].
    pub fn drift_at(&self, i: usize) -> f64 {
        let ramp = (i as f64 / self.scenario.ramp_rows.max(1) as f64).min(1.0);
        self.scenario.strength * ramp
    }

    /// The next row.
    pub fn next_row(&mut self) -> Made {
        let drift = self.drift_at(self.made);
        self.made += 1;
        let made = match self.scenario.kind {
            Kind::LabelShift => {
                let share = self.base_positive + drift * (0.5 - self.base_positive);
                let wanted = self.rng.random::<f64>() < share;
                let mut made = self.draw(0.0, 0.0);
                for _ in 1..MAX_TRIES {
                    if made.label == wanted {
                        break;
                    }
                    made = self.draw(0.0, 0.0);
                }
                made
            }
            Kind::Ageing => self.draw(15.0 * drift, 0.0),
            Kind::ConceptDrift => self.draw(0.0, drift),
            Kind::Fresh => self.draw(0.0, 0.0),
        };
        self.ceiling.add(made.probability);
        made
    }

    /// A jittered row, `older` years added to its age, labelled with `faded` of the marriage gap taken out.
    fn draw(&mut self, older: f64, faded: f64) -> Made {
        let row = self.jittered(older);
        self.labelled(row, faded)
    }

    /// The row's label, drawn from the reference with `faded` of the marriage gap taken out.
    fn labelled(&mut self, row: CensusRow, faded: f64) -> Made {
        let probability = self.reference.probability_faded(&row, faded);
        Made {
            label: self.rng.random::<f64>() < probability,
            row,
            probability,
        }
    }

    /// A pool row with its numbers jittered, `older` years added to its age: never a copy of
    /// a known row.
    fn jittered(&mut self, older: f64) -> CensusRow {
        let mut row = self.jitter_once(older);
        for _ in 1..MAX_TRIES {
            if !self.known.contains(&row.features_key()) {
                break;
            }
            row = self.jitter_once(older);
        }
        row
    }

    fn jitter_once(&mut self, older: f64) -> CensusRow {
        let mut row = self.pool[self.rng.random_range(0..self.pool.len())].clone();
        let normal = |sd: f64| Normal::new(0.0, sd).expect("a positive deviation");
        let years = normal(2.0).sample(&mut self.rng);
        row.age = (row.age + years + older).round().clamp(17.0, 90.0);
        let like = &self.hours[&(row.sex.clone(), row.occupation.clone())];
        row.hours_per_week = like[self.rng.random_range(0..like.len())];
        let weight = normal(0.1).sample(&mut self.rng).exp();
        row.fnlwgt = (row.fnlwgt * weight).round().max(1.0);
        for money in [&mut row.capital_gain, &mut row.capital_loss] {
            if *money > 0.0 {
                let f = normal(0.05).sample(&mut self.rng).exp();
                *money = (*money * f).round();
            }
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(kind: Kind, strength: f64) -> Generator {
        let adult = super::super::reference::tests::adult();
        let known: Vec<CensusRow> = adult.train.iter().map(|r| r.row.clone()).collect();
        let pool = adult.test.iter().map(|r| r.row.clone()).collect();
        Generator::new(
            pool,
            &known,
            super::super::reference::tests::reference(),
            Scenario {
                kind,
                strength,
                ramp_rows: 1,
                seed: 7,
            },
        )
    }

    fn made(g: &mut Generator, n: usize) -> Vec<Made> {
        (0..n).map(|_| g.next_row()).collect()
    }

    #[test]
    fn fresh_rows_are_never_uci_rows_and_their_labels_follow_the_reference() {
        let mut g = generator(Kind::Fresh, 0.0);
        let rows = made(&mut g, 5_000);
        assert!(rows
            .iter()
            .all(|m| !g.known.contains(&m.row.features_key())));
        assert!(rows.iter().all(|m| m.row.validate().is_ok()));
        let distinct: HashSet<u64> = rows.iter().map(|m| m.row.features_key()).collect();
        assert_eq!(distinct.len(), rows.len(), "no row twice");
        // Labels are drawn from the probability: the share of >50K matches its mean.
        let share = rows.iter().filter(|m| m.label).count() as f64 / 5_000.0;
        let mean_p = rows.iter().map(|m| m.probability).sum::<f64>() / 5_000.0;
        assert!((share - mean_p).abs() < 0.025, "{share} vs {mean_p}");
        let ceiling = g.ceiling.accuracy().unwrap();
        assert!((0.75..0.95).contains(&ceiling), "{ceiling}");
        assert_eq!(g.ceiling.rows, 5_000);
    }

    #[test]
    fn each_drift_moves_what_it_names_and_nothing_else() {
        let n = 4_000;
        let mean = |rows: &[Made], f: &dyn Fn(&Made) -> f64| {
            rows.iter().map(f).sum::<f64>() / rows.len() as f64
        };
        let age = |m: &Made| m.row.age;
        let positive = |m: &Made| f64::from(u8::from(m.label));
        let fresh = made(&mut generator(Kind::Fresh, 0.0), n);

        let aged = made(&mut generator(Kind::Ageing, 1.0), n);
        assert!(mean(&aged, &age) - mean(&fresh, &age) > 10.0, "older");

        let shifted = made(&mut generator(Kind::LabelShift, 1.0), n);
        assert!((mean(&shifted, &positive) - 0.5).abs() < 0.03, "half >50K");
        assert!((mean(&shifted, &age) - mean(&fresh, &age)).abs() > 1.0);

        // Concept drift: the same people, other labels; married people lose their edge.
        let drifted = made(&mut generator(Kind::ConceptDrift, 1.0), n);
        assert!(
            (mean(&drifted, &age) - mean(&fresh, &age)).abs() < 1.0,
            "same people"
        );
        let share_of = |rows: &[Made], married: bool| {
            let m: Vec<&Made> = rows
                .iter()
                .filter(|m| (m.row.marital_status == "Married-civ-spouse") == married)
                .collect();
            m.iter().filter(|m| m.label).count() as f64 / m.len() as f64
        };
        let (before, after) = (share_of(&fresh, true), share_of(&drifted, true));
        assert!(before - after > 0.1, "married: {before} then {after}");
        let (before, after) = (share_of(&fresh, false), share_of(&drifted, false));
        assert!(after - before > 0.05, "not married: {before} then {after}");
    }

    /// The largest PSI over the features of `rows` (windows of 2,000, as the retrainer's), against
    /// adult.data, and the feature it is on.
    fn worst_psi(rows: &[Made]) -> (f64, usize) {
        use crate::features::{DriftWindow, FeatureProcessor};
        let adult = super::super::reference::tests::adult();
        let processor = FeatureProcessor::fit(adult.train.iter().map(|r| &r.row));
        let mut worst = (0.0, 0);
        for chunk in rows.chunks(2_000) {
            let mut window = DriftWindow::new(processor.drift_reference());
            for m in chunk {
                window.add(&processor.transform(&m.row));
            }
            let psi = processor.drift_reference().psi(&window);
            for (j, &v) in psi.iter().enumerate() {
                if v > worst.0 {
                    worst = (v, j);
                }
            }
        }
        worst
    }

    #[test]
    fn fresh_rows_do_not_drift_and_aged_ones_do_on_age() {
        // adult.test itself against adult.data reads about 0.01 at most.
        let (psi, feature) = worst_psi(&made(&mut generator(Kind::Fresh, 0.0), 6_000));
        assert!(
            psi < 0.05,
            "fresh rows drift: PSI {psi} on feature {feature}"
        );
        let (psi, feature) = worst_psi(&made(&mut generator(Kind::Ageing, 1.0), 6_000));
        assert!(psi > 0.25, "aged rows: PSI {psi}");
        assert_eq!(feature, 0, "age is the first feature");
    }

    #[test]
    fn the_drift_ramps_to_its_strength_and_stays() {
        let mut g = generator(Kind::Ageing, 0.5);
        g.scenario.ramp_rows = 100;
        assert_eq!(g.drift_at(0), 0.0);
        assert_eq!(g.drift_at(50), 0.25);
        assert_eq!(g.drift_at(100), 0.5);
        assert_eq!(g.drift_at(10_000), 0.5);
    }

    #[test]
    fn the_same_seed_makes_the_same_rows() {
        let a = made(&mut generator(Kind::ConceptDrift, 1.0), 50);
        let b = made(&mut generator(Kind::ConceptDrift, 1.0), 50);
        assert_eq!(a, b);
    }
}
