//! The rows the producer sends: a UCI-format file (adult.test by default) or JSON lines, each
//! made into a request with this run's id and send time.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ProducerError;
use crate::data::{ensure_file, label_text, read_labeled, Fetch, TEST_FILE};

/// Where the rows come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// adult.test in this data folder, downloaded from UCI when missing: the default.
    AdultTest(PathBuf),
    /// A file in UCI's format (adult.test by default), labels included.
    Uci(PathBuf),
    /// One JSON object a line: a request (`{"record": {...}, "income_bracket": ...}`) or a bare
    /// record with an optional `income_bracket`. A line that is not a JSON object is sent as it
    /// is (the predictor dead-letters it).
    JsonLines(PathBuf),
}

impl Input {
    /// The format a file's name says: JSON lines for `.jsonl`/`.json`, UCI's CSV otherwise.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "json") => Input::JsonLines(path.to_path_buf()),
            _ => Input::Uci(path.to_path_buf()),
        }
    }
}

/// One record to send.
pub(super) enum Outgoing {
    Json(serde_json::Map<String, Value>),
    Raw(Vec<u8>),
}

/// A request as sent: this run's id and send time, then the input's fields.
#[derive(serde::Serialize)]
pub(super) struct Envelope<'a> {
    pub request_id: &'a str,
    pub sent_at_ms: i64,
    #[serde(flatten)]
    pub body: &'a serde_json::Map<String, Value>,
}

/// Reads the whole input (blocking).
pub(super) fn load_input(input: &Input) -> Result<Vec<Outgoing>, ProducerError> {
    match input {
        Input::AdultTest(dir) => {
            load_input(&Input::Uci(ensure_file(dir, TEST_FILE, &Fetch::default())?))
        }
        Input::Uci(path) => Ok(read_labeled(path)?
            .into_iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                m.insert("income_bracket".into(), label_text(r.label).into());
                m.insert("record".into(), serde_json::to_value(r.row).expect("row"));
                Outgoing::Json(m)
            })
            .collect()),
        Input::JsonLines(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ProducerError::Input {
                path: path.clone(),
                source,
            })?;
            Ok(text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(json_line)
                .collect())
        }
    }
}

fn json_line(line: &str) -> Outgoing {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(mut m)) => {
            if !m.contains_key("record") {
                let label = m.remove("income_bracket");
                let mut wrapped = serde_json::Map::new();
                if let Some(l) = label {
                    wrapped.insert("income_bracket".into(), l);
                }
                wrapped.insert("record".into(), Value::Object(m));
                m = wrapped;
            }
            // This run stamps its own.
            m.remove("request_id");
            m.remove("sent_at_ms");
            Outgoing::Json(m)
        }
        _ => Outgoing::Raw(line.as_bytes().to_vec()),
    }
}
