//! The retrainer: keeps every labeled row of `census.requests`, retrains every N rows, stores and
//! announces each new bundle version on `census.models`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use census_stream::cli::{
    self, serve_metrics, shutdown_on_signals, Check, Contradiction, DataArgs, Given, KafkaArgs,
    MemberArgs, PromotionArgs, RetrainerGroup, SearchArgs, ShutdownArgs, StoreArgs, StrictArgs,
    TrackingArgs, TriggerArgs,
};
use census_stream::defaults;
use census_stream::retrainer::{run, Retention, RetrainerConfig};
use census_stream::settings::{positive, positive_number};
use census_stream::util::session_group;
use census_stream::util::slot::HostSlot;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    shutdown: ShutdownArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    strict: StrictArgs,
    #[command(flatten)]
    data: DataArgs,
    /// File keeping the labeled stream rows (default: stream_rows.jsonl in the models folder).
    #[arg(long)]
    rows_file: Option<PathBuf>,
    /// File keeping the join of requests to labels (default: label_join.jsonl in the models
    /// folder).
    #[arg(long)]
    join_file: Option<PathBuf>,
    /// Seconds a request waits for its label on census.labels (and a label for its request)
    /// before it expires; a label that comes later is dead-lettered as unmatched_label.
    #[arg(long, default_value_t = defaults::LABEL_WINDOW.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    label_window_secs: u64,
    /// Stream rows kept in the rows file and trained on (beside adult.data's): the newest this
    /// many; older ones are compacted away.
    #[arg(long, default_value_t = defaults::ROWS_KEEP.try_into().expect("not 0"), value_parser = positive)]
    rows_keep: NonZeroUsize,
    /// Also drop stream rows stored more than this many hours ago (default: kept by count only).
    #[arg(long, value_parser = positive_number)]
    rows_max_age_hours: Option<f64>,
    /// Versions kept beside the champion, the challenger, the previous champion and a pinned
    /// one: the newest this many. Older ones are retired (a tombstone on census.models, their
    /// local files removed).
    #[arg(long, default_value_t = defaults::KEEP_VERSIONS.try_into().expect("not 0"), value_parser = positive)]
    keep_versions: NonZeroUsize,
    /// The nice value of the training threads (0 to 19; 0: as the retrainer's own): higher
    /// leaves the cores to predictors on the same host while a retrain runs.
    #[arg(long, default_value_t = defaults::TRAIN_NICE, value_parser = clap::value_parser!(i32).range(0..=19))]
    train_nice: i32,
    /// The nice value of the retrainer's scheduling group (Linux: its session's autogroup; 0 to
    /// 19; 0 leaves it). Set only while no other process shares its session but its shell:
    /// start it from its own terminal, with `setsid`, or as a service. Services of other
    /// sessions then keep their cores while it trains.
    #[arg(long, default_value_t = defaults::SESSION_NICE, value_parser = clap::value_parser!(i32).range(0..=19))]
    session_nice: i32,
    /// Retrain after this many new labeled rows.
    #[arg(long, default_value_t = defaults::RETRAIN_EVERY, value_parser = positive)]
    retrain_every: NonZeroUsize,
    /// Hyperparameter evaluations per retrain.
    #[arg(long, default_value_t = defaults::RETRAIN_MAX_EVALS, value_parser = positive)]
    max_evals: NonZeroUsize,
    #[command(flatten)]
    search: SearchArgs,
    #[command(flatten)]
    promotion: PromotionArgs,
    #[command(flatten)]
    triggers: TriggerArgs,
    #[command(flatten)]
    member: MemberArgs<RetrainerGroup>,
    #[command(flatten)]
    tracking: TrackingArgs,
}

/// The retrainer's settings, its flags checked.
struct Settings {
    config: RetrainerConfig,
    metrics_addr: Option<SocketAddr>,
    tracking: TrackingArgs,
    /// The host slot its instance name holds, while it runs.
    _slot: Option<HostSlot>,
    deadline: std::time::Duration,
    session_nice: i32,
}

impl Check for Flags {
    type Valid = Settings;

    fn check(self, given: &Given) -> Result<Settings, Contradiction> {
        let mut config = RetrainerConfig::new(self.kafka.settings(), self.store.store());
        config.promotion = self.promotion.promotion(given)?;
        config.shuffle_labels = self.promotion.shuffle_labels;
        config.biased_challenger = self.promotion.biased_challenger;
        let (instance, slot) = self.member.instance()?;
        config.instance_id = instance;
        config.group = self.member.group;
        config.max_batch = self.member.max_batch;
        config.scoring = self.strict.scoring();
        config.data_dir = self.data.data_dir;
        if let Some(f) = self.rows_file {
            config.rows_file = f;
        }
        if let Some(f) = self.join_file {
            config.join_file = f;
        }
        config.label_window = std::time::Duration::from_secs(self.label_window_secs);
        config.retrain_every = self.retrain_every;
        config.keep_versions = self.keep_versions;
        config.retention = Retention {
            keep_rows: self.rows_keep.get(),
            max_age: self
                .rows_max_age_hours
                .map(|h| std::time::Duration::from_secs_f64(h * 3600.0)),
        };
        config.search = self.search.config(self.max_evals);
        config.search.nice = self.train_nice;
        config.triggers = self.triggers.triggers();
        Ok(Settings {
            config,
            metrics_addr: self.member.metrics.metrics_addr,
            tracking: self.tracking,
            _slot: slot,
            deadline: self.shutdown.deadline(),
            session_nice: self.session_nice,
        })
    }
}

fn main() -> anyhow::Result<()> {
    census_stream::cli::run_service(serve())
}

async fn serve() -> anyhow::Result<()> {
    census_stream::util::logging::init();
    let Settings {
        mut config,
        metrics_addr,
        tracking,
        _slot,
        deadline,
        session_nice,
    } = cli::parse::<Flags>();
    config.tracking = tracking.tracker();
    let tracker = config.tracking.clone();
    let shutdown = shutdown_on_signals(
        "storing the batch in hand, committing, stopping any retrain",
        Some(deadline),
    );
    serve_metrics(
        metrics_addr,
        |r| config.metrics.register(r),
        config.health.clone(),
        shutdown.clone(),
    )
    .await?;
    let group_stop = shutdown.child_token();
    let group = tokio::spawn(session_group::keep(
        session_nice,
        defaults::SESSION_CHECK,
        group_stop.clone(),
    ));
    let result = run(config, shutdown, |_| {}).await;
    group_stop.cancel();
    group.await?; // its session's group back at nice 0
    if let Some(tracker) = tracker {
        let wait = tracking.wait();
        tokio::task::spawn_blocking(move || tracker.finish(wait)).await?;
    }
    let stats = result.context("retrainer failed")?;
    println!(
        "{} labeled rows stored, {} records skipped, versions made {:?}, decisions [{}]; {}",
        stats.rows,
        stats.skipped,
        stats.versions,
        stats
            .decisions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        census_stream::util::peak_memory::peak_rss_line()
    );
    Ok(())
}
