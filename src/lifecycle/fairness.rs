//! The gate's fairness condition: does the challenger widen the gap between two groups (women
//! and men) in the rate at which it says `>50K` to those who earn it (the true-positive rate)
//! or to those who do not (the false-positive rate)? Equalized odds asks both gaps to be zero;
//! Fairlearn's equalized-odds difference is the larger of the two.
//!
//! The condition is taken per rate, not on the larger of the two: a challenger that widens the
//! true-positive gap by ten points while the champion's false-positive gap happens to be wider
//! still would pass a test on the maximum, yet it treats the group worse. Per rate it is
//! stricter, and it can be tested tightly, because the two models answer on the same rows.
//!
//! For each group g and true label, three confidence sequences ([`MeanSequence`]) run over the
//! rows: the challenger's answers, the champion's, and their difference row by row (mostly 0,
//! so narrow). All hold at once with probability at least 1 − α (each at α over their number).
//! From them, the change in the gap's size |gap(challenger)| − |gap(champion)| is bounded
//! jointly: the champion's gap x, the paired change d and the challenger's gap x + d each lie
//! in their intervals, and the bounds are the least and greatest |x + d| − |x| over them. The
//! paired change is narrow, so the bound is tight where the champion's gap has a known sign,
//! and still useful where it has not. The challenger is found unfair when the lower bound
//! exceeds ε: it widens a gap by more than ε, with confidence, at any look.

use serde::{Deserialize, Serialize};

use super::sequence::MeanSequence;
use crate::data::CensusRow;

/// The two rates equalized odds compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// `>50K` said to those who earn more than 50K.
    TruePositive,
    /// `>50K` said to those who do not.
    FalsePositive,
}

impl Rate {
    const ALL: [Rate; 2] = [Rate::TruePositive, Rate::FalsePositive];

    fn label(self) -> bool {
        self == Rate::TruePositive
    }

    pub fn name(self) -> &'static str {
        match self {
            Rate::TruePositive => "true-positive rate",
            Rate::FalsePositive => "false-positive rate",
        }
    }
}

/// The two groups the gate compares: the values of `sex`.
pub use super::groups::SEXES as GROUPS;
pub const ATTRIBUTE: &str = "sex";

/// Which of [`GROUPS`] a row is in.
fn group_of(row: &CensusRow) -> Option<usize> {
    GROUPS.iter().position(|g| *g == row.sex)
}

/// One group's rows of one true label: the challenger's answers, the champion's, and their
/// difference.
#[derive(Debug, Clone, PartialEq)]
struct Cell {
    challenger: MeanSequence,
    champion: MeanSequence,
    difference: MeanSequence,
}

impl Cell {
    fn new(alpha: f64) -> Self {
        Cell {
            challenger: MeanSequence::new(alpha, 0.0, 1.0),
            champion: MeanSequence::new(alpha, 0.0, 1.0),
            difference: MeanSequence::new(alpha, -1.0, 1.0),
        }
    }

    fn push(&mut self, challenger: bool, champion: bool) {
        let (c, p) = (
            f64::from(u8::from(challenger)),
            f64::from(u8::from(champion)),
        );
        self.challenger.push(c);
        self.champion.push(p);
        self.difference.push(c - p);
    }
}

/// The interval of a − b from intervals of a and b.
fn minus([a0, a1]: [f64; 2], [b0, b1]: [f64; 2]) -> [f64; 2] {
    [a0 - b1, a1 - b0]
}

/// The least and greatest |x + d| − |x| (how much a gap x widens when it changes by d) over
/// x in `gap`, d in `change` and x + d in `changed`: all three hold at once, and bounding them
/// jointly uses the tight paired change `d` even where the sign of `x` is not known. The
/// function is piecewise linear in x once d is at its best, with breaks only where x or x + d
/// meets 0 or a bound switches: the extremes are at those points.
fn widening(gap: [f64; 2], change: [f64; 2], changed: [f64; 2]) -> [f64; 2] {
    let ([xl, xh], [dl, dh], [cl, ch]) = (gap, change, changed);
    let candidates = [xl, xh, 0.0, -dl, -dh, cl - dl, ch - dh, cl - dh, ch - dl];
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in candidates.into_iter().filter(|x| (xl..=xh).contains(x)) {
        // d's range for this x.
        let (a, b) = (dl.max(cl - x), dh.min(ch - x));
        if a > b {
            continue;
        }
        let f = |d: f64| (x + d).abs() - x.abs();
        lo = lo.min(f((-x).clamp(a, b)));
        hi = hi.max(f(a).max(f(b)));
    }
    if lo.is_finite() {
        [lo, hi]
    } else {
        // The intervals disagree (a sequence missed, as it may in α of runs): the plain bounds.
        let size = |[l, h]: [f64; 2]| {
            let top = l.abs().max(h.abs());
            [
                if l > 0.0 {
                    l
                } else if h < 0.0 {
                    -h
                } else {
                    0.0
                },
                top,
            ]
        };
        let (of, against) = (size(changed), size(gap));
        [of[0] - against[1], of[1] - against[0]]
    }
}

/// What the test says of one rate's gap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapEvidence {
    /// `sex`.
    pub attribute: String,
    /// The groups, the gap being the first's rate minus the second's.
    pub groups: [String; 2],
    /// `true-positive rate` or `false-positive rate`.
    pub rate: String,
    /// Rows of each group with the true label the rate is over.
    pub rows: [u64; 2],
    /// The model whose gap is checked: `challenger`, or on probation `champion` (against the
    /// former champion).
    pub checked: String,
    /// The gaps now (point estimates): of the model checked, and of the one it is compared with.
    pub gap: f64,
    pub reference_gap: f64,
    /// Always-valid interval for |gap| − |reference gap|.
    pub interval: [f64; 2],
    pub epsilon: f64,
    /// The interval lies above ε: the gap widened by more than ε, with confidence.
    pub widened: bool,
}

#[cfg(test)]
impl GapEvidence {
    /// A challenger's true-positive gap between the sexes, 0.26 against 0.06, its widening in
    /// `interval`, at ε 0.05.
    pub(crate) fn example(interval: [f64; 2]) -> Self {
        GapEvidence {
            attribute: ATTRIBUTE.into(),
            groups: GROUPS.map(str::to_owned),
            rate: Rate::TruePositive.name().into(),
            rows: [2_800, 590],
            checked: "challenger".into(),
            gap: 0.26,
            reference_gap: 0.06,
            interval,
            epsilon: 0.05,
            widened: interval[0] > 0.05,
        }
    }
}

impl std::fmt::Display for GapEvidence {
    /// `true-positive rate gap between sex (Male − Female): challenger 0.412 against 0.061,
    /// widened by +0.351 [+0.210, +0.490] on 262 and 61 rows (ε 0.05)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} gap between {} ({} − {}): {} {:.3} against {:.3}, widened by {:+.3} [{:+.3}, \
             {:+.3}] on {} and {} rows (ε {})",
            self.rate,
            self.attribute,
            self.groups[0],
            self.groups[1],
            self.checked,
            self.gap,
            self.reference_gap,
            self.gap.abs() - self.reference_gap.abs(),
            self.interval[0],
            self.interval[1],
            self.rows[0],
            self.rows[1],
            self.epsilon
        )
    }
}

/// The running fairness test of a challenger against the champion on the same labeled rows.
#[derive(Debug, Clone, PartialEq)]
pub struct FairnessTest {
    epsilon: f64,
    /// Per rate, per group.
    cells: [[Cell; 2]; 2],
}

/// Sequences in the test: 2 rates × 2 groups × 3; each runs at α over their number.
const SEQUENCES: f64 = 12.0;

impl FairnessTest {
    pub fn new(alpha: f64, epsilon: f64) -> Self {
        let a = alpha / SEQUENCES;
        let rate = || [Cell::new(a), Cell::new(a)];
        FairnessTest {
            epsilon,
            cells: [rate(), rate()],
        }
    }

    /// Adds a labeled row both models scored (`challenger` and `champion` their probabilities
    /// of `>50K`, said at 0.5). A row of neither group counts for nothing.
    pub fn observe(&mut self, row: &CensusRow, label: bool, challenger: f64, champion: f64) {
        let Some(g) = group_of(row) else {
            return;
        };
        let r = usize::from(!label); // 0: true positive rate, 1: false positive rate
        self.cells[r][g].push(challenger >= 0.5, champion >= 0.5);
    }

    /// One rate's gap, the change measured as `by` − `against` (`probation`: the champion's gap
    /// against the challenger's).
    fn gap(&self, rate: Rate, champion_side: bool) -> GapEvidence {
        let [a, b] = &self.cells[usize::from(!rate.label())];
        let gap = |f: fn(&Cell) -> &MeanSequence| minus(f(a).interval(), f(b).interval());
        let point =
            |f: fn(&Cell) -> &MeanSequence| f(a).mean().unwrap_or(0.0) - f(b).mean().unwrap_or(0.0);
        let (mut of, mut against) = (gap(|c| &c.challenger), gap(|c| &c.champion));
        let mut change = gap(|c| &c.difference);
        if champion_side {
            std::mem::swap(&mut of, &mut against);
            change = [-change[1], -change[0]];
        }
        let [lower, upper] = widening(against, change, of);
        let (mut gap, mut reference_gap) = (point(|c| &c.challenger), point(|c| &c.champion));
        if champion_side {
            std::mem::swap(&mut gap, &mut reference_gap);
        }
        GapEvidence {
            attribute: ATTRIBUTE.to_owned(),
            groups: GROUPS.map(str::to_owned),
            rate: rate.name().to_owned(),
            rows: [a.challenger.n(), b.challenger.n()],
            checked: if champion_side {
                "champion"
            } else {
                "challenger"
            }
            .to_owned(),
            gap,
            reference_gap,
            interval: [lower, upper],
            epsilon: self.epsilon,
            widened: lower > self.epsilon,
        }
    }

    /// The gap of most concern for the challenger (or, with `champion_side`, for the
    /// champion against the challenger, as probation asks): one that widened by more than ε
    /// with confidence if any, else the one whose interval reaches highest.
    pub fn evidence(&self, champion_side: bool) -> GapEvidence {
        let gaps = Rate::ALL.map(|r| self.gap(r, champion_side));
        let [tp, fp] = gaps;
        let key = |g: &GapEvidence| (g.widened, g.interval[0]);
        if key(&fp) > key(&tp) {
            fp
        } else {
            tp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A stream of rows as the Adult data has them: a third women; 30 % of men and 11 % of
    /// women earn more than 50K.
    fn person(rng: &mut StdRng) -> (CensusRow, bool) {
        let mut row = crate::features::tests::row("Private", "Sales", "United-States", 40.0);
        let woman = rng.random_bool(0.33);
        row.sex = GROUPS[usize::from(woman)].to_owned();
        let label = rng.random_bool(if woman { 0.11 } else { 0.30 });
        (row, label)
    }

    /// Two models' answers: each says `>50K` at the group's rate for the label; they agree on
    /// most rows (`agree` of them), as two retrains of one model do.
    fn answers(
        rng: &mut StdRng,
        woman: bool,
        label: bool,
        challenger: &Rates,
        champion: &Rates,
        agree: f64,
    ) -> (f64, f64) {
        let rate = |r: &Rates| r.of(woman, label);
        let u: f64 = rng.random();
        let p = f64::from(u8::from(u < rate(champion)));
        // The challenger reuses the champion's draw on `agree` of the rows.
        let c = if rng.random_bool(agree) {
            f64::from(u8::from(u < rate(challenger)))
        } else {
            f64::from(u8::from(rng.random::<f64>() < rate(challenger)))
        };
        (c, p)
    }

    /// True- and false-positive rates of men and women.
    struct Rates {
        tpr: [f64; 2],
        fpr: [f64; 2],
    }

    impl Rates {
        fn of(&self, woman: bool, label: bool) -> f64 {
            let g = usize::from(woman);
            if label {
                self.tpr[g]
            } else {
                self.fpr[g]
            }
        }
    }

    /// The champion of the Adult data: TPR 0.66 and 0.60, FPR 0.085 and 0.020.
    const FAIR: Rates = Rates {
        tpr: [0.66, 0.60],
        fpr: [0.085, 0.020],
    };

    /// Runs the test over `n` rows; whether it ever found the challenger unfair, and when.
    fn run(seed: u64, n: usize, challenger: &Rates, epsilon: f64) -> Option<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut test = FairnessTest::new(0.05, epsilon);
        for i in 0..n {
            let (row, label) = person(&mut rng);
            let woman = row.sex == "Female";
            let (c, p) = answers(&mut rng, woman, label, challenger, &FAIR, 0.9);
            test.observe(&row, label, c, p);
            if test.evidence(false).widened {
                return Some(i + 1);
            }
        }
        None
    }

    #[test]
    fn an_equally_fair_challenger_is_found_unfair_in_at_most_alpha_of_runs() {
        // The hardest null: the challenger widens the true-positive gap by exactly ε.
        let epsilon = 0.05;
        let at_margin = Rates {
            tpr: [0.66, 0.60 - epsilon],
            fpr: FAIR.fpr,
        };
        let runs = 200;
        let (mut equal, mut margin) = (0, 0);
        for seed in 0..runs {
            equal += u64::from(run(seed, 10_000, &FAIR, epsilon).is_some());
            margin += u64::from(run(1_000 + seed, 10_000, &at_margin, epsilon).is_some());
        }
        let (equal, margin) = (equal as f64 / runs as f64, margin as f64 / runs as f64);
        eprintln!(
            "fairness condition, false rejections over 10,000 labels: equally fair {equal:.3}, \
             widened by exactly ε {margin:.3} (α 0.05)"
        );
        assert!(equal <= 0.05 && margin <= 0.05, "{equal} {margin}");
    }

    #[test]
    fn a_challenger_that_shuts_women_out_is_found_unfair_within_the_gate_s_labels() {
        // Biased as one trained with half of women's `>50K` labels turned: TPR 0.14.
        let biased = Rates {
            tpr: [0.66, 0.14],
            fpr: [0.085, 0.0],
        };
        let mut found = Vec::new();
        for seed in 0..50 {
            found.push(run(seed, 10_000, &biased, 0.05).expect("found unfair"));
        }
        found.sort_unstable();
        eprintln!(
            "biased challenger found unfair after: median {} labels, max {}",
            found[25], found[49]
        );
    }

    #[test]
    fn the_evidence_names_the_rate_the_groups_and_both_gaps() {
        let mut test = FairnessTest::new(0.05, 0.05);
        let mut rng = StdRng::seed_from_u64(3);
        let biased = Rates {
            tpr: [0.66, 0.0],
            fpr: [0.085, 0.0],
        };
        for _ in 0..5_000 {
            let (row, label) = person(&mut rng);
            let woman = row.sex == "Female";
            let (c, p) = answers(&mut rng, woman, label, &biased, &FAIR, 0.9);
            test.observe(&row, label, c, p);
        }
        let e = test.evidence(false);
        assert!(e.widened, "{e}");
        assert_eq!(e.rate, "true-positive rate");
        assert!(e.gap > 0.55 && e.reference_gap < 0.2, "{e}");
        assert!(
            e.interval[0] > 0.05 && e.interval[0] <= e.interval[1],
            "{e}"
        );
        assert!(e.rows[0] > e.rows[1] && e.rows[1] > 100, "{e}");
        // Seen from the champion's side (probation), the champion did not widen it.
        assert!(!test.evidence(true).widened);
        let words = e.to_string();
        assert!(
            words.starts_with("true-positive rate gap between sex (Male − Female): challenger"),
            "{words}"
        );
        // A row of neither group counts for nothing.
        let mut other = crate::features::tests::row("Private", "Sales", "United-States", 40.0);
        other.sex = "?".into();
        let before = test.clone();
        test.observe(&other, true, 1.0, 0.0);
        assert_eq!(test, before);
    }
}
