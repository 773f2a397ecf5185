//! The demo: the whole pipeline in one process. An embedded broker unless brokers are given;
//! `initialize` with a small budget if there is no bundle; then a predictor, the retrainer and
//! the producer streaming adult.test (with a few malformed records, to show the dead-letter
//! topic). Ends by itself with a summary.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bundle::BundleStore;
use crate::data::{ensure_file, read_labeled, Fetch};
use crate::initialize::{self, InitConfig};
use crate::predictor::{self, PredictorConfig};
use crate::producer::{self, Input, ProducerConfig, Summary};
use crate::retrainer::{self, RetrainerConfig};
use crate::stream::embedded::kafka_or_embedded;
use crate::stream::StreamError;
use crate::train::SearchConfig;

#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Kafka to use; `None` starts the embedded broker.
    pub brokers: Option<String>,
    pub data_dir: PathBuf,
    pub store: BundleStore,
    pub rows: usize,
    pub rate: f64,
    pub retrain_every: usize,
    pub max_evals: usize,
    pub threads: usize,
    pub partitions: i32,
}

/// Malformed records mixed into the demo stream, one of each dead-letter reason.
const BAD_RECORDS: [&str; 4] = [
    "this is not JSON",
    r#"{"record": {"age": 40}}"#,
    r#"{"record": {"age": "forty", "workclass": "Private", "fnlwgt": 1, "education": "HS-grad", "education_num": 9, "marital_status": "Divorced", "occupation": "Sales", "relationship": "Unmarried", "race": "White", "sex": "Female", "capital_gain": 0, "capital_loss": 0, "hours_per_week": 40, "native_country": "Peru"}}"#,
    r#"{"record": {"age": -5, "workclass": "Private", "fnlwgt": 1, "education": "HS-grad", "education_num": 9, "marital_status": "Divorced", "occupation": "Sales", "relationship": "Unmarried", "race": "White", "sex": "Female", "capital_gain": 0, "capital_loss": 0, "hours_per_week": 40, "native_country": "Peru"}}"#,
];

/// Writes the demo's input: adult.test rows as JSON lines with the bad records spread in.
fn demo_input(
    data_dir: &std::path::Path,
    rows: usize,
    out: &std::path::Path,
) -> Result<(), StreamError> {
    let test = read_labeled(&ensure_file(data_dir, "adult.test", &Fetch::default())?)?;
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(out).map_err(|e| StreamError::Io(out.display().to_string(), e))?,
    );
    let every = (rows / (BAD_RECORDS.len() + 1)).max(1);
    let mut bad = BAD_RECORDS.iter();
    for (i, r) in test.iter().cycle().take(rows).enumerate() {
        if i > 0 && i % every == 0 {
            if let Some(b) = bad.next() {
                writeln!(f, "{b}").map_err(|e| StreamError::Io(out.display().to_string(), e))?;
            }
        }
        let line = serde_json::json!({
            "income_bracket": crate::data::label_text(r.label),
            "record": r.row,
        });
        writeln!(f, "{line}").map_err(|e| StreamError::Io(out.display().to_string(), e))?;
    }
    f.flush()
        .map_err(|e| StreamError::Io(out.display().to_string(), e))
}

/// Runs the demo; returns the producer's summary.
pub async fn run(config: DemoConfig, shutdown: CancellationToken) -> Result<Summary, StreamError> {
    let work = tempfile::tempdir().map_err(|e| StreamError::Io("temp dir".into(), e))?;
    let (_broker, kafka) = kafka_or_embedded(config.brokers.as_deref(), config.partitions).await?;
    let search = SearchConfig {
        max_evals: config.max_evals,
        folds: 3,
        seed: 1,
        threads: config.threads,
        progress: false,
    };
    let init = InitConfig {
        data_dir: config.data_dir.clone(),
        fetch: Fetch::default(),
        store: config.store.clone(),
        search: search.clone(),
    };
    if let Some(m) = tokio::task::spawn_blocking(move || initialize::ensure_bundle(&init))
        .await?
        .map_err(|e| StreamError::Setup(e.to_string()))?
    {
        println!("bundle v{} ready", m.version);
    }

    let services = shutdown.child_token();
    let mut pconf = PredictorConfig::new(kafka.clone());
    pconf.store = Some(config.store.clone());
    let predictor = tokio::spawn(predictor::run(pconf, services.clone()));

    let mut rconf = RetrainerConfig::new(kafka.clone(), config.store.clone());
    rconf.data_dir = config.data_dir.clone();
    rconf.retrain_every = config.retrain_every;
    rconf.search = search;
    // A new broker starts its offsets at zero: keep this run's rows apart.
    rconf.rows_file = work.path().join("stream_rows.jsonl");
    let retrainer = tokio::spawn(retrainer::run(rconf, services.clone(), |e| {
        println!(
            ">>> retrain: v{} trained on {} stream rows, CV log loss {:.4}, in {:.1} s",
            e.version,
            e.rows,
            e.cv_log_loss,
            (e.finished_at_ms - e.started_at_ms) as f64 / 1000.0
        )
    }));

    let input = work.path().join("requests.jsonl");
    let (data_dir, rows) = (config.data_dir.clone(), config.rows);
    let input_path = input.clone();
    tokio::task::spawn_blocking(move || demo_input(&data_dir, rows, &input_path)).await??;
    let mut prod = ProducerConfig::new(kafka, Input::JsonLines(input));
    prod.rate = config.rate;
    prod.wait = Duration::from_secs(60);
    prod.show_per_sec = 4;
    let summary = producer::run(prod, shutdown.clone()).await;

    services.cancel();
    let pstats = predictor.await??;
    let rstats = retrainer.await??;
    let summary = summary?;
    println!("\n=== demo summary ===\n{}", summary.report());
    println!(
        "predictor: {} predictions, {} dead letters, versions used {:?}; retrainer: {} labeled rows, versions made {:?}",
        pstats.predicted, pstats.dead_lettered, pstats.versions, rstats.rows, rstats.versions
    );
    Ok(summary)
}
