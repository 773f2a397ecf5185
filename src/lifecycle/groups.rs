//! How a model treats groups, live: per group of sex, race, sex × race and age band, over its
//! labeled predictions (said `>50K` at probability 0.5): the selection rate, the true- and
//! false-positive rates, the precision, and calibration (the mean probability against the
//! observed share of `>50K`); and per attribute the gaps between its groups — the demographic
//! parity difference (largest minus smallest selection rate) and the equalized-odds difference
//! (the larger of the true- and false-positive rate gaps), as Fairlearn defines them.
//!
//! Every rate carries an anytime-valid interval ([`MeanSequence`]): the page is looked at
//! again and again, and a plain interval read at every refresh would mislead far more often
//! than it says. Each attribute's sequences (three rates per group) run at α over their number,
//! so that all of an attribute's rates, and the gaps bounded from them, hold at once with
//! probability at least 1 − α. Only the data set's own values make groups (anything else is
//! left out), so the label sets stay bounded.

use serde::Serialize;

use super::sequence::MeanSequence;
use crate::data::CensusRow;

/// The values of `sex`, the groups the gate's fairness condition compares too.
pub const SEXES: [&str; 2] = ["Male", "Female"];
const RACES: [&str; 5] = [
    "White",
    "Black",
    "Asian-Pac-Islander",
    "Amer-Indian-Eskimo",
    "Other",
];
/// Age bands: their lower bounds and names.
const AGES: [(f64, &str); 6] = [
    (0.0, "<25"),
    (25.0, "25-34"),
    (35.0, "35-44"),
    (45.0, "45-54"),
    (55.0, "55-64"),
    (65.0, "65+"),
];

/// The attributes, as named on the page and in metrics.
pub const ATTRIBUTES: [&str; 4] = ["sex", "race", "sex x race", "age"];

/// A row's groups, compactly: an index per attribute (`None`: a value of no group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Groups {
    sex: Option<u8>,
    race: Option<u8>,
    age: Option<u8>,
}

impl Groups {
    pub fn of(row: &CensusRow) -> Self {
        let index = |values: &[&str], v: &str| values.iter().position(|x| *x == v).map(|i| i as u8);
        let age = row.age.is_finite().then(|| {
            AGES.iter()
                .rposition(|(from, _)| row.age >= *from)
                .unwrap_or(0) as u8
        });
        Groups {
            sex: index(&SEXES, &row.sex),
            race: index(&RACES, &row.race),
            age,
        }
    }

    /// The group index within each attribute of [`ATTRIBUTES`].
    fn indices(&self) -> [Option<usize>; 4] {
        let sex = self.sex.map(usize::from);
        let race = self.race.map(usize::from);
        [
            sex,
            race,
            sex.zip(race).map(|(s, r)| s * RACES.len() + r),
            self.age.map(usize::from),
        ]
    }
}

/// The groups' names per attribute.
fn names(attribute: usize) -> Vec<String> {
    match attribute {
        0 => SEXES.iter().map(|s| s.to_string()).collect(),
        1 => RACES.iter().map(|s| s.to_string()).collect(),
        2 => SEXES
            .iter()
            .flat_map(|s| RACES.iter().map(move |r| format!("{s} {r}")))
            .collect(),
        _ => AGES.iter().map(|(_, n)| n.to_string()).collect(),
    }
}

/// One group's running figures.
#[derive(Debug, Clone)]
struct Tally {
    labeled: u64,
    probability_sum: f64,
    positives: u64,
    /// Said `>50K`, over all its labeled rows.
    selection: MeanSequence,
    /// Said `>50K`, over those earning more / not.
    tpr: MeanSequence,
    fpr: MeanSequence,
    /// Earning more, over those said `>50K`.
    precision: MeanSequence,
}

impl Tally {
    fn new(alpha: f64) -> Self {
        let s = || MeanSequence::new(alpha, 0.0, 1.0);
        Tally {
            labeled: 0,
            probability_sum: 0.0,
            positives: 0,
            selection: s(),
            tpr: s(),
            fpr: s(),
            precision: s(),
        }
    }

    fn add(&mut self, p: f64, label: bool) {
        let said = p >= 0.5;
        let x = |b: bool| f64::from(u8::from(b));
        self.labeled += 1;
        self.probability_sum += p;
        self.positives += u64::from(label);
        self.selection.push(x(said));
        if label {
            self.tpr.push(x(said));
        } else {
            self.fpr.push(x(said));
        }
        if said {
            self.precision.push(x(label));
        }
    }
}

/// A rate, its always-valid interval, and the rows it is over.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateView {
    pub value: f64,
    pub interval: [f64; 2],
    pub n: u64,
}

fn rate(s: &MeanSequence) -> Option<RateView> {
    Some(RateView {
        value: s.mean()?,
        interval: s.interval(),
        n: s.n(),
    })
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupView {
    pub group: String,
    pub labeled: u64,
    pub selection: Option<RateView>,
    pub tpr: Option<RateView>,
    pub fpr: Option<RateView>,
    pub precision: Option<RateView>,
    /// Calibration: the mean probability of `>50K`, and the observed share.
    pub mean_probability: f64,
    pub observed_rate: f64,
}

/// A gap between groups: its value now and its always-valid interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GapView {
    pub value: f64,
    pub interval: [f64; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeView {
    pub attribute: String,
    pub groups: Vec<GroupView>,
    /// Largest minus smallest selection rate among the groups with rows.
    pub demographic_parity: Option<GapView>,
    /// The larger of the true- and false-positive rate gaps.
    pub equalized_odds: Option<GapView>,
}

/// The gap max − min of the rates of `sequences` (those with values), with its interval from
/// theirs.
fn gap<'a>(sequences: impl Iterator<Item = &'a MeanSequence>) -> Option<GapView> {
    let seen: Vec<&MeanSequence> = sequences.filter(|s| s.n() > 0).collect();
    if seen.len() < 2 {
        return None;
    }
    let largest = |v: &mut dyn Iterator<Item = f64>| v.fold(f64::MIN, f64::max);
    let smallest = |v: &mut dyn Iterator<Item = f64>| v.fold(f64::MAX, f64::min);
    let means = || seen.iter().filter_map(|s| s.mean());
    let lows = || seen.iter().map(|s| s.interval()[0]);
    let highs = || seen.iter().map(|s| s.interval()[1]);
    let value = largest(&mut means()) - smallest(&mut means());
    let lower = largest(&mut lows()) - smallest(&mut highs());
    let upper = largest(&mut highs()) - smallest(&mut lows());
    Some(GapView {
        value,
        interval: [lower.max(0.0), upper],
    })
}

/// A version's figures per group.
#[derive(Debug, Clone)]
pub struct GroupFigures {
    /// Per attribute, per group.
    tallies: [Vec<Tally>; 4],
}

impl Default for GroupFigures {
    /// At the gate's default α.
    fn default() -> Self {
        GroupFigures::new(crate::defaults::gate::ALPHA)
    }
}

impl GroupFigures {
    pub fn new(alpha: f64) -> Self {
        // Three sequences per group make an attribute's gaps: selection, TPR and FPR.
        let attribute = |i: usize| {
            let n = names(i).len();
            vec![Tally::new(alpha / (3 * n) as f64); n]
        };
        GroupFigures {
            tallies: [attribute(0), attribute(1), attribute(2), attribute(3)],
        }
    }

    /// Adds a labeled prediction of probability `p` for a row of `groups`.
    pub fn add(&mut self, groups: Groups, p: f64, label: bool) {
        for (tallies, index) in self.tallies.iter_mut().zip(groups.indices()) {
            if let Some(t) = index.and_then(|i| tallies.get_mut(i)) {
                t.add(p, label);
            }
        }
    }

    /// Labeled predictions of a known sex.
    pub fn labeled(&self) -> u64 {
        self.tallies[0].iter().map(|t| t.labeled).sum()
    }

    /// The figures, per attribute (the groups with labeled rows only); `None` before any.
    pub fn view(&self) -> Option<Vec<AttributeView>> {
        if self
            .tallies
            .iter()
            .all(|a| a.iter().all(|t| t.labeled == 0))
        {
            return None;
        }
        Some(
            self.tallies
                .iter()
                .enumerate()
                .map(|(i, tallies)| {
                    let groups = names(i)
                        .into_iter()
                        .zip(tallies)
                        .filter(|(_, t)| t.labeled > 0)
                        .map(|(group, t)| GroupView {
                            group,
                            labeled: t.labeled,
                            selection: rate(&t.selection),
                            tpr: rate(&t.tpr),
                            fpr: rate(&t.fpr),
                            precision: rate(&t.precision),
                            mean_probability: t.probability_sum / t.labeled as f64,
                            observed_rate: t.positives as f64 / t.labeled as f64,
                        })
                        .collect();
                    let tpr = gap(tallies.iter().map(|t| &t.tpr));
                    let fpr = gap(tallies.iter().map(|t| &t.fpr));
                    let equalized_odds = match (tpr, fpr) {
                        (Some(a), Some(b)) => Some(GapView {
                            value: a.value.max(b.value),
                            interval: [
                                a.interval[0].max(b.interval[0]),
                                a.interval[1].max(b.interval[1]),
                            ],
                        }),
                        (one, other) => one.or(other),
                    };
                    AttributeView {
                        attribute: ATTRIBUTES[i].to_owned(),
                        groups,
                        demographic_parity: gap(tallies.iter().map(|t| &t.selection)),
                        equalized_odds,
                    }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sex: &str, race: &str, age: f64) -> CensusRow {
        let mut r = crate::features::tests::row("Private", "Sales", "United-States", age);
        r.sex = sex.into();
        r.race = race.into();
        r
    }

    #[test]
    fn rows_fall_in_their_groups_and_junk_values_in_none() {
        let g = Groups::of(&row("Female", "Black", 30.0));
        assert_eq!(g.indices(), [Some(1), Some(1), Some(6), Some(1)]);
        assert_eq!(
            Groups::of(&row("Male", "White", 17.0)).indices()[3],
            Some(0)
        );
        assert_eq!(
            Groups::of(&row("Male", "White", 90.0)).indices()[3],
            Some(5)
        );
        let junk = Groups::of(&row("robot", "Martian", f64::NAN));
        assert_eq!(junk.indices(), [None, None, None, None]);
        assert_eq!(names(2)[6], "Female Black");
    }

    #[test]
    fn rates_gaps_and_intervals_are_those_of_the_rows() {
        let mut f = GroupFigures::new(0.05);
        assert_eq!(f.view(), None, "no figure on no rows");
        // Men: 100 earning more, 80 said so; 300 not, 30 said so. Women: 40 and 20; 200 and 4.
        let mut add = |sex: &str, label: bool, said: bool, n: usize| {
            for _ in 0..n {
                f.add(
                    Groups::of(&row(sex, "White", 40.0)),
                    if said { 0.9 } else { 0.1 },
                    label,
                );
            }
        };
        add("Male", true, true, 80);
        add("Male", true, false, 20);
        add("Male", false, true, 30);
        add("Male", false, false, 270);
        add("Female", true, true, 20);
        add("Female", true, false, 20);
        add("Female", false, true, 4);
        add("Female", false, false, 196);
        let view = f.view().unwrap();
        let sex = &view[0];
        let men = &sex.groups[0];
        assert_eq!((men.group.as_str(), men.labeled), ("Male", 400));
        assert!((men.tpr.unwrap().value - 0.8).abs() < 1e-12);
        assert!((men.fpr.unwrap().value - 0.1).abs() < 1e-12);
        assert!((men.selection.unwrap().value - 110.0 / 400.0).abs() < 1e-12);
        assert!((men.precision.unwrap().value - 80.0 / 110.0).abs() < 1e-12);
        assert!((men.observed_rate - 0.25).abs() < 1e-12);
        let women = &sex.groups[1];
        assert!((women.tpr.unwrap().value - 0.5).abs() < 1e-12);
        // TPR gap 0.3, FPR gap 0.1 - 4/200 = 0.08: equalized odds 0.3.
        let eo = sex.equalized_odds.unwrap();
        assert!((eo.value - 0.3).abs() < 1e-12, "{eo:?}");
        assert!(eo.interval[0] <= 0.3 && 0.3 <= eo.interval[1]);
        let dp = sex.demographic_parity.unwrap();
        assert!((dp.value - (110.0 / 400.0 - 24.0 / 240.0)).abs() < 1e-12);
        for r in [men.tpr.unwrap(), women.tpr.unwrap()] {
            assert!(r.interval[0] < r.value && r.value < r.interval[1]);
        }
        // One race only: no gap between races; age: every row in one band.
        assert_eq!(view[1].groups.len(), 1);
        assert_eq!(view[1].demographic_parity, None);
        assert_eq!(view[3].groups[0].group, "35-44");
    }
}
