//! How well the quality estimated from the served probabilities alone (before labels) follows
//! the realised quality: the bundle in `models/` (as `initialize` leaves it) scores adult.test
//! in its file order, and per window of 2,000 predictions the estimated accuracy and log loss
//! are set beside what the labels show. Then the same under a concept drift the estimate cannot
//! see: for people over 40, labels flipped with probability 0.3 (the scores do not change).
//!
//!   cargo bench --bench estimate

use std::path::PathBuf;

use rand::{Rng, SeedableRng};

use census_stream::bundle::BundleStore;
use census_stream::data::read_labeled;
use census_stream::lifecycle::estimate::{windows, Window};
use census_stream::model::Scoring;

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
}
