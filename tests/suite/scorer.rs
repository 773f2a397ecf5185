//! The compiled trees and the native tree walk against LightGBM: the same probabilities, bit for
//! bit, and the same TreeSHAP contributions as its `predict_contrib`, on every row of adult.test and on rows no census form would give (`?`, categories never
//! seen, zeros, negative and extreme numbers), for the bundles the suite trains. (Every model is
//! also checked on a canary set when it loads, before its compiled trees score anything; the
//! test script sets `CENSUS_SCORER_STRICT`, so that a model failing that check fails to load in
//! every test: the services a test starts read it as `--scorer-strict`, the suite's own loads
//! through `helpers::scoring`.)

use census_stream::bundle::Bundle;
use census_stream::data::{read_labeled, CensusRow, Fetch};
use census_stream::features::N_FEATURES;
use census_stream::initialize::{self, InitConfig};
use census_stream::model::{canary_rows, Model, Scorer, Scoring, ShapTables, Trees};

use crate::helpers::{adult_dir, initialized, scoring, small_search, temp_store};

/// Rows built to leave the paths the training data takes.
fn odd_rows(base: &CensusRow) -> Vec<CensusRow> {
    let mut rows = Vec::new();
    for (i, x) in [0.0, -1.0, -1e9, 1e12, 1e-300, 0.5, 130.0, f64::MAX]
        .into_iter()
        .enumerate()
    {
        let mut r = base.clone();
        match i % 3 {
            0 => r.age = x,
            1 => r.capital_gain = x,
            _ => r.hours_per_week = x,
        }
        r.fnlwgt = -x;
        r.capital_loss = x;
        rows.push(r);
    }
    for text in ["?", "never-seen-before", "", "Bachelors"] {
        let mut r = base.clone();
        r.workclass = text.into();
        r.education = text.into();
        r.occupation = text.into();
        r.native_country = text.into();
        r.marital_status = text.into();
        rows.push(r);
    }
    rows
}

fn assert_same(model: &Model, features: &[f64], what: &str) {
    let fast = model.predict(features).unwrap();
    let reference = model.predict_lightgbm(features).unwrap();
    assert_eq!(fast.len(), reference.len());
    let mut differ = 0;
    for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
        if a.to_bits() != b.to_bits() {
            if differ == 0 {
                eprintln!("{what} row {i}: {:?} {a:e}, LightGBM {b:e}", model.scorer());
            }
            differ += 1;
        }
    }
    assert_eq!(
        differ,
        0,
        "{what}, {:?}: {differ} of {} rows differ",
        model.scorer(),
        fast.len()
    );
}

/// Every row of adult.test, odd rows, random feature rows, in batches and one at a time.
fn assert_scores_as_lightgbm(bundle: &Bundle, model: &Model, rows: &[CensusRow]) {
    let features: Vec<f64> = bundle.processor.transform_batch(rows.iter());
    assert_same(model, &features, "adult.test");

    let odd: Vec<CensusRow> = rows.iter().take(50).flat_map(odd_rows).collect();
    let features: Vec<f64> = bundle.processor.transform_batch(odd.iter());
    assert_same(model, &features, "odd rows");

    // Straight to the model: values the processor never makes (NaN, negative codes).
    assert_same(model, &canary_rows(20_000, 42), "random feature rows");
    // One row at a time as well as in batches.
    for r in 0..40 {
        let one = &features[r * N_FEATURES..(r + 1) * N_FEATURES];
        assert_same(model, one, "one row");
    }
}

#[test]
fn the_compiled_trees_and_the_native_walk_give_lightgbms_probabilities_and_contributions_bit_for_bit(
) {
    let (Some(init), Some(data_dir)) = (initialized(), adult_dir()) else {
        return;
    };
    let test = read_labeled(&data_dir.join("adult.test")).unwrap();
    let rows: Vec<CensusRow> = test.into_iter().map(|r| r.row).collect();
    // The suite's bundle, and one a search of another seed makes (other hyperparameters).
    let (_dir, other) = temp_store();
    let mut search = small_search(3);
    search.seed = 7;
    let mut config = InitConfig::new(other.clone(), search);
    config.scoring = scoring();
    config.data_dir = data_dir.clone();
    config.fetch = Fetch::Never;
    initialize::run(&config).unwrap();
    for (store, version) in [(&init.store, init.version), (&other, 1)] {
        let bundle = store.load(version, scoring()).unwrap();
        let text = String::from_utf8(store.read_files(version).unwrap().model_text).unwrap();
        for scorer in [Scorer::Compiled, Scorer::Native] {
            let model = Model::from_text(
                &text,
                Scoring {
                    scorer,
                    ..scoring()
                },
            )
            .unwrap();
            assert_eq!(model.scorer(), scorer, "the canary check refused it");
            assert_scores_as_lightgbm(&bundle, &model, &rows);
        }
        assert_contributions_as_lightgbm(&bundle, &text, version, &rows);
    }
}

/// TreeSHAP contributions on every row of adult.test, odd rows and random feature rows, against
/// LightGBM's `predict_contrib`: bit for bit on x86-64 (elsewhere a compiler may fuse a multiply
/// and an add: within 1e-9).
fn assert_contributions_as_lightgbm(bundle: &Bundle, text: &str, version: u32, rows: &[CensusRow]) {
    let adult_test: Vec<f64> = bundle.processor.transform_batch(rows.iter());
    let odd: Vec<CensusRow> = rows.iter().take(50).flat_map(odd_rows).collect();
    let odd: Vec<f64> = bundle.processor.transform_batch(odd.iter());
    for (what, features) in [
        ("adult.test", adult_test),
        ("odd rows", odd),
        ("random feature rows", canary_rows(5_000, 42)),
    ] {
        let (worst, differ) = contributions_against_lightgbm(text, &features, what);
        eprintln!(
            "v{version} {what}: {} rows, largest difference from predict_contrib {worst:e}, \
             {differ} of {} values not bit for bit",
            features.len() / N_FEATURES,
            features.len() / N_FEATURES * (N_FEATURES + 1)
        );
        assert!(
            worst <= 1e-9,
            "{what}: a contribution {worst:e} from LightGBM's"
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(differ, 0, "{what}: contributions not bit for bit");
        }
    }
}

/// Our TreeSHAP against LightGBM's `predict_contrib` on `features` (row-major, N_FEATURES a row): the
/// largest difference of any contribution, and how many of them differ at all. Also checks that
/// each row's contributions and expected value sum to LightGBM's raw score.
fn contributions_against_lightgbm(text: &str, features: &[f64], what: &str) -> (f64, usize) {
    let trees = Trees::from_text(text).unwrap();
    assert!(trees.explainable(), "the model text has node counts");
    let ours = trees.contributions(features).unwrap();
    let booster = lightgbm3::Booster::from_string(text).unwrap();
    let theirs = booster
        .predict_contrib(features, N_FEATURES as i32, true)
        .unwrap();
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{what}: a value per feature and the expected value, a row"
    );
    let raw = booster
        .raw_scores(features, N_FEATURES as i32, true)
        .unwrap();
    for (r, (row, &raw)) in ours.chunks_exact(N_FEATURES + 1).zip(&raw).enumerate() {
        let sum: f64 = row.iter().sum();
        assert!(
            (sum - raw).abs() <= 1e-9,
            "{what}, row {r}: contributions sum to {sum}, the raw score is {raw}"
        );
    }
    let worst = largest_difference(&ours, &theirs);
    let differ = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    // The tables that serve: within rounding of LightGBM's, every tree from its tables.
    let tables = ShapTables::new(trees, 64 << 20);
    assert_eq!(tables.tabled_trees(), tables.trees().n_trees(), "{what}");
    let fast = tables.contributions(features).unwrap();
    assert_eq!(fast.len(), theirs.len());
    let fast_worst = largest_difference(&fast, &theirs);
    eprintln!("{what}: the tables' largest difference from predict_contrib {fast_worst:e}");
    assert!(
        fast_worst <= census_stream::model::EXPLAIN_TOLERANCE,
        "{what}: a contribution from the tables {fast_worst:e} from LightGBM's"
    );
    (worst, differ)
}

fn largest_difference(ours: &[f64], theirs: &[f64]) -> f64 {
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}
