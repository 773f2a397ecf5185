//! The services' per-batch steps, driven on in-memory messages: no broker.

use std::num::NonZeroUsize;
use std::sync::Arc;

use census_stream::kafka::{Ends, InMessage, PartitionEnd};
use census_stream::predictor::{Outcome, Predictor};
use census_stream::registry::{serve_alone, CurrentServing};
use census_stream::retrainer::{LabelJoin, Retrainer, RowLog, StepReport};
use census_stream::stream::messages::Prediction;

use crate::helpers::{initialized, scoring};

const GOOD: &str = r#"{"request_id": "good", "sent_at_ms": 1, "income_bracket": ">50K", "record": {"age": 52, "workclass": "Self-emp-inc", "fnlwgt": 287927, "education": "HS-grad", "education_num": 9, "marital_status": "Married-civ-spouse", "occupation": "Exec-managerial", "relationship": "Wife", "race": "White", "sex": "Female", "capital_gain": 15024, "capital_loss": 0, "hours_per_week": 40, "native_country": "United-States"}}"#;

fn message(offset: i64, payload: Option<String>) -> InMessage {
    InMessage {
        topic: "census.requests".into(),
        partition: (offset % 3) as i32,
        offset,
        key: Some(format!("k{offset}").into_bytes()),
        payload: payload.map(String::into_bytes),
        timestamp_ms: None,
    }
}

/// The good request with its id changed and `from` replaced by `to`.
fn variant(id: &str, from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replace(
        r#""request_id": "good""#,
        &format!(r#""request_id": "{id}""#),
    )
    .replace(from, to)
}

#[test]
fn the_predictors_step_answers_a_mixed_batch_in_input_order_with_the_right_reasons() {
    let Some(init) = initialized() else {
        return;
    };
    let current = CurrentServing::default();
    serve_alone(&current, init.store.load(init.version, scoring()).unwrap());
    let mut predictor = Predictor::new(current);

    // (payload, expected: Ok(request id) for a prediction, Err(reason) for a dead letter)
    let cases: Vec<(Option<String>, Result<&str, &str>)> = vec![
        (Some(variant("a", "", "")), Ok("a")),
        (
            Some(
                variant("unknowns", r#""Self-emp-inc""#, r#""?""#)
                    .replace(r#""Exec-managerial""#, r#""?""#),
            ),
            Ok("unknowns"),
        ),
        (
            Some(variant("unseen", r#""United-States""#, r#""Atlantis""#)),
            Ok("unseen"),
        ),
        (None, Err("empty_payload")),
        (Some(String::new()), Err("empty_payload")),
        (Some("{\"record\": oops".into()), Err("not_json")),
        (
            Some(variant("m", r#""age": 52, "#, "")),
            Err("missing_field"),
        ),
        (
            Some(variant("w", r#""age": 52"#, r#""age": "fifty""#)),
            Err("wrong_type"),
        ),
        (
            Some(variant("i", r#""age": 52"#, r#""age": -1"#)),
            Err("impossible_value"),
        ),
        (
            Some(variant(
                "h",
                r#""hours_per_week": 40"#,
                r#""hours_per_week": 169"#,
            )),
            Err("impossible_value"),
        ),
        (
            Some(variant("l", r#"">50K""#, r#""rich""#)),
            Err("impossible_value"),
        ),
        (
            Some(variant(&"x".repeat(257), "", "")),
            Err("impossible_value"),
        ),
        (Some(variant("z", "", "")), Ok("z")),
    ];
    let batch: Vec<InMessage> = cases
        .iter()
        .enumerate()
        .map(|(i, (p, _))| message(100 + i as i64, p.clone()))
        .collect();
    let outcomes = predictor.step(&batch);
    assert_eq!(outcomes.len(), batch.len());
    for ((outcome, (_, expected)), m) in outcomes.iter().zip(&cases).zip(&batch) {
        match (outcome, expected) {
            (
                Outcome::Prediction {
                    key,
                    payload,
                    source,
                    ..
                },
                Ok(id),
            ) => {
                let p: Prediction = serde_json::from_slice(payload).unwrap();
                assert_eq!((key.as_str(), p.request_id.as_str()), (*id, *id));
                assert_eq!(source, &(m.topic.clone(), m.partition, m.offset));
                assert_eq!((p.partition, p.offset), (m.partition, m.offset));
                assert_eq!(p.model_version, init.version);
                assert!((0.0..=1.0).contains(&p.probability));
            }
            (
                Outcome::DeadLetter {
                    key,
                    payload,
                    fault,
                    detail,
                    source,
                },
                Err(reason),
            ) => {
                assert_eq!(fault.as_str(), *reason, "offset {}", m.offset);
                assert!(!detail.is_empty());
                assert_eq!((key, payload), (&m.key, &m.payload), "original bytes kept");
                assert_eq!(source, &(m.topic.clone(), m.partition, m.offset));
            }
            (o, e) => panic!("offset {}: expected {e:?}, got {o:?}", m.offset),
        }
    }
    assert_eq!(predictor.versions(), &[init.version]);
}

#[test]
fn a_challenger_is_scored_in_shadow_and_never_changes_the_served_prediction() {
    use census_stream::registry::Serving;
    let Some(init) = initialized() else {
        return;
    };
    let bundle = Arc::new(init.store.load(init.version, scoring()).unwrap());
    let alone = CurrentServing::default();
    serve_alone(&alone, init.store.load(init.version, scoring()).unwrap());
    let shadowed = CurrentServing::default();
    shadowed.store(Some(Arc::new(Serving {
        champion: bundle.clone(),
        challenger: Some(bundle),
    })));
    let batch: Vec<InMessage> = (0..5)
        .map(|i| message(i, Some(variant(&format!("r{i}"), "", ""))))
        .collect();
    let decode = |o: &Outcome| match o {
        Outcome::Prediction { payload, .. } => {
            serde_json::from_slice::<Prediction>(payload).unwrap()
        }
        other => panic!("{other:?}"),
    };
    let plain = Predictor::new(alone).step(&batch);
    let shadow = Predictor::new(shadowed).step(&batch);
    for (a, b) in plain.iter().map(decode).zip(shadow.iter().map(decode)) {
        assert_eq!(
            (a.challenger_version, a.challenger_probability),
            (None, None)
        );
        assert_eq!(b.challenger_version, Some(init.version));
        // The served prediction is the champion's, the same with or without a shadow.
        assert_eq!(
            (a.probability, a.model_version),
            (b.probability, b.model_version)
        );
        assert_eq!(b.challenger_probability, Some(b.probability));
    }
}

#[test]
fn explained_predictions_carry_their_largest_contributions_and_the_rest_none() {
    use census_stream::features::{feature_names, N_FEATURES};
    use census_stream::model::Scoring;
    use census_stream::predictor::Explain;
    let Some(init) = initialized() else {
        return;
    };
    let explaining = Scoring {
        explain: true,
        ..scoring()
    };
    let bundle = init.store.load(init.version, explaining).unwrap();
    assert!(
        bundle.model.explains(),
        "TreeSHAP matched LightGBM on the canary set"
    );
    let current = CurrentServing::default();
    serve_alone(&current, bundle);
    let batch: Vec<InMessage> = (0..400)
        .map(|i| {
            message(
                i,
                Some(variant(
                    &format!("r{i}"),
                    r#""age": 52"#,
                    &format!(r#""age": {}"#, 17 + i % 70),
                )),
            )
        })
        .collect();
    let decode = |o: &Outcome| match o {
        Outcome::Prediction { payload, .. } => {
            serde_json::from_slice::<Prediction>(payload).unwrap()
        }
        other => panic!("{other:?}"),
    };
    let sample = Explain::Sample(0.1);
    let predictions: Vec<Prediction> = Predictor::new(current.clone())
        .explaining(sample)
        .step(&batch)
        .iter()
        .map(decode)
        .collect();
    let explained: Vec<&Prediction> = predictions
        .iter()
        .filter(|p| !p.reasons.is_empty())
        .collect();
    for p in &predictions {
        assert_eq!(
            !p.reasons.is_empty(),
            sample.chooses(&p.request_id),
            "{}",
            p.request_id
        );
    }
    assert!(
        (20..=70).contains(&explained.len()),
        "{} of 400 explained",
        explained.len()
    );

    // Each one's reasons are its largest contributions by size, as the model gives them, with
    // the request's values; with the rest and the expected value they make its log-odds.
    let serving = current.load_full().unwrap();
    let model = &serving.champion.model;
    let names = feature_names();
    for p in explained {
        let i: usize = p.request_id[1..].parse().unwrap();
        let request: census_stream::stream::messages::Request =
            serde_json::from_slice(batch[i].payload.as_deref().unwrap()).unwrap();
        let features = serving.champion.processor.transform(&request.record);
        let scale = model.log_odds_scale().unwrap();
        let phi: Vec<f64> = model
            .contributions(&features)
            .unwrap()
            .iter()
            .map(|c| c * scale)
            .collect();
        let logit = (p.probability / (1.0 - p.probability)).ln();
        let sum: f64 = phi.iter().sum();
        assert!((sum - logit).abs() < 1e-7, "{sum} against log-odds {logit}");
        let mut sizes: Vec<f64> = phi[..N_FEATURES].iter().map(|x| x.abs()).collect();
        sizes.sort_by(|a, b| b.total_cmp(a));
        let nonzero = phi[..N_FEATURES].iter().filter(|c| **c != 0.0).count();
        assert!(nonzero >= 3, "{nonzero} features moved it");
        assert_eq!(p.reasons.len(), nonzero, "every feature that moved it");
        for (k, r) in p.reasons.iter().enumerate() {
            let j = names.iter().position(|n| *n == r.feature).unwrap();
            // Read back from JSON: equal to the last bit or so (serde_json's float parsing).
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * b.abs().max(1.0);
            assert!(
                close(r.contribution, phi[j]),
                "{}: {} against {}",
                r.feature,
                r.contribution,
                phi[j]
            );
            assert!(
                close(r.contribution.abs(), sizes[k]),
                "{}: not the {k}th largest",
                r.feature
            );
        }
        if let Some(age) = p.reasons.iter().find(|r| r.feature == "age") {
            assert_eq!(age.value, request.record.age.to_string());
        }
    }

    // Off: none; all: every one.
    let off = Predictor::new(current.clone())
        .explaining(Explain::Off)
        .step(&batch[..20]);
    assert!(off.iter().map(decode).all(|p| p.reasons.is_empty()));
    let all = Predictor::new(current)
        .explaining(Explain::All)
        .step(&batch[..20]);
    assert!(all.iter().map(decode).all(|p| !p.reasons.is_empty()));
    assert!(all
        .iter()
        .map(decode)
        .all(|p| p.challenger_reasons.is_empty()));

    // With a challenger in shadow, the explained predictions carry its reasons too (here the
    // same model: the same reasons), the others none.
    let bundle = Arc::new(init.store.load(init.version, explaining).unwrap());
    let shadowed = CurrentServing::default();
    shadowed.store(Some(Arc::new(census_stream::registry::Serving {
        champion: bundle.clone(),
        challenger: Some(bundle),
    })));
    let both: Vec<Prediction> = Predictor::new(shadowed)
        .explaining(sample)
        .step(&batch)
        .iter()
        .map(decode)
        .collect();
    assert!(both.iter().any(|p| !p.reasons.is_empty()));
    for p in &both {
        assert_eq!(p.challenger_reasons, p.reasons, "{}", p.request_id);
    }
}

/// A retrainer over the rows file and join journal in `dir`.
fn retrainer_in(
    dir: &std::path::Path,
    cutoff: &std::collections::BTreeMap<String, i64>,
    every: usize,
) -> Retrainer {
    let join = LabelJoin::open(&dir.join("join.jsonl"), "census.labels", LABEL_WINDOW).unwrap();
    let log = RowLog::open(&dir.join("rows.jsonl")).unwrap();
    Retrainer::new(log, join, cutoff, NonZeroUsize::new(every).unwrap())
}

const LABEL_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

#[test]
fn the_retrainers_step_keeps_labeled_rows_once_skips_the_rest_and_says_when_a_retrain_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.jsonl");
    let mut retrainer = retrainer_in(dir.path(), &Default::default(), 4);
    let good = |id: &str| variant(id, "", "");
    let unlabeled = variant("u", r#""income_bracket": ">50K", "#, "");
    let poor = variant("p", r#"">50K""#, r#""<=50K.""#);

    let first = [
        message(0, Some(good("g0"))),
        message(1, Some(unlabeled.clone())),
        message(2, Some(poor.clone())),
        message(3, Some("not json".into())),
        message(4, None),
    ];
    let report = retrainer.step(&first, 0).unwrap();
    assert_eq!(
        (report.appended, report.replayed, report.skipped),
        (2, 0, 2),
        "the unlabelled request waits for its label"
    );
    assert!(!report.retrain_due && report.dead_letters.is_empty());
    assert_eq!(retrainer.labels().pending(), (1, 0));
    // A replay of offsets 0 and 2 (a crash between store and commit), and one new row.
    let second = [
        message(0, Some(good("g0"))),
        message(2, Some(poor.clone())),
        message(5, Some(good("g5"))),
    ];
    let report = retrainer.step(&second, 1).unwrap();
    assert_eq!((report.appended, report.replayed), (1, 2));
    let third = [message(6, Some(good("g6")))];
    assert!(
        retrainer.step(&third, 2).unwrap().retrain_due,
        "4 rows: due"
    );
    assert_eq!(retrainer.log().len(), 4);
    retrainer.trained_on_all();
    assert!(!retrainer.retrain_due());

    // Durable: the rows are in the file, once each, labels as sent.
    let reopened = RowLog::open(&path).unwrap();
    assert_eq!(reopened.len(), 4);
    let labels: Vec<bool> = reopened.labeled().map(|r| r.label).collect();
    assert_eq!(labels, [true, false, true, true]);
    drop((reopened, retrainer));

    // The topic is deleted and created again: a different record at a stored offset is a new
    // row, not a replay, and counts towards the next retrain.
    let mut retrainer = retrainer_in(dir.path(), &Default::default(), 4);
    retrainer.trained_on_all();
    let recreated = [message(0, Some(good("g0-again")))];
    assert_eq!(retrainer.step(&recreated, 3).unwrap().appended, 1);
    assert_eq!(retrainer.new_rows(), 1);
    assert_eq!(retrainer.log().len(), 5);
    drop(retrainer);

    // A new log over the same rows counts those the champion was trained on (below its
    // offsets) as trained: offsets 0 and 6 of partition 0, 2 of partition 2, not 5.
    let champion_offsets = [("census.requests/0", 7), ("census.requests/2", 3)]
        .map(|(k, v)| (k.to_string(), v))
        .into();
    let retrainer = retrainer_in(dir.path(), &champion_offsets, 4);
    assert_eq!(
        retrainer.trained_rows(),
        3,
        "the recreated topic's row is new"
    );
    assert!(!retrainer.retrain_due());
}

fn label_message(offset: i64, id: &str, bracket: &str) -> InMessage {
    InMessage {
        topic: "census.labels".into(),
        partition: (offset % 2) as i32,
        offset,
        key: Some(id.as_bytes().to_vec()),
        payload: Some(
            format!(
                r#"{{"request_id":"{id}","income_bracket":"{bracket}","labeled_at_ms":{offset}}}"#
            )
            .into_bytes(),
        ),
        timestamp_ms: None,
    }
}

fn reasons(report: &StepReport) -> Vec<String> {
    report
        .dead_letters
        .iter()
        .map(|d| d.reason().to_owned())
        .collect()
}

/// A look at the input that found every partition read to its end at `at_ms`: the join's clock
/// may move to then.
fn all_read(retrainer: &mut Retrainer, at_ms: i64) {
    let partitions = [0, 1, 2]
        .map(|p| ("census.requests", p))
        .into_iter()
        .chain([("census.labels", 0), ("census.labels", 1)])
        .map(|(topic, partition)| PartitionEnd {
            topic: topic.into(),
            partition,
            next: 0,
            end: 0,
            delivered: false,
        })
        .collect();
    retrainer.labels_mut().looked(&Ends { at_ms, partitions });
}

#[test]
fn the_retrainers_step_joins_labels_that_come_apart_late_early_twice_or_never() {
    let dir = tempfile::tempdir().unwrap();
    let unlabeled = |id: &str| variant(id, r#""income_bracket": ">50K", "#, "");
    let mut retrainer = retrainer_in(dir.path(), &Default::default(), 1000);

    // r1 and r2 come unlabelled; r3's label comes before it.
    let report = retrainer
        .step(
            &[
                message(0, Some(unlabeled("r1"))),
                message(1, Some(unlabeled("r2"))),
                label_message(0, "r3", "<=50K"),
            ],
            1_000,
        )
        .unwrap();
    assert_eq!(report.appended, 0);
    assert_eq!(retrainer.labels().pending(), (2, 1));
    // r1's label comes late, r3 comes, r1's label again (a duplicate), a label for nobody, and
    // junk on the labels topic.
    let report = retrainer
        .step(
            &[
                label_message(1, "r1", ">50K."),
                message(2, Some(unlabeled("r3"))),
                label_message(2, "r1", "<=50K"),
                label_message(3, "ghost", ">50K"),
                InMessage {
                    payload: Some(b"not json".to_vec()),
                    timestamp_ms: None,
                    ..label_message(4, "x", "")
                },
            ],
            5_000,
        )
        .unwrap();
    assert_eq!(report.appended, 2);
    assert_eq!(reasons(&report), ["duplicate_label", "not_json"]);
    let rows: Vec<(i64, bool)> = retrainer
        .log()
        .rows()
        .iter()
        .map(|r| (r.offset, r.label))
        .collect();
    assert_eq!(rows, [(0, true), (2, false)], "each row with its own label");
    // r1's row counts for cut-offs where its label was read; r3's where its request was.
    assert_eq!(
        retrainer.log().offsets(),
        [
            ("census.labels/1".to_owned(), 2),
            ("census.requests/2".to_owned(), 3)
        ]
        .into()
    );

    // A restart: the journal brings back r2 waiting and the ghost label held; a replayed
    // batch neither loses nor doubles a match.
    drop(retrainer);
    let mut retrainer = retrainer_in(dir.path(), &Default::default(), 1000);
    assert_eq!(retrainer.labels().pending(), (1, 1));
    let report = retrainer
        .step(
            &[
                label_message(1, "r1", ">50K."),
                label_message(5, "r2", ">50K"),
            ],
            6_000,
        )
        .unwrap();
    assert_eq!((report.appended, report.replayed), (1, 1));
    assert_eq!(retrainer.log().len(), 3);

    // A window later (the input read to its end then) the ghost label is dead (unmatched); its
    // removal is journalled once its dead letter is sent.
    all_read(&mut retrainer, 70_000);
    let report = retrainer
        .step(&[message(3, Some(unlabeled("r4")))], 70_000)
        .unwrap();
    assert_eq!(reasons(&report), ["unmatched_label"]);
    assert_eq!(report.dropped, ["ghost"]);
    retrainer.labels_mut().dropped(report.dropped).unwrap();
    // r4 expires a window later, and its label is then dead at once.
    all_read(&mut retrainer, 131_000);
    let report = retrainer
        .step(&[label_message(6, "r4", ">50K")], 131_000)
        .unwrap();
    assert_eq!(reasons(&report), ["unmatched_label"]);
    assert!(report.dropped.is_empty(), "never held");
    assert_eq!(retrainer.labels().pending(), (0, 0));
}
