//! The native tree walk against LightGBM: the same probabilities, bit for bit, on every row of
//! adult.test and on rows no census form would give (`?`, categories never seen, zeros,
//! negative and extreme numbers), for the bundles the suite trains. (Every model is also checked
//! on a canary set when it loads, before its compiled trees score anything.)

use census_stream::bundle::Bundle;
use census_stream::data::{read_labeled, CensusRow};
use census_stream::model::{canary_rows, Scorer};

use crate::helpers::{adult_dir, initialized};

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

fn assert_same(bundle: &Bundle, features: &[f64], what: &str) {
    let native = bundle.model.predict(features).unwrap();
    let reference = bundle.model.predict_lightgbm(features).unwrap();
    assert_eq!(native.len(), reference.len());
    let mut differ = 0;
    for (i, (a, b)) in native.iter().zip(&reference).enumerate() {
        if a.to_bits() != b.to_bits() {
            if differ == 0 {
                eprintln!("{what} row {i}: native {a:e}, LightGBM {b:e}");
            }
            differ += 1;
        }
    }
    assert_eq!(
        differ,
        0,
        "{what}: {differ} of {} rows differ",
        native.len()
    );
}

#[test]
fn the_native_walk_gives_lightgbms_probabilities_bit_for_bit() {
    census_stream::model::set_scorer(Scorer::Native);
    let (Some(init), Some(data_dir)) = (initialized(), adult_dir()) else {
        return;
    };
    let bundle = init.store.load(init.version).unwrap();
    assert_eq!(bundle.model.scorer(), Scorer::Native);
    let test = read_labeled(&data_dir.join("adult.test")).unwrap();
    let rows: Vec<CensusRow> = test.into_iter().map(|r| r.row).collect();
    let features: Vec<f64> = bundle.processor.transform_batch(rows.iter());
    assert_same(&bundle, &features, "adult.test");

    let odd: Vec<CensusRow> = rows.iter().take(50).flat_map(odd_rows).collect();
    let features: Vec<f64> = bundle.processor.transform_batch(odd.iter());
    assert_same(&bundle, &features, "odd rows");

    // Straight to the model: values the processor never makes (NaN, negative codes).
    assert_same(&bundle, &canary_rows(20_000, 42), "random feature rows");
    // One row at a time as well as in blocks.
    for r in 0..40 {
        let one = &features[r * 15..(r + 1) * 15];
        assert_same(&bundle, one, "one row");
    }
}
