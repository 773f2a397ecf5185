//! Builds the feature processor, searches LightGBM hyperparameters by cross-validation, trains
//! the final model and stores it as a new bundle version.

use std::io::IsTerminal;
use std::num::NonZeroUsize;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{DataArgs, SearchArgs, StoreArgs, StrictArgs, TrackingArgs};
use census_stream::data::Fetch;
use census_stream::defaults;
use census_stream::initialize::{run, InitConfig, Initialized};
use census_stream::settings::positive;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    data: DataArgs,
    /// Never download missing data files.
    #[arg(long)]
    offline: bool,
    /// Hyperparameter evaluations (each one a full cross-validation).
    #[arg(long, default_value_t = defaults::INIT_MAX_EVALS, value_parser = positive)]
    max_evals: NonZeroUsize,
    #[command(flatten)]
    search: SearchArgs,
    /// Do nothing if the store already has a current bundle this build loads (for scripted
    /// set-ups that run this on every start); if it has one it cannot load (made by an older
    /// build, or damaged), train a new version beside it.
    #[arg(long)]
    if_missing: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    strict: StrictArgs,
    #[command(flatten)]
    tracking: TrackingArgs,
}

fn main() -> anyhow::Result<()> {
    census_stream::util::logging::init();
    let flags = Flags::parse();
    let mut search = flags.search.config(flags.max_evals);
    search.progress = std::io::stderr().is_terminal();
    let mut config = InitConfig::new(flags.store.store(), search);
    config.data_dir = flags.data.data_dir;
    config.scoring = flags.strict.scoring();
    config.fetch = if flags.offline {
        Fetch::Never
    } else {
        Fetch::default()
    };
    config.if_missing = flags.if_missing;
    config.tracking = flags.tracking.tracker();
    let started = std::time::Instant::now();
    let manifest = match run(&config).context("initialize failed")? {
        Initialized::AlreadyThere(v) => {
            println!(
                "bundle v{v} is already in {}: nothing to do (--if-missing)",
                flags.store.models_dir.display()
            );
            return Ok(());
        }
        Initialized::Trained(m) => *m,
    };
    println!(
        "bundle v{} written to {} (CV log loss {:.5}, {} rounds, {} evaluations, {:.1} s in all; {})",
        manifest.version,
        flags.store.models_dir.display(),
        manifest.cv.log_loss,
        manifest.cv.best_rounds,
        manifest.cv.evaluations,
        started.elapsed().as_secs_f64(),
        census_stream::util::peak_memory::peak_rss_line()
    );
    if let Some(m) = manifest.test_metrics {
        println!("\ntest set (adult.test):\n{}", m.table());
    }
    // The new version is queued for MLflow: give the tracking server a bounded time to take it.
    if let Some(tracker) = &config.tracking {
        tracker.finish(flags.tracking.wait());
    }
    Ok(())
}
