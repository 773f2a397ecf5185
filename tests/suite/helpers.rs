//! Shared test fixtures: the Adult data folder and a bundle trained once for the whole suite.

use std::path::PathBuf;
use std::sync::OnceLock;

use census_stream::bundle::BundleStore;
use census_stream::data::{ensure_file, load_adult, AdultData, Fetch};
use census_stream::initialize::{run, InitConfig};
use census_stream::train::SearchConfig;

/// The project's data folder, with adult.data and adult.test in it. Outside CI, missing files are
/// downloaded when possible and the test is skipped otherwise; in CI (`CI=true`) missing data
/// fails the test.
pub fn adult_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
    let fetched = ["adult.data", "adult.test"]
        .iter()
        .map(|f| ensure_file(&dir, f, &Fetch::default()))
        .collect::<Result<Vec<_>, _>>();
    match fetched {
        Ok(_) => Some(dir),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI needs the Adult data set in data/: {e}")
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

pub fn adult() -> Option<&'static AdultData> {
    static DATA: OnceLock<Option<AdultData>> = OnceLock::new();
    DATA.get_or_init(|| adult_dir().map(|dir| load_adult(&dir, &Fetch::Never).expect("data loads")))
        .as_ref()
}

/// A store in a fresh temporary folder.
pub fn temp_store() -> (tempfile::TempDir, BundleStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = BundleStore::new(dir.path().join("models"), dir.path().join("dataprocessors"));
    (dir, store)
}

/// The search settings of the suite: a small budget, both cores.
pub fn small_search(max_evals: usize) -> SearchConfig {
    SearchConfig {
        max_evals,
        folds: 3,
        seed: 1,
        threads: 2,
        progress: false,
    }
}

/// A bundle made once by `initialize` with a small budget, shared by the tests that only read it.
pub struct Initialized {
    pub _dir: tempfile::TempDir,
    pub store: BundleStore,
    pub version: u32,
}

pub fn initialized() -> Option<&'static Initialized> {
    static INIT: OnceLock<Option<Initialized>> = OnceLock::new();
    INIT.get_or_init(|| {
        let data_dir = adult_dir()?;
        let (dir, store) = temp_store();
        let config = InitConfig {
            data_dir,
            fetch: Fetch::Never,
            store: store.clone(),
            search: small_search(5),
        };
        let manifest = run(&config).expect("initialize runs");
        Some(Initialized {
            _dir: dir,
            store,
            version: manifest.version,
        })
    })
    .as_ref()
}
