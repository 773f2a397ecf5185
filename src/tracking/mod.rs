//! MLflow tracking, optional: every bundle version becomes a run of an MLflow experiment (its
//! search's parameters, the CV log loss of each evaluation, its test metrics, its files as
//! artifacts) and a version of a registered model whose `champion` and `challenger` aliases
//! follow the registry's. A small client of MLflow's REST API does it on a thread of its own:
//! callers only queue, so a tracking server that is down or slow never holds up training or
//! publishing; it is warned about once, and tried again in the background.
//!
//! This module knows bundles, not services: `initialize` and the retrainer say what to log.

mod client;
mod record;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use client::MlflowError;
pub use record::{Artifact, VersionRecord, BUNDLE_VERSION_TAG};

use worker::{Job, Shared, VersionJob};

/// The aliases of the registered model, named as the registry's.
pub const CHAMPION: &str = "champion";
pub const CHALLENGER: &str = "challenger";

/// Jobs waiting at most: beyond, new ones are dropped with a warning (a server down for long
/// must not grow a service's memory without bound).
const MAX_QUEUED: usize = 1000;

/// Where and under which names to log.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackingConfig {
    /// The tracking server, `http://host:port` (with a path prefix if it has one).
    pub uri: String,
    /// The experiment of the runs, created when missing.
    pub experiment: String,
    /// The registered model of the versions, created when missing.
    pub model_name: String,
}

impl TrackingConfig {
    /// Logs to the server at `uri` with the default experiment and model names.
    pub fn new(uri: &str) -> Result<Self, String> {
        Ok(TrackingConfig {
            uri: tracking_uri(uri)?,
            experiment: crate::defaults::MLFLOW_EXPERIMENT.into(),
            model_name: crate::defaults::MLFLOW_MODEL.into(),
        })
    }
}

/// A tracking URI this client can use: an `http://` or `https://` server (MLflow's other
/// forms, a local folder or a database, need MLflow's Python client).
pub fn tracking_uri(uri: &str) -> Result<String, String> {
    let uri = uri.trim();
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"));
    match rest {
        Some(host) if !host.trim_matches('/').is_empty() => {
            Ok(uri.trim_end_matches('/').to_owned())
        }
        _ => Err(format!(
            "'{uri}' is not the http(s) address of an MLflow tracking server \
             (e.g. http://127.0.0.1:5000)"
        )),
    }
}

/// A handle on the tracking worker; clones share it. When the last one is dropped, the worker
/// stops, whatever it had left: [`Tracker::wait`] first to let it finish.
#[derive(Clone)]
pub struct Tracker {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    uri: String,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut q = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        q.closed = true;
        self.shared.changed.notify_all();
    }
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracker({})", self.handle.uri)
    }
}

impl Tracker {
    /// Starts the worker thread; nothing is sent before the first job.
    pub fn start(config: TrackingConfig) -> Self {
        let shared = Arc::new(Shared::default());
        let uri = config.uri.clone();
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("mlflow-tracking".into())
            .spawn(move || worker::run(worker, config))
            .expect("spawning the MLflow tracking thread");
        Tracker {
            handle: Arc::new(Handle { shared, uri }),
        }
    }

    pub fn uri(&self) -> &str {
        &self.handle.uri
    }

    /// Queues a bundle version: its run, and its model version unless `record.register` is off.
    pub fn log_version(&self, record: VersionRecord) {
        self.push(Job::Version(Box::new(VersionJob::new(record))));
    }

    /// Queues pointing `alias` at the model version of bundle `version`.
    pub fn set_alias(&self, alias: &str, version: u32) {
        self.push(Job::Alias {
            alias: alias.to_owned(),
            version: Some(version),
        });
    }

    /// Queues removing `alias`.
    pub fn remove_alias(&self, alias: &str) {
        self.push(Job::Alias {
            alias: alias.to_owned(),
            version: None,
        });
    }

    fn push(&self, job: Job) {
        let shared = &self.handle.shared;
        let mut q = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if q.jobs.len() >= MAX_QUEUED {
            tracing::warn!(
                "MLflow: {MAX_QUEUED} operations are waiting for the tracking server at {}; \
                 this one is dropped",
                self.handle.uri
            );
            return;
        }
        q.jobs.push_back(job);
        q.outstanding += 1;
        shared.changed.notify_all();
    }

    /// Operations queued or in progress.
    pub fn pending(&self) -> usize {
        let q = self.handle.shared.state.lock();
        q.unwrap_or_else(|e| e.into_inner()).outstanding
    }

    /// Waits up to `timeout` for every queued operation to be done; returns how many are not.
    pub fn wait(&self, timeout: Duration) -> usize {
        let shared = &self.handle.shared;
        let deadline = Instant::now() + timeout;
        let mut q = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while q.outstanding > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            q = shared
                .changed
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        q.outstanding
    }

    /// For a process about to exit: [`Self::wait`], and a warning naming what was not logged.
    pub fn finish(&self, timeout: Duration) {
        let left = self.wait(timeout);
        if left > 0 {
            tracing::warn!(
                "MLflow: {left} operation(s) not logged: the tracking server at {} did not take \
                 them within {:.0} s",
                self.uri(),
                timeout.as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
impl Tracker {
    /// A tracker without a worker: its jobs stay queued, for tests to read.
    pub(crate) fn idle() -> Self {
        Tracker {
            handle: Arc::new(Handle {
                shared: Arc::new(Shared::default()),
                uri: "http://idle".into(),
            }),
        }
    }

    /// The queued jobs, described.
    pub(crate) fn queued(&self) -> Vec<String> {
        let q = self.handle.shared.state.lock().unwrap();
        q.jobs.iter().map(Job::describe).collect()
    }

    /// The records of the queued versions.
    pub(crate) fn queued_records(&self) -> Vec<VersionRecord> {
        let q = self.handle.shared.state.lock().unwrap();
        q.jobs
            .iter()
            .filter_map(|j| match j {
                Job::Version(v) => Some(v.record.clone()),
                Job::Alias { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_servers_are_tracking_uris() {
        assert_eq!(
            tracking_uri("http://127.0.0.1:5000/").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            tracking_uri("https://mlflow.example.com/prefix").unwrap(),
            "https://mlflow.example.com/prefix"
        );
        for bad in ["", "./mlruns", "databricks", "file:///tmp/x", "http://"] {
            assert!(tracking_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_server_that_is_down_leaves_the_work_pending_and_the_caller_free() {
        // A closed port: nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tracker =
            Tracker::start(TrackingConfig::new(&format!("http://127.0.0.1:{port}")).unwrap());
        let started = Instant::now();
        tracker.set_alias("champion", 1);
        tracker.remove_alias("challenger");
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "queuing never waits"
        );
        assert_eq!(tracker.wait(Duration::from_millis(300)), 2);
        assert_eq!(tracker.pending(), 2);
    }
}
