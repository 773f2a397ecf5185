//! Offline training: data reading, bundle v1, its integrity checks, and scoring odd records.

use std::fs;
use std::process::Command;

use census_stream::bundle::{BundleFiles, BundleStore};
use census_stream::data::{load_adult, read_labeled, CensusRow, Fetch};
use census_stream::features::FeatureProcessor;
use census_stream::initialize::{run, InitConfig, Initialized};
use census_stream::train::space::{Hyperparams, ANCHOR};
use census_stream::train::{fit, SearchOutcome, Trial};

use crate::helpers::{adult, initialized, scoring, small_search, temp_store};

#[test]
fn small_budget_initialize_writes_bundle_v1_with_auc_above_092() {
    let Some(init) = initialized() else { return };
    assert_eq!(init.version, 1);
    assert_eq!(init.store.current().unwrap(), Some(1));
    let files = init.store.read_files(1).unwrap();
    let m = &files.manifest;
    let metrics = m.test_metrics.expect("test metrics in the manifest");
    assert!(metrics.roc_auc >= 0.92, "test AUC {}", metrics.roc_auc);
    assert!(
        metrics.accuracy >= 0.85,
        "test accuracy {}",
        metrics.accuracy
    );
    assert_eq!(metrics.rows, 16281);
    assert_eq!(m.training_data.base_rows, 32561);
    assert!(m.cv.evaluations >= 1 && m.cv.evaluations <= 5);
    // Calibrated on an out-of-fold prediction of every training row, a near-identity map for a
    // model early-stopped on log loss, which it does not make worse on those rows.
    let c = m.calibration.as_ref().expect("calibrated in training");
    assert_eq!((c.method.as_str(), c.rows), ("platt", 32561));
    assert!((0.8..1.2).contains(&c.platt.a), "{c:?}");
    assert!(c.log_loss_after <= c.log_loss_before, "{c:?}");
    assert!(
        m.cv.log_loss > 0.2 && m.cv.log_loss < 0.4,
        "{}",
        m.cv.log_loss
    );
    assert!(m.promoted);
    assert_eq!(m.parent_version, None);
    assert_eq!(
        m.model_sha256,
        census_stream::util::atomic_file::sha256_hex(&files.model_text)
    );
    let text = String::from_utf8(files.model_text.clone()).unwrap();
    assert!(
        text.contains("feature_names=age fnlwgt"),
        "LightGBM text format"
    );
    // The categoricals were declared to LightGBM: the model lists categories for them where a
    // numeric feature has a `[min:max]` range.
    let infos: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("feature_infos="))
        .expect("feature_infos line")
        .split(' ')
        .collect();
    let numeric = census_stream::features::NUMERIC.len();
    assert_eq!(infos.len(), census_stream::features::N_FEATURES);
    assert_eq!(infos.len(), 14, "6 numeric and 8 categorical columns");
    assert!(
        infos[..numeric].iter().all(|i| i.starts_with('[')),
        "{infos:?}"
    );
    assert!(
        infos[numeric..].iter().all(|i| !i.starts_with('[')),
        "{infos:?}"
    );
}

#[test]
fn saved_and_loaded_bundle_predicts_exactly_as_in_memory_on_all_test_rows() {
    let Some(data) = adult() else { return };
    let trained = fit(&data.train, None, &small_search(2), scoring()).unwrap();
    let features = trained
        .processor
        .transform_batch(data.test.iter().map(|r| &r.row));
    let in_memory = trained.model.predict(&features).unwrap();

    let (_dir, store) = temp_store();
    let files = BundleFiles {
        manifest: init_manifest(),
        model_text: trained.model_text.clone().into_bytes(),
        processor: trained.processor.to_bytes(),
    };
    let manifest = store.save(files, true).unwrap();
    let loaded = store.load(manifest.version, scoring()).unwrap();
    let from_disk = loaded.predict(data.test.iter().map(|r| &r.row)).unwrap();
    assert_eq!(in_memory.len(), data.test.len());
    assert_eq!(in_memory, from_disk, "bit-identical probabilities");
}

/// The manifest of the shared bundle, as a template for re-saving its files elsewhere.
fn init_manifest() -> census_stream::bundle::Manifest {
    let init = initialized().expect("data present");
    init.store.read_files(init.version).unwrap().manifest
}

fn copy_of_v1() -> (tempfile::TempDir, BundleStore) {
    let init = initialized().expect("data present");
    let (dir, store) = temp_store();
    store.save(init.store.read_files(1).unwrap(), true).unwrap();
    (dir, store)
}

#[test]
fn a_second_run_makes_a_new_version_and_leaves_the_old_one_untouched() {
    let Some(init) = initialized() else { return };
    let (dir, store) = copy_of_v1();
    let v1_model = fs::read(dir.path().join("models/model_v0001.txt")).unwrap();
    let v2 = store.save(init.store.read_files(1).unwrap(), true).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(store.current().unwrap(), Some(2));
    assert_eq!(store.versions().unwrap(), vec![1, 2]);
    assert_eq!(
        fs::read(dir.path().join("models/model_v0001.txt")).unwrap(),
        v1_model
    );
    assert!(dir
        .path()
        .join("dataprocessors/dataprocessor_v0002.bin")
        .is_file());
    assert!(store.load(1, scoring()).is_ok() && store.load(2, scoring()).is_ok());
}

#[test]
fn if_missing_keeps_a_bundle_that_loads_and_trains_beside_one_that_does_not() {
    let Some(data_dir) = crate::helpers::adult_dir() else {
        return;
    };
    let (dir, store) = copy_of_v1();
    let mut config = InitConfig::new(store.clone(), small_search(2));
    config.data_dir = data_dir;
    config.fetch = Fetch::Never;
    config.scoring = scoring();
    config.if_missing = true;
    assert!(matches!(
        run(&config).unwrap(),
        Initialized::AlreadyThere(1)
    ));
    assert_eq!(store.versions().unwrap(), vec![1]);

    // v1's processor as an older build wrote it: another format version.
    let path = dir.path().join("dataprocessors/dataprocessor_v0001.bin");
    let mut old = fs::read(&path).unwrap();
    old[8..12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(&path, &old).unwrap();
    assert!(store.load(1, scoring()).is_err());
    let Initialized::Trained(manifest) = run(&config).unwrap() else {
        panic!("a bundle this build cannot load is not kept as current")
    };
    assert_eq!(manifest.version, 2);
    assert_eq!(store.current().unwrap(), Some(2));
    assert!(store.load(2, scoring()).is_ok());
    assert_eq!(fs::read(&path).unwrap(), old, "v1 left as it was");
}

fn person() -> CensusRow {
    CensusRow {
        age: 45.0,
        workclass: "Private".into(),
        fnlwgt: 200000.0,
        education: "Masters".into(),
        education_num: 14.0,
        marital_status: "Married-civ-spouse".into(),
        occupation: "Exec-managerial".into(),
        relationship: "Husband".into(),
        race: "White".into(),
        sex: "Male".into(),
        capital_gain: 0.0,
        capital_loss: 0.0,
        hours_per_week: 50.0,
        native_country: "United-States".into(),
    }
}

#[test]
fn records_with_unknown_fields_or_unseen_categories_are_scored() {
    let Some(init) = initialized() else { return };
    let bundle = init.store.load_current(scoring()).unwrap();
    let mut question = person();
    question.workclass = "?".into();
    question.occupation = "?".into();
    question.native_country = "?".into();
    let mut unseen = person();
    unseen.workclass = "Space-agency".into();
    unseen.occupation = "Astronaut".into();
    unseen.native_country = "Mars".into();
    let p = bundle.predict([person(), question, unseen].iter()).unwrap();
    assert!(
        p.iter().all(|x| x.is_finite() && *x > 0.0 && *x < 1.0),
        "{p:?}"
    );
    // Unseen categories get the same unknown code as `?`, hence the same score.
    assert_eq!(p[1], p[2]);
    // A married manager with a master's degree: the model should lean to >50K.
    assert!(p[0] > 0.5, "{p:?}");
}

#[test]
fn truncated_or_tampered_files_are_refused_naming_the_file() {
    if initialized().is_none() {
        return;
    }
    let (dir, store) = copy_of_v1();
    let model = dir.path().join("models/model_v0001.txt");
    let proc = dir.path().join("dataprocessors/dataprocessor_v0001.bin");
    let model_bytes = fs::read(&model).unwrap();
    let proc_bytes = fs::read(&proc).unwrap();

    fs::write(&model, &model_bytes[..model_bytes.len() / 2]).unwrap();
    let err = store
        .load(1, scoring())
        .err()
        .expect("truncated model refused")
        .to_string();
    assert!(err.contains(&model.display().to_string()), "{err}");
    fs::write(&model, &model_bytes).unwrap();

    let mut tampered = proc_bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x55;
    fs::write(&proc, &tampered).unwrap();
    let err = store
        .load(1, scoring())
        .err()
        .expect("tampered processor refused")
        .to_string();
    assert!(err.contains(&proc.display().to_string()), "{err}");
    fs::write(&proc, &proc_bytes).unwrap();

    // A consistent manifest does not let a corrupt processor through either: the format check
    // refuses it.
    let mut files = store.read_files(1).unwrap();
    files.processor.truncate(files.processor.len() - 10);
    files.manifest.processor_sha256 =
        census_stream::util::atomic_file::sha256_hex(&files.processor);
    let err = files
        .load(scoring())
        .err()
        .expect("corrupt processor refused")
        .to_string();
    assert!(err.contains("dataprocessor_v0001.bin"), "{err}");
    assert!(
        store.load(1, scoring()).is_ok(),
        "restored files load again"
    );
}

#[test]
fn missing_data_offline_names_the_file_and_where_to_put_it() {
    let empty = tempfile::tempdir().unwrap();
    let err = load_adult(empty.path(), &Fetch::Never)
        .err()
        .expect("no data, no load")
        .to_string();
    assert!(
        err.contains(&empty.path().join("adult.data").display().to_string()),
        "{err}"
    );
    assert!(err.contains("--data-dir"), "{err}");

    // A failed download says the same, with the reason.
    let err = load_adult(empty.path(), &Fetch::From("http://127.0.0.1:9/".into()))
        .err()
        .expect("unreachable archive")
        .to_string();
    assert!(
        err.contains("adult.data") && err.contains("downloading"),
        "{err}"
    );

    // And so does the command.
    let out = Command::new(env!("CARGO_BIN_EXE_initialize"))
        .args(["--offline", "--data-dir"])
        .arg(empty.path())
        .current_dir(empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("adult.data is missing"), "{stderr}");
}

#[test]
fn a_malformed_line_is_reported_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adult.data");
    let good = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K";
    let bad_age = good.replacen("39", "thirty-nine", 1);
    fs::write(&path, format!("{good}\n{good}\n{bad_age}\n\n")).unwrap();
    let err = read_labeled(&path).err().unwrap().to_string();
    assert!(err.contains("adult.data:3: field `age`"), "{err}");

    let bad_label = good.replace("<=50K", "maybe");
    fs::write(
        &path,
        format!("|1x3 Cross validator\n{good}\n{bad_label}\n"),
    )
    .unwrap();
    let err = read_labeled(&path).err().unwrap().to_string();
    assert!(
        err.contains("adult.data:3: field `income_bracket`"),
        "{err}"
    );

    let short = good.rsplit_once(',').unwrap().0.to_string();
    fs::write(&path, format!("{good}\n{short}\n")).unwrap();
    let err = read_labeled(&path).err().unwrap().to_string();
    assert!(
        err.contains("adult.data:2: field `income_bracket`: missing"),
        "{err}"
    );

    let long = format!("{good}, extra");
    fs::write(&path, format!("{good}\n{good}\n{long}\n")).unwrap();
    let err = read_labeled(&path).err().unwrap().to_string();
    assert!(
        err.contains("adult.data:3:") && err.contains("expected 15 fields, found 16"),
        "{err}"
    );

    let negative_hours = good.replace(", 40,", ", -4,");
    fs::write(&path, format!("{negative_hours}\n")).unwrap();
    let err = read_labeled(&path).err().unwrap().to_string();
    assert!(
        err.contains("adult.data:1: field `hours_per_week`"),
        "{err}"
    );
}

#[test]
fn the_uci_files_read_with_the_known_row_counts() {
    let Some(data) = adult() else { return };
    assert_eq!(data.train.len(), 32561);
    assert_eq!(data.test.len(), 16281);
    let positives = data.train.iter().filter(|r| r.label).count();
    assert_eq!(positives, 7841, "adult.names: 23.93% of rows are >50K");
    assert_eq!(data.test[0].row.age, 25.0);
    assert_eq!(data.test[0].row.native_country, "United-States");
    assert!(data.train.iter().any(|r| r.row.workclass == "?"));
    // The processor sees exactly the UCI categories.
    let p = FeatureProcessor::fit(data.train.iter().map(|r| &r.row));
    let card = p.cardinalities();
    assert_eq!(&card[..8], &[8, 16, 7, 14, 6, 5, 2, 41]);
}

#[test]
fn the_search_is_seeded_and_reproducible_on_both_cores() {
    let Some(data) = adult() else { return };
    let a = fit(&data.train, None, &small_search(4), scoring()).unwrap();
    let b = fit(&data.train, None, &small_search(4), scoring()).unwrap();
    assert_eq!(a.search.best, b.search.best);
    assert_eq!(a.model_text, b.model_text);
    // The anchor first, whatever the seed; the swarm's points follow the seed.
    let anchors: Vec<&Trial> = a
        .search
        .trials
        .iter()
        .filter(|t| t.generation == 0)
        .collect();
    assert_eq!(anchors.len(), 1);
    assert_eq!(anchors[0].params, Hyperparams::from_point(&ANCHOR));
    assert_eq!(a.search.evaluations, 4, "the anchor and three particles");
    let mut other_seed = small_search(4);
    other_seed.seed = 2;
    let c = fit(&data.train, None, &other_seed, scoring()).unwrap();
    let swarm = |o: &SearchOutcome| {
        o.trials
            .iter()
            .filter(|t| t.generation > 0)
            .map(|t| t.params)
            .collect::<Vec<_>>()
    };
    assert_eq!(swarm(&c.search).len(), 3);
    for p in swarm(&c.search) {
        assert!(
            !swarm(&a.search).contains(&p),
            "{p:?} in both seeds' swarms"
        );
    }
}

#[test]
fn the_search_gives_up_only_evaluations_that_cannot_win_and_stays_reproducible() {
    let Some(data) = adult() else { return };
    // The anchor, then ten particles measured against it.
    let pruned = small_search(20);
    let a = fit(&data.train, None, &pruned, scoring()).unwrap();
    let b = fit(&data.train, None, &pruned, scoring()).unwrap();
    // The same evaluations, given up or not, whatever order the threads finished them in.
    let sorted = |o: &SearchOutcome| {
        let mut t = o.trials.clone();
        t.sort_by(|x, y| {
            (x.generation.cmp(&y.generation)).then(x.score.logloss.total_cmp(&y.score.logloss))
        });
        t
    };
    assert_eq!(sorted(&a.search), sorted(&b.search));
    assert_eq!(a.model_text, b.model_text);

    let first_best = a
        .search
        .trials
        .iter()
        .filter(|t| t.generation == 0)
        .map(|t| t.score.logloss)
        .fold(f64::INFINITY, f64::min);
    let given_up: Vec<&Trial> = a
        .search
        .trials
        .iter()
        .filter(|t| t.score.abandoned)
        .collect();
    assert!(!given_up.is_empty(), "no evaluation was given up");
    for t in &given_up {
        assert_eq!(t.generation, 1, "{t:?}");
        assert!(t.score.logloss > first_best, "{t:?} against {first_best}");
    }

    // Run to their ends, the given-up evaluations would not have won: the same choice.
    let mut full = pruned.clone();
    full.prune = false;
    let c = fit(&data.train, None, &full, scoring()).unwrap();
    assert!(c.search.trials.iter().all(|t| !t.score.abandoned));
    assert_eq!(a.search.best, c.search.best);
    assert_eq!(a.model_text, c.model_text);
}
