//! Scoring micro-benchmarks: decoding a request's JSON, the feature transform, transform +
//! predict, and the predictor's whole per-batch CPU path (decode, transform, predict, encode the
//! predictions), alone and with a challenger scored in shadow, for one record and batches of 64
//! and 1,024 records, on one thread.
//!
//! The bundle is the one in `models/` (as `initialize` leaves it) or, when there is none, one
//! trained here with a small budget; which one is printed first.
//!
//!   cargo bench --bench scoring              # full measurement
//!   cargo bench --bench scoring -- --quick   # short mode, as in CI

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use census_stream::bundle::{Bundle, BundleStore};
use census_stream::data::{label_text, read_labeled, CensusRow, Fetch};
use census_stream::initialize::{self, InitConfig};
use census_stream::kafka::InMessage;
use census_stream::model::{Model, Scorer, Scoring, Trees};
use census_stream::predictor::score_batch;
use census_stream::registry::Serving;
use census_stream::stream::decode::decode_request;
use census_stream::train::SearchConfig;

const BATCHES: [usize; 3] = [1, 64, 1024];

struct Fixture {
    bundle: std::sync::Arc<Bundle>,
    model_text: String,
    payloads: Vec<Vec<u8>>,
    rows: Vec<CensusRow>,
    _temp: Option<tempfile::TempDir>,
}

/// The bundle's trees scored by `scorer` (not strict: a model that differs is scored by LightGBM,
/// logged).
fn scored_by(scorer: Scorer) -> Scoring {
    Scoring {
        scorer,
        ..Scoring::default()
    }
}

fn fixture() -> Fixture {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data_dir = root.join("data");
    let repo_store = BundleStore::new(root.join("models"), root.join("dataprocessors"));
    let (store, temp) = match repo_store.current() {
        Ok(Some(_)) => (repo_store, None),
        _ => {
            let temp = tempfile::tempdir().expect("temp dir");
            let store = BundleStore::new(temp.path().join("m"), temp.path().join("p"));
            let mut config = InitConfig::new(
                store.clone(),
                SearchConfig::with_budget(std::num::NonZeroUsize::new(5).unwrap()),
            );
            config.data_dir = data_dir.clone();
            config.fetch = Fetch::default();
            initialize::run(&config).expect("initialize for the benchmark");
            (store, Some(temp))
        }
    };
    let bundle = store
        .load_current(Scoring::default())
        .expect("bundle loads");
    let model_text = String::from_utf8(
        store
            .read_files(bundle.manifest.version)
            .expect("bundle files")
            .model_text,
    )
    .expect("model text");
    eprintln!(
        "bundle v{} from {}: {} trees, num_leaves {}, scored by {:?}",
        bundle.manifest.version,
        if temp.is_some() {
            "a 5-evaluation initialize (no bundle in models/)"
        } else {
            "models/"
        },
        bundle.manifest.cv.best_rounds,
        bundle.manifest.hyperparams.num_leaves,
        bundle.model.scorer(),
    );
    let test = read_labeled(&data_dir.join("adult.test")).expect("adult.test");
    let payloads = test
        .iter()
        .take(1024)
        .enumerate()
        .map(|(i, r)| {
            serde_json::to_vec(&serde_json::json!({
                "request_id": format!("bench-{i:06}"),
                "sent_at_ms": 1_764_000_000_000_i64,
                "income_bracket": label_text(r.label),
                "record": r.row,
            }))
            .unwrap()
        })
        .collect();
    let rows = test.into_iter().take(1024).map(|r| r.row).collect();
    Fixture {
        bundle: std::sync::Arc::new(bundle),
        model_text,
        payloads,
        rows,
        _temp: temp,
    }
}

fn scoring(c: &mut Criterion) {
    let f = fixture();

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1", |b| {
        b.iter(|| decode_request(Some(black_box(&f.payloads[0]))).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("transform");
    for n in BATCHES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                f.bundle
                    .processor
                    .transform_batch(black_box(&f.rows[..n]).iter())
            })
        });
    }
    g.finish();

    // The model alone, on the features of adult.test rows: the compiled trees and the native
    // walk against LightGBM's own predict (one thread: LightGBM is built without OpenMP; the
    // compiled trees split batches of 256 rows or more across rayon's threads, which
    // RAYON_NUM_THREADS=1 keeps to one).
    let features = f.bundle.processor.transform_batch(f.rows.iter());
    let m = features.len() / f.rows.len();
    let compiled = Instant::now();
    let model = Model::from_text(&f.model_text, scored_by(Scorer::Compiled)).expect("model");
    eprintln!(
        "model loaded, compiled and checked on the canary set in {:.1} ms",
        compiled.elapsed().as_secs_f64() * 1e3
    );
    let lightgbm = Instant::now();
    let _ = Model::from_text(&f.model_text, scored_by(Scorer::LightGbm)).expect("model");
    eprintln!(
        "model loaded by LightGBM alone in {:.1} ms",
        lightgbm.elapsed().as_secs_f64() * 1e3
    );
    for scorer in [Scorer::Compiled, Scorer::Native, Scorer::LightGbm] {
        let model = Model::from_text(&f.model_text, scored_by(scorer)).expect("model");
        assert_eq!(
            model.scorer(),
            scorer,
            "the {scorer:?} scorer did not pass its canary check"
        );
        let mut g = c.benchmark_group(format!("predict_{}", scorer.name()));
        for n in BATCHES {
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                let x = &features[..n * m];
                b.iter(|| model.predict(black_box(x)).unwrap())
            });
        }
        // One row at a time, each the next of 1,024 different rows (the same row again and
        // again lets the branch predictor learn its path).
        g.throughput(Throughput::Elements(1));
        g.bench_function("1_of_1024", |b| {
            let mut rows = features.chunks_exact(m).cycle();
            b.iter(|| model.predict(black_box(rows.next().unwrap())).unwrap())
        });
        g.finish();
    }
    drop(model);

    // TreeSHAP contributions (one per feature and the expected value): ours on the parsed trees (by
    // the recursion, and from the tables that serve),
    // one thread, against LightGBM's predict_contrib with its default (OpenMP) threads.
    let trees = Trees::from_text(&f.model_text).expect("trees");
    let booster = lightgbm3::Booster::from_string(&f.model_text).expect("booster");
    let mut out = Vec::new();
    let mut g = c.benchmark_group("contributions_ours");
    for n in [1, 1024] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let x = &features[..n * m];
            b.iter(|| trees.contributions_into(black_box(x), &mut out).unwrap())
        });
    }
    g.finish();
    let tables = census_stream::model::ShapTables::new(trees.clone(), 64 << 20);
    println!(
        "TreeSHAP tables: {} of {} trees, {} KiB",
        tables.tabled_trees(),
        trees.n_trees(),
        tables.table_bytes() / 1024
    );
    let mut g = c.benchmark_group("contributions_tables");
    for n in [1, 1024] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let x = &features[..n * m];
            b.iter(|| tables.contributions_into(black_box(x), &mut out).unwrap())
        });
    }
    g.finish();
    let mut g = c.benchmark_group("contributions_lightgbm");
    for n in [1, 1024] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let x = &features[..n * m];
            b.iter(|| {
                booster
                    .predict_contrib(black_box(x), m as i32, true)
                    .unwrap()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("transform_predict");
    for n in BATCHES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| f.bundle.predict(black_box(&f.rows[..n]).iter()).unwrap())
        });
    }
    g.finish();

    let serving = Serving {
        champion: f.bundle.clone(),
        challenger: None,
    };
    let messages: Vec<InMessage> = f
        .payloads
        .iter()
        .enumerate()
        .map(|(i, p)| InMessage {
            topic: "census.requests".into(),
            partition: 0,
            offset: i as i64,
            key: None,
            payload: Some(p.clone()),
            timestamp_ms: None,
        })
        .collect();
    let mut g = c.benchmark_group("score_batch");
    for n in BATCHES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| score_batch(&serving, black_box(&messages[..n])))
        });
    }
    g.finish();

    // The same with a challenger scored in shadow (here the same bundle: the cost is the same
    // for any bundle of that size).
    let shadowed = Serving {
        champion: f.bundle.clone(),
        challenger: Some(f.bundle.clone()),
    };
    let mut g = c.benchmark_group("score_batch_with_shadow");
    for n in BATCHES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| score_batch(&shadowed, black_box(&messages[..n])))
        });
    }
    g.finish();
}

criterion_group!(benches, scoring);
criterion_main!(benches);
