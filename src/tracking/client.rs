//! A small client of MLflow's REST API (`/api/2.0/mlflow/...`, and the artifact proxy at
//! `/api/2.0/mlflow-artifacts/...`): only the calls the tracker makes. Every call has a connect
//! and an overall timeout, so a slow server fails a call instead of holding it.

use std::time::Duration;

use serde_json::{json, Value};

/// Connect timeout of every call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Overall timeout of every call (an artifact upload included).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Most metrics in one `runs/log-batch` call (MLflow accepts 1000).
const METRICS_PER_BATCH: usize = 500;
/// Most params in one `runs/log-batch` call (MLflow's limit).
const PARAMS_PER_BATCH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error(transparent)]
    Http(#[from] ureq::Error),
    #[error("{endpoint}: HTTP {status} {code} {message}")]
    Refused {
        endpoint: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{endpoint}: unexpected answer: {reason}")]
    Answer { endpoint: String, reason: String },
    #[error(
        "artifact location {0} is not served by the tracking server (start it with \
         --serve-artifacts, MLflow's default)"
    )]
    ArtifactsNotServed(String),
}

impl MlflowError {
    /// Worth trying again: the server was unreachable, slow, overloaded or failing, as opposed
    /// to refusing the request itself.
    pub fn is_transient(&self) -> bool {
        match self {
            MlflowError::Http(_) | MlflowError::Answer { .. } => true,
            MlflowError::Refused { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            MlflowError::ArtifactsNotServed(_) => false,
        }
    }

    fn code(&self) -> Option<&str> {
        match self {
            MlflowError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A run as MLflow created it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    /// Where its artifacts go, e.g. `mlflow-artifacts:/1/<run id>/artifacts`.
    pub artifact_uri: String,
}

/// One point of a metric's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub step: i64,
    pub timestamp_ms: i64,
}

pub struct Client {
    agent: ureq::Agent,
    /// The tracking URI without a trailing `/`.
    base: String,
}

enum Method {
    Get,
    Post,
    Delete,
}

fn pairs(kv: &[(String, String)]) -> Value {
    kv.iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect()
}

impl Client {
    pub fn new(uri: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .http_status_as_error(false)
            .build();
        Client {
            agent: config.into(),
            base: uri.trim_end_matches('/').to_owned(),
        }
    }

    /// Calls `endpoint` (under `/api/2.0/mlflow/`) and returns its JSON answer.
    fn call(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let body = body.map(Value::to_string).unwrap_or_else(|| "{}".into());
        let response = match method {
            Method::Get => {
                let mut r = self.agent.get(&url);
                for (k, v) in query {
                    r = r.query(*k, *v);
                }
                r.call()?
            }
            Method::Post => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(&body)?,
            Method::Delete => self
                .agent
                .delete(&url)
                .header("Content-Type", "application/json")
                .force_send_body()
                .send(&body)?,
        };
        answer(endpoint, response)
    }

    /// The id of the experiment named `name`, created when missing.
    pub fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        let endpoint = "experiments/get-by-name";
        match self.call(Method::Get, endpoint, &[("experiment_name", name)], None) {
            Ok(v) => return text_at(endpoint, &v, "/experiment/experiment_id"),
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => {}
            Err(e) => return Err(e),
        }
        let endpoint = "experiments/create";
        match self.call(Method::Post, endpoint, &[], Some(&json!({"name": name}))) {
            Ok(v) => text_at(endpoint, &v, "/experiment_id"),
            // Created by someone else in between.
            Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => self.experiment_id(name),
            Err(e) => Err(e),
        }
    }

    pub fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        start_ms: i64,
        tags: &[(String, String)],
    ) -> Result<Run, MlflowError> {
        let endpoint = "runs/create";
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": name,
            "start_time": start_ms,
            "tags": pairs(tags),
        });
        let v = self.call(Method::Post, endpoint, &[], Some(&body))?;
        Ok(Run {
            id: text_at(endpoint, &v, "/run/info/run_id")?,
            artifact_uri: text_at(endpoint, &v, "/run/info/artifact_uri")?,
        })
    }

    /// Logs params, metric points and tags, in as many calls as MLflow's limits need.
    pub fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[Metric],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        let param_chunks: Vec<&[(String, String)]> = params.chunks(PARAMS_PER_BATCH).collect();
        let metric_chunks: Vec<&[Metric]> = metrics.chunks(METRICS_PER_BATCH).collect();
        let calls = param_chunks.len().max(metric_chunks.len()).max(1);
        for i in 0..calls {
            let metrics: Vec<Value> = metric_chunks
                .get(i)
                .map(|c| {
                    c.iter()
                        .map(|m| {
                            json!({"key": m.key, "value": m.value, "step": m.step,
                                   "timestamp": m.timestamp_ms})
                        })
                        .collect()
                })
                .unwrap_or_default();
            let body = json!({
                "run_id": run_id,
                "params": pairs(param_chunks.get(i).copied().unwrap_or_default()),
                "metrics": metrics,
                "tags": pairs(if i == 0 { tags } else { &[] }),
            });
            self.call(Method::Post, "runs/log-batch", &[], Some(&body))?;
        }
        Ok(())
    }

    /// Uploads `bytes` as the artifact `path` of a run whose artifacts are at `artifact_uri`,
    /// through the server's artifact proxy.
    pub fn upload(&self, artifact_uri: &str, path: &str, bytes: &[u8]) -> Result<(), MlflowError> {
        let root = proxied_path(artifact_uri)
            .ok_or_else(|| MlflowError::ArtifactsNotServed(artifact_uri.to_owned()))?;
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{root}/{path}",
            self.base
        );
        let response = self.agent.put(&url).send(bytes)?;
        answer("mlflow-artifacts/artifacts", response).map(drop)
    }

    pub fn finish_run(&self, run_id: &str, end_ms: i64) -> Result<(), MlflowError> {
        let body = json!({"run_id": run_id, "status": "FINISHED", "end_time": end_ms});
        self.call(Method::Post, "runs/update", &[], Some(&body))
            .map(drop)
    }

    /// Creates the registered model `name` unless it exists.
    pub fn ensure_registered_model(&self, name: &str) -> Result<(), MlflowError> {
        let body = json!({"name": name});
        match self.call(Method::Post, "registered-models/create", &[], Some(&body)) {
            Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => Ok(()),
            r => r.map(drop),
        }
    }

    /// Creates a version of the registered model `name` from a run; returns its number.
    pub fn create_model_version(
        &self,
        name: &str,
        run: &Run,
        description: &str,
        tags: &[(String, String)],
    ) -> Result<String, MlflowError> {
        let endpoint = "model-versions/create";
        let body = json!({
            "name": name,
            "source": run.artifact_uri,
            "run_id": run.id,
            "description": description,
            "tags": pairs(tags),
        });
        let v = self.call(Method::Post, endpoint, &[], Some(&body))?;
        text_at(endpoint, &v, "/model_version/version")
    }

    /// The newest version of the registered model `name` tagged `key` = `value`, if any.
    pub fn find_model_version(
        &self,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<Option<String>, MlflowError> {
        let endpoint = "model-versions/search";
        let filter = format!(
            "name='{}' and tags.{key}='{}'",
            name.replace('\'', "\\'"),
            value.replace('\'', "\\'")
        );
        let v = self.call(Method::Get, endpoint, &[("filter", &filter)], None)?;
        let versions = v["model_versions"].as_array().cloned().unwrap_or_default();
        Ok(versions
            .iter()
            .filter_map(|m| m["version"].as_str()?.parse::<u64>().ok())
            .max()
            .map(|n| n.to_string()))
    }

    pub fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), MlflowError> {
        let body = json!({"name": name, "alias": alias, "version": version});
        self.call(Method::Post, "registered-models/alias", &[], Some(&body))
            .map(drop)
    }

    /// Removes `alias` from the registered model `name` (nothing to do when it is not set).
    pub fn delete_alias(&self, name: &str, alias: &str) -> Result<(), MlflowError> {
        let body = json!({"name": name, "alias": alias});
        match self.call(Method::Delete, "registered-models/alias", &[], Some(&body)) {
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(()),
            r => r.map(drop),
        }
    }
}

/// The JSON of a successful answer, or the error MLflow gave.
fn answer(
    endpoint: &str,
    mut response: ureq::http::Response<ureq::Body>,
) -> Result<Value, MlflowError> {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    if (200..300).contains(&status) {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        return parsed.ok_or_else(|| MlflowError::Answer {
            endpoint: endpoint.to_owned(),
            reason: format!("not JSON: {}", snippet(&text)),
        });
    }
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v[k].as_str())
            .map(str::to_owned)
    };
    Err(MlflowError::Refused {
        endpoint: endpoint.to_owned(),
        status,
        code: field("error_code").unwrap_or_default(),
        message: field("message").unwrap_or_else(|| snippet(&text)),
    })
}

fn snippet(text: &str) -> String {
    text.chars().take(200).collect()
}

fn text_at(endpoint: &str, v: &Value, pointer: &str) -> Result<String, MlflowError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| MlflowError::Answer {
            endpoint: endpoint.to_owned(),
            reason: format!("no {pointer} in {}", snippet(&v.to_string())),
        })
}

/// The path under the artifact proxy of an `mlflow-artifacts:` location: `mlflow-artifacts:/1/x`
/// and `mlflow-artifacts://host:port/1/x` both give `1/x`. None for other schemes, which the
/// client cannot write to.
fn proxied_path(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(with_host) => &with_host[with_host.find('/').unwrap_or(with_host.len())..],
        None => rest,
    };
    let path = path.trim_matches('/');
    (!path.is_empty()).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_locations_map_to_the_proxy() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://mlflow:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxied_path("s3://bucket/1/abc/artifacts"), None);
        assert_eq!(proxied_path("mlflow-artifacts:/"), None);
    }

    #[test]
    fn only_failures_of_the_server_are_retried() {
        let refused = |status: u16| MlflowError::Refused {
            endpoint: "runs/create".into(),
            status,
            code: String::new(),
            message: String::new(),
        };
        assert!(refused(503).is_transient());
        assert!(refused(429).is_transient());
        assert!(!refused(400).is_transient());
        assert!(!refused(404).is_transient());
        assert!(MlflowError::Http(ureq::Error::ConnectionFailed).is_transient());
        assert!(!MlflowError::ArtifactsNotServed("s3://b".into()).is_transient());
    }
}
