//! Builds the feature processor, searches LightGBM hyperparameters by cross-validation, trains
//! the final model and stores it as a new bundle version.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{default_threads, StoreArgs, DEFAULT_DATA_DIR};
use census_stream::data::Fetch;
use census_stream::initialize::{run, InitConfig};
use census_stream::train::SearchConfig;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// Folder holding adult.data and adult.test (downloaded from UCI if missing).
    #[arg(long, env = "CENSUS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Never download missing data files.
    #[arg(long)]
    offline: bool,
    /// Hyperparameter evaluations (each one a full cross-validation).
    #[arg(long, default_value_t = 50)]
    max_evals: usize,
    /// Seed of the folds, the search and LightGBM.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 3)]
    folds: usize,
    /// Evaluations run in parallel (default: all cores).
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// Do nothing if the store already has a current bundle (for scripted set-ups that run this
    /// on every start).
    #[arg(long)]
    if_missing: bool,
    #[command(flatten)]
    store: StoreArgs,
}

fn main() -> anyhow::Result<()> {
    census_stream::logging::init();
    let flags = Flags::parse();
    if flags.if_missing {
        if let Some(v) = flags.store.store().current().context("reading the store")? {
            println!(
                "bundle v{v} is already in {}: nothing to do (--if-missing)",
                flags.store.models_dir.display()
            );
            return Ok(());
        }
    }
    let config = InitConfig {
        data_dir: flags.data_dir,
        fetch: if flags.offline {
            Fetch::Never
        } else {
            Fetch::default()
        },
        store: flags.store.store(),
        search: SearchConfig {
            max_evals: flags.max_evals,
            folds: flags.folds,
            seed: flags.seed,
            threads: flags.threads,
            progress: std::io::stderr().is_terminal(),
        },
    };
    let started = std::time::Instant::now();
    let manifest = run(&config).context("initialize failed")?;
    println!(
        "bundle v{} written to {} (CV log loss {:.5}, {} rounds, {} evaluations, {:.1} s in all; {})",
        manifest.version,
        flags.store.models_dir.display(),
        manifest.cv.log_loss,
        manifest.cv.best_rounds,
        manifest.cv.evaluations,
        started.elapsed().as_secs_f64(),
        census_stream::memory::peak_rss_line()
    );
    if let Some(m) = manifest.test_metrics {
        println!("\ntest set (adult.test):\n{}", m.table());
    }
    Ok(())
}
