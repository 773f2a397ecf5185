//! The tracker's worker thread: takes jobs from the queue in order and does each with the
//! client, step by step. A step that fails because the server is down, slow or failing is
//! tried again after a growing pause (warned once per outage), from where it failed; a step
//! the server refuses is given up with a warning. Nobody waits for it but [`super::Tracker::wait`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::client::{Client, Metric, MlflowError, Run};
use super::record::{VersionRecord, BUNDLE_VERSION_TAG};
use super::TrackingConfig;

/// Pause after the first failure; it doubles on each failure after it, up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Something to tell MLflow.
#[derive(Debug, Clone)]
pub enum Job {
    /// A new bundle version: its run and model version.
    Version(Box<VersionJob>),
    /// Points `alias` at the model version of bundle `version`, or removes it (None).
    Alias { alias: String, version: Option<u32> },
}

/// A version's record and how far logging it went.
#[derive(Debug, Clone)]
pub struct VersionJob {
    pub record: VersionRecord,
    run: Option<Run>,
    logged: bool,
    uploaded: usize,
    finished: bool,
}

impl VersionJob {
    pub fn new(record: VersionRecord) -> Self {
        VersionJob {
            record,
            run: None,
            logged: false,
            uploaded: 0,
            finished: false,
        }
    }
}

impl Job {
    pub fn describe(&self) -> String {
        match self {
            Job::Version(j) => format!("the run of bundle v{}", j.record.version),
            Job::Alias {
                alias,
                version: Some(v),
            } => format!("alias {alias} → bundle v{v}"),
            Job::Alias {
                alias,
                version: None,
            } => format!("removing alias {alias}"),
        }
    }
}

/// The queue shared by the tracker's handles and its worker.
#[derive(Default)]
pub struct Shared {
    pub state: Mutex<Queue>,
    pub changed: Condvar,
}

#[derive(Default)]
pub struct Queue {
    pub jobs: VecDeque<Job>,
    /// Jobs queued or in progress.
    pub outstanding: usize,
    /// Every handle is gone: the worker stops.
    pub closed: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One job finished or given up.
    fn done(&self) {
        let mut q = self.lock();
        q.outstanding -= 1;
        self.changed.notify_all();
    }

    /// The next job; None once closed.
    fn next(&self) -> Option<Job> {
        let mut q = self.lock();
        loop {
            if q.closed {
                return None;
            }
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Sleeps `pause`, or less if closed meanwhile; false if closed.
    fn pause(&self, pause: Duration) -> bool {
        let q = self.lock();
        let (q, _) = self
            .changed
            .wait_timeout_while(q, pause, |q| !q.closed)
            .unwrap_or_else(|e| e.into_inner());
        !q.closed
    }
}

/// What the worker learned from the server, kept between jobs.
#[derive(Default)]
struct Session {
    experiment_id: Option<String>,
    model_created: bool,
    /// MLflow's model version of each bundle version registered by this worker.
    model_versions: HashMap<u32, String>,
}

/// Why a job stopped short.
enum Failed {
    /// Try again later.
    Transient(MlflowError),
    /// Give up the job.
    Refused(MlflowError),
}

impl From<MlflowError> for Failed {
    fn from(e: MlflowError) -> Self {
        if e.is_transient() {
            Failed::Transient(e)
        } else {
            Failed::Refused(e)
        }
    }
}

/// Runs the worker until every handle is gone.
pub fn run(shared: Arc<Shared>, config: TrackingConfig) {
    let client = Client::new(&config.uri);
    let mut session = Session::default();
    let mut failing = false;
    let mut backoff = MIN_BACKOFF;
    while let Some(mut job) = shared.next() {
        loop {
            match attempt(&client, &config, &mut session, &mut job) {
                Ok(()) => {
                    if failing {
                        tracing::info!("MLflow tracking at {} works again", config.uri);
                        failing = false;
                    }
                    backoff = MIN_BACKOFF;
                    break;
                }
                Err(Failed::Refused(e)) => {
                    tracing::warn!(
                        "MLflow at {} refused {}: {}; it is left out",
                        config.uri,
                        job.describe(),
                        crate::error_chain(&e)
                    );
                    break;
                }
                Err(Failed::Transient(e)) => {
                    if failing {
                        tracing::debug!("MLflow tracking at {} failed again: {e}", config.uri);
                    } else {
                        tracing::warn!(
                            "MLflow tracking at {} failed: {}; training and publishing go on, \
                             and tracking is retried in the background",
                            config.uri,
                            crate::error_chain(&e)
                        );
                        failing = true;
                    }
                    if !shared.pause(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        shared.done();
    }
}

/// Does what is left of `job`.
fn attempt(
    client: &Client,
    config: &TrackingConfig,
    session: &mut Session,
    job: &mut Job,
) -> Result<(), Failed> {
    match job {
        Job::Version(j) => log_version(client, config, session, j),
        Job::Alias { alias, version } => {
            let Some(v) = *version else {
                return Ok(client.delete_alias(&config.model_name, alias)?);
            };
            let found = match session.model_versions.get(&v) {
                Some(n) => Some(n.clone()),
                None => client.find_model_version(
                    &config.model_name,
                    BUNDLE_VERSION_TAG,
                    &v.to_string(),
                )?,
            };
            match found {
                Some(n) => Ok(client.set_alias(&config.model_name, alias, &n)?),
                None => {
                    tracing::warn!(
                        "MLflow: {} has no version of bundle v{v} (it was not logged); alias \
                         {alias} left as it is",
                        config.model_name
                    );
                    Ok(())
                }
            }
        }
    }
}

fn log_version(
    client: &Client,
    config: &TrackingConfig,
    session: &mut Session,
    job: &mut VersionJob,
) -> Result<(), Failed> {
    let VersionJob {
        record: r,
        run,
        logged,
        uploaded,
        finished,
    } = job;
    let experiment = match &session.experiment_id {
        Some(id) => id.clone(),
        None => {
            let id = client.experiment_id(&config.experiment)?;
            session.experiment_id = Some(id.clone());
            id
        }
    };
    let run = match run {
        Some(run) => run.clone(),
        None => run
            .insert(client.create_run(&experiment, &r.run_name, r.started_ms, &[])?)
            .clone(),
    };
    if !*logged {
        let t = r.finished_ms;
        let point = |key: &str, value: f64, step: i64| Metric {
            key: key.to_owned(),
            value,
            step,
            timestamp_ms: t,
        };
        let mut metrics: Vec<Metric> = r
            .evaluations
            .iter()
            .enumerate()
            .map(|(i, &loss)| point("cv_log_loss", loss, i as i64 + 1))
            .collect();
        metrics.extend(r.metrics.iter().map(|(k, v)| point(k, *v, 0)));
        client.log_batch(&run.id, &r.params, &metrics, &r.tags)?;
        *logged = true;
    }
    while let Some(a) = r.artifacts.get(*uploaded) {
        let bytes = match std::fs::read(&a.file) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(
                    "MLflow: artifact {} left out: reading {}: {e}",
                    a.path,
                    a.file.display()
                );
                *uploaded += 1;
                continue;
            }
        };
        match client.upload(&run.artifact_uri, &a.path, &bytes) {
            Ok(()) => *uploaded += 1,
            Err(e) if !e.is_transient() => {
                tracing::warn!(
                    "MLflow: the artifacts of bundle v{} are left out: {}",
                    r.version,
                    crate::error_chain(&e)
                );
                *uploaded = r.artifacts.len();
            }
            Err(e) => return Err(Failed::Transient(e)),
        }
    }
    if !*finished {
        client.finish_run(&run.id, r.finished_ms)?;
        *finished = true;
    }
    if r.register {
        if !session.model_created {
            client.ensure_registered_model(&config.model_name)?;
            session.model_created = true;
        }
        let description = format!("census-stream bundle v{}", r.version);
        let n = client.create_model_version(
            &config.model_name,
            &run,
            &description,
            &r.model_version_tags(),
        )?;
        tracing::info!(
            "MLflow: bundle v{} logged as run {} and version {n} of {}",
            r.version,
            run.id,
            config.model_name
        );
        session.model_versions.insert(r.version, n);
    }
    Ok(())
}
