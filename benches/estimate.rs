//! How well the quality estimated from the served probabilities alone (before labels) follows
//! the realised quality: the bundle in `models/` (as `initialize` leaves it) scores adult.test
//! in its file order, and per window of 2,000 predictions the estimated accuracy and log loss
//! are set beside what the labels show. Then the same under a concept drift the estimate cannot
//! see: for people over 40, labels flipped with probability 0.3 (the scores do not change).
//! Last, each scenario's stream of fresh rows (`producer --scenario`, 20,000 rows, the drift full
//! from row 10,000), with the best accuracy any model could reach on it.
//!
//!   cargo bench --bench estimate

use std::path::PathBuf;

use rand::{Rng, SeedableRng};

use census_stream::bundle::BundleStore;
use census_stream::data::read_labeled;
use census_stream::lifecycle::estimate::{windows, Window};
use census_stream::model::Scoring;
use census_stream::scenario::{self, Kind, Scenario};

const WINDOW: usize = 2000;
/// The aim: |estimated − realised accuracy| within this many points...
const POINTS: f64 = 1.5;
/// ...in this share of the windows.
const SHARE: f64 = 0.9;

fn report(title: &str, w: &[Window]) {
    println!("{title}");
    println!("  window     n   est. acc  real acc   |diff|   est. ll  real ll");
    for (i, x) in w.iter().enumerate() {
        println!(
            "  {:>6} {:>5}   {:>7.4}  {:>7.4}  {:>6.2} pt  {:>7.4}  {:>7.4}",
            i + 1,
            x.n,
            x.estimated_accuracy,
            x.realised_accuracy,
            100.0 * (x.estimated_accuracy - x.realised_accuracy).abs(),
            x.estimated_log_loss,
            x.realised_log_loss
        );
    }
    let full: Vec<&Window> = w.iter().filter(|x| x.n == WINDOW).collect();
    let within = full
        .iter()
        .filter(|x| 100.0 * (x.estimated_accuracy - x.realised_accuracy).abs() <= POINTS)
        .count();
    let share = within as f64 / full.len().max(1) as f64;
    println!(
        "  within {POINTS} points: {within} of {} full windows ({:.0} %; aim {:.0} %)",
        full.len(),
        100.0 * share,
        100.0 * SHARE
    );
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let store = BundleStore::new(root.join("models"), root.join("dataprocessors"));
    let bundle = match store.load_current(Scoring::default()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("no bundle in models/ ({e}): run `scripts/run.sh initialize` first");
            std::process::exit(1);
        }
    };
    let test = read_labeled(&root.join("data").join("adult.test")).expect("data/adult.test");
    let probabilities = bundle
        .predict(test.iter().map(|r| &r.row))
        .expect("the bundle scores adult.test");
    println!(
        "bundle v{} from models/, {} rows of adult.test in file order, windows of {WINDOW}",
        bundle.manifest.version,
        test.len()
    );
    let labels: Vec<bool> = test.iter().map(|r| r.label).collect();
    report(
        "adult.test as it is (no drift):",
        &windows(&probabilities, &labels, WINDOW),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let drifted: Vec<bool> = test
        .iter()
        .map(|r| {
            let flip = r.row.age > 40.0 && rng.random::<f64>() < 0.3;
            r.label != flip
        })
        .collect();
    report(
        "concept drift: over-40s' labels flipped with probability 0.3 (scores unchanged):",
        &windows(&probabilities, &drifted, WINDOW),
    );
    for kind in [
        Kind::Fresh,
        Kind::Ageing,
        Kind::LabelShift,
        Kind::ConceptDrift,
    ] {
        let spec = Scenario {
            kind,
            strength: 1.0,
            ramp_rows: 10_000,
            seed: 1,
        };
        let mut made = scenario::from_data(
            &root.join("data"),
            &census_stream::data::Fetch::Never,
            None,
            spec,
        )
        .expect("data/adult.data and data/adult.test");
        let rows: Vec<_> = (0..20_000).map(|_| made.next_row()).collect();
        let probabilities = bundle
            .predict(rows.iter().map(|m| &m.row))
            .expect("the bundle scores made rows");
        let labels: Vec<bool> = rows.iter().map(|m| m.label).collect();
        let ceiling = |part: &[scenario::Made]| {
            part.iter()
                .map(|m| m.probability.max(1.0 - m.probability))
                .sum::<f64>()
                / part.len() as f64
        };
        report(
            &format!(
                "scenario {kind:?}, drift full from row 10,000: best accuracy possible {:.4} \
                 (rows 1-10,000) and {:.4} (rows 10,001-20,000)",
                ceiling(&rows[..10_000]),
                ceiling(&rows[10_000..])
            ),
            &windows(&probabilities, &labels, WINDOW),
        );
    }
}
