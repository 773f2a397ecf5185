//! The retrainer's durable store of labeled stream rows: a JSON-lines file, appended and
//! fsynced before the offsets that produced the rows are committed. Rows are keyed by their
//! source partition and offset, so a record consumed twice (after a crash between store and
//! commit) is kept once.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{CensusRow, LabeledRow};

/// A labeled row and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRow {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub label: bool,
    pub row: CensusRow,
}

/// Why the rows file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RowLogError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: not a stored row")]
    Corrupt {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

impl StoredRow {
    pub fn into_labeled(self) -> LabeledRow {
        LabeledRow {
            row: self.row,
            label: self.label,
        }
    }

    /// Its `topic/partition`, as offsets maps are keyed.
    pub fn partition_key(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }

    /// Whether it is at or after a cut-off (per `topic/partition`; a partition the cut-off does
    /// not name has not been cut at all).
    pub fn at_or_after(&self, cutoff: &BTreeMap<String, i64>) -> bool {
        cutoff
            .get(&self.partition_key())
            .is_none_or(|&from| self.offset >= from)
    }
}

pub struct RowLog {
    path: PathBuf,
    file: File,
    rows: Vec<StoredRow>,
    seen: HashSet<(String, i32, i64)>,
}

impl RowLog {
    /// Opens (or creates) the log, reading the rows already in it. A torn last line, left by a
    /// crash in the middle of a write, is cut off: its offsets were never committed, so the row
    /// comes back from Kafka.
    pub fn open(path: &Path) -> Result<Self, RowLogError> {
        let io_err = |source| RowLogError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        // Bytes, not text: a torn last line may end in the middle of a character.
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(e)),
        };
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut rows = Vec::new();
        let mut seen = HashSet::new();
        for (n, line) in bytes[..complete]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let row: StoredRow =
                serde_json::from_slice(line).map_err(|source| RowLogError::Corrupt {
                    path: path.to_path_buf(),
                    line: n + 1,
                    source,
                })?;
            if seen.insert((row.topic.clone(), row.partition, row.offset)) {
                rows.push(row);
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        if complete < bytes.len() {
            tracing::warn!("{}: dropping a torn last line", path.display());
            file.set_len(complete as u64).map_err(io_err)?;
        }
        Ok(RowLog {
            path: path.to_path_buf(),
            file,
            rows,
            seen,
        })
    }

    /// Appends the rows not stored yet and makes them durable. Returns how many were new.
    pub fn append(&mut self, rows: Vec<StoredRow>) -> Result<usize, RowLogError> {
        self.write_new(rows).map_err(|source| RowLogError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn write_new(&mut self, rows: Vec<StoredRow>) -> io::Result<usize> {
        let mut buf = Vec::new();
        let mut added = 0;
        for row in rows {
            if self
                .seen
                .insert((row.topic.clone(), row.partition, row.offset))
            {
                serde_json::to_writer(&mut buf, &row)?;
                buf.push(b'\n');
                self.rows.push(row);
                added += 1;
            }
        }
        if added > 0 {
            self.file.write_all(&buf)?;
            self.file.sync_data()?;
        }
        Ok(added)
    }

    /// The stored rows, in the order they were stored.
    pub fn rows(&self) -> &[StoredRow] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored rows as training rows.
    pub fn labeled(&self) -> impl Iterator<Item = LabeledRow> + '_ {
        self.rows.iter().map(|r| LabeledRow {
            row: r.row.clone(),
            label: r.label,
        })
    }

    /// Per `topic/partition`, one past the highest stored offset.
    pub fn offsets(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for r in &self.rows {
            let e = out
                .entry(format!("{}/{}", r.topic, r.partition))
                .or_insert(0);
            *e = (*e).max(r.offset + 1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(offset: i64) -> StoredRow {
        StoredRow {
            topic: "t".into(),
            partition: 0,
            offset,
            label: offset % 2 == 0,
            row: CensusRow {
                age: 30.0,
                workclass: "Private".into(),
                fnlwgt: 1.0,
                education: "HS-grad".into(),
                education_num: 9.0,
                marital_status: "Divorced".into(),
                occupation: "Sales".into(),
                relationship: "Unmarried".into(),
                race: "White".into(),
                sex: "Female".into(),
                capital_gain: 0.0,
                capital_loss: 0.0,
                hours_per_week: 40.0,
                native_country: "Peru".into(),
            },
        }
    }

    #[test]
    fn rows_survive_a_reopen_once_each_and_a_torn_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let mut log = RowLog::open(&path).unwrap();
        assert_eq!(
            log.append(vec![stored(0), stored(1), stored(1)]).unwrap(),
            2
        );
        drop(log);
        // A crash in the middle of the next write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"topic\":\"t\",\"parti").unwrap();
        drop(f);
        let mut log = RowLog::open(&path).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log.append(vec![stored(1), stored(2)]).unwrap(), 1);
        drop(log);
        let log = RowLog::open(&path).unwrap();
        assert_eq!(log.len(), 3);
        assert_eq!(log.offsets().get("t/0"), Some(&3));
    }

    #[test]
    fn a_last_line_torn_inside_a_multibyte_character_is_dropped_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let mut row = stored(0);
        row.row.native_country = "Curaçao".into();
        let mut log = RowLog::open(&path).unwrap();
        log.append(vec![row.clone()]).unwrap();
        drop(log);
        // The same row again, cut inside the two bytes of "ç".
        let line = serde_json::to_vec(&StoredRow { offset: 1, ..row }).unwrap();
        let cut = line.iter().position(|&b| b == 0xC3).unwrap() + 1;
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&line[..cut]).unwrap();
        drop(f);
        let log = RowLog::open(&path).expect("a torn character does not stop the start");
        assert_eq!(log.len(), 1);
        assert_eq!(log.rows()[0].row.native_country, "Curaçao");
    }
}
