//! The retrainer's durable store of labeled stream rows: a JSON-lines file, appended and
//! fsynced before the offsets that produced the rows are committed. Rows are keyed by their
//! source partition and offset, so a record consumed twice (after a crash between store and
//! commit) is kept once. Each row also keeps a fingerprint of the record's bytes: a different
//! record at an offset already stored means the topic was deleted and created again, and the
//! partition's rows start a new generation instead of being dropped as replays.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{CensusRow, LabeledRow};
use crate::join::Position;

/// A labeled row and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRow {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// How many times the partition was found recreated before this row was read (0: never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    /// The first 8 bytes of the record payload's SHA-256 (0 in rows stored without one).
    #[serde(default)]
    pub fingerprint: u64,
    pub label: bool,
    pub row: CensusRow,
    /// The label record that completed the row, when its label came apart from the request
    /// and after it. Cut-offs count the row at this position: rows are stored in the order of
    /// the records that complete them, which is offset order within each partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_by: Option<Position>,
    /// When it was stored, milliseconds since the Unix epoch (0 in rows stored without it:
    /// they leave by count, or with a later row that leaves by age).
    #[serde(default)]
    pub stored_at_ms: i64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The fingerprint of a record's payload, as [`StoredRow::fingerprint`] keeps it.
pub fn fingerprint(payload: &[u8]) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(payload);
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
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
}

impl StoredRow {
    pub fn into_labeled(self) -> LabeledRow {
        LabeledRow {
            row: self.row,
            label: self.label,
        }
    }

    /// Its `topic/partition` (`topic@generation/partition` after a recreation), as offsets
    /// maps are keyed.
    pub fn partition_key(&self) -> String {
        match self.generation {
            0 => format!("{}/{}", self.topic, self.partition),
            g => format!("{}@{g}/{}", self.topic, self.partition),
        }
    }

    fn key(&self) -> RowKey {
        (
            self.topic.clone(),
            self.partition,
            self.generation,
            self.offset,
        )
    }

    /// Where the row counts for cut-offs: `topic/partition` and offset of the record that
    /// completed it (the request, unless its label came after it).
    pub fn cut_position(&self) -> (String, i64) {
        match &self.completed_by {
            Some(p) => (format!("{}/{}", p.topic, p.partition), p.offset),
            None => (self.partition_key(), self.offset),
        }
    }

    /// Whether it is at or after a cut-off (per `topic/partition`; a partition the cut-off does
    /// not name has not been cut at all).
    pub fn at_or_after(&self, cutoff: &BTreeMap<String, i64>) -> bool {
        let (key, offset) = self.cut_position();
        cutoff.get(&key).is_none_or(|&from| offset >= from)
    }
}

#[cfg(test)]
impl StoredRow {
    /// A row at `offset` of partition 0 of topic `t`, labeled `>50K` at even offsets.
    pub(crate) fn example(offset: i64) -> StoredRow {
        StoredRow {
            topic: "t".into(),
            partition: 0,
            offset,
            generation: 0,
            fingerprint: offset as u64 + 1,
            label: offset % 2 == 0,
            completed_by: None,
            stored_at_ms: 0,
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
}

/// Topic, partition, generation, offset.
type RowKey = (String, i32, u32, i64);

/// Which stored rows a retrain trains on, and the rows file keeps: the newest `keep_rows`, none
/// older than `max_age` (when given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_rows: usize,
    pub max_age: Option<std::time::Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_rows: crate::defaults::ROWS_KEEP,
            max_age: None,
        }
    }
}

impl Retention {
    /// Rows past the retention the file may hold before it is compacted: a tenth of it, at
    /// least 100, so that a compaction (a rewrite of every retained row) is rare.
    fn slack(&self) -> usize {
        (self.keep_rows / 10).max(100)
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compacted {
    pub dropped: usize,
    pub kept: usize,
}

pub struct RowLog {
    path: PathBuf,
    file: File,
    rows: Vec<StoredRow>,
    /// Each stored row's fingerprint.
    seen: HashMap<RowKey, u64>,
    /// Per topic and partition, the generation new records belong to.
    generations: HashMap<(String, i32), u32>,
    /// Per `topic/partition` of the records that complete rows ([`StoredRow::cut_position`]),
    /// the highest offset of a row compacted away: a record at or below it completed a row
    /// stored before, and is a replay (kept beside the file, in `<file>.floors`).
    floors: BTreeMap<String, i64>,
}

impl RowLog {
    /// Opens (or creates) the log, reading the rows already in it. A torn last line, left by a
    /// crash in the middle of a write, is cut off: its offsets were never committed, so the row
    /// comes back from Kafka. A damaged line elsewhere is moved to `<file>.corrupt` with a
    /// warning that names it, and the rest is kept: one bad line never stops the retrainer.
    pub fn open(path: &Path) -> Result<Self, RowLogError> {
        let io_err = |source| RowLogError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        let (bytes, complete) = crate::util::jsonl::read_complete(path).map_err(io_err)?;
        let mut log = RowLog {
            path: path.to_path_buf(),
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io_err)?,
            rows: Vec::new(),
            seen: HashMap::new(),
            generations: HashMap::new(),
            floors: read_floors(&floors_path(path)).map_err(io_err)?,
        };
        // A compaction killed before its rename leaves its unfinished copy: never read.
        let _ = fs::remove_file(path.with_extension("rewrite"));
        let mut corrupt: Vec<&[u8]> = Vec::new();
        for (n, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<StoredRow>(line) {
                Ok(row) => {
                    let generation = log
                        .generations
                        .entry((row.topic.clone(), row.partition))
                        .or_default();
                    *generation = (*generation).max(row.generation);
                    if let std::collections::hash_map::Entry::Vacant(e) = log.seen.entry(row.key())
                    {
                        e.insert(row.fingerprint);
                        log.rows.push(row);
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "{}:{}: not a stored row ({e}); moved to {}",
                        path.display(),
                        n + 1,
                        corrupt_path(path).display()
                    );
                    corrupt.push(line);
                }
            }
        }
        if !corrupt.is_empty() {
            log.set_aside(&corrupt).map_err(io_err)?;
        } else if complete < bytes.len() {
            tracing::warn!("{}: dropping a torn last line", path.display());
            log.file.set_len(complete as u64).map_err(io_err)?;
        }
        Ok(log)
    }

    /// Appends the damaged lines to `<file>.corrupt`, then replaces the file with its good rows
    /// (written beside it, fsynced, renamed over it).
    fn set_aside(&mut self, corrupt: &[&[u8]]) -> io::Result<()> {
        let mut aside = OpenOptions::new()
            .create(true)
            .append(true)
            .open(corrupt_path(&self.path))?;
        for line in corrupt {
            aside.write_all(line)?;
            aside.write_all(b"\n")?;
        }
        aside.sync_data()?;
        self.file = rewrite(&self.path, &self.rows)?;
        Ok(())
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
            if let Some(row) = self.offer(row) {
                serde_json::to_writer(&mut buf, &row)?;
                buf.push(b'\n');
                self.rows.push(row);
                added += 1;
            }
        }
        if added > 0 {
            // Two writes, so that a crash between them (a fault point) leaves a torn line.
            let half = buf.len() / 2;
            self.file.write_all(&buf[..half])?;
            crate::util::fault::point("rows_mid_write");
            self.file.write_all(&buf[half..])?;
            self.file.sync_data()?;
        }
        Ok(added)
    }

    /// Places a row read from Kafka in its partition's current generation; a replay of a
    /// stored record is refused (`None`), a different record at a stored offset starts a new
    /// generation.
    fn offer(&mut self, mut row: StoredRow) -> Option<StoredRow> {
        let (cut, at) = row.cut_position();
        if self.floors.get(&cut).is_some_and(|&floor| at <= floor) {
            return None;
        }
        let part = (row.topic.clone(), row.partition);
        row.generation = self.generations.get(&part).copied().unwrap_or(0);
        if let Some(&stored) = self.seen.get(&row.key()) {
            let unknown = stored == 0 || row.fingerprint == 0;
            if unknown || stored == row.fingerprint {
                return None;
            }
            row.generation += 1;
            tracing::warn!(
                "{}/{} offset {} holds a different record than the one stored: the topic was \
                 created again; its rows start generation {}",
                row.topic,
                row.partition,
                row.offset,
                row.generation
            );
            self.generations.insert(part, row.generation);
        }
        self.seen.insert(row.key(), row.fingerprint);
        Some(row)
    }

    /// The stored rows, in the order they were stored.
    pub fn rows(&self) -> &[StoredRow] {
        &self.rows
    }

    /// How many of the oldest rows are beyond `retention` at `now_ms`.
    fn beyond(&self, retention: &Retention, now_ms: i64) -> usize {
        let expired = |r: &StoredRow| {
            retention.max_age.is_some_and(|age| {
                r.stored_at_ms > 0 && now_ms - r.stored_at_ms > age.as_millis() as i64
            })
        };
        let over = self.rows.len().saturating_sub(retention.keep_rows);
        // Rows are stored oldest first: every row before an expired one is older than it (a
        // row stored without a time too).
        let old = self.rows.iter().rposition(expired).map_or(0, |i| i + 1);
        over.max(old)
    }

    /// The rows within `retention` at `now_ms`: what a retrain trains on. The file may hold
    /// up to the retention's slack more until it is compacted.
    pub fn retained(&self, retention: &Retention, now_ms: i64) -> &[StoredRow] {
        &self.rows[self.beyond(retention, now_ms)..]
    }

    /// Drops the rows beyond `retention` at `now_ms` once they are more than its slack, by
    /// rewriting the file with the rows kept (written beside it, fsynced, renamed over it): a
    /// crash at any moment leaves either the old file or the new one, whole. The highest
    /// completing offset dropped per partition is kept first, so that a dropped row read again
    /// is known for a replay.
    pub fn compact(
        &mut self,
        retention: &Retention,
        now_ms: i64,
    ) -> Result<Compacted, RowLogError> {
        let dropped = self.beyond(retention, now_ms);
        if dropped == 0 || dropped < retention.slack() {
            return Ok(Compacted {
                dropped: 0,
                kept: self.rows.len(),
            });
        }
        let io_err = |source| RowLogError::Io {
            path: self.path.clone(),
            source,
        };
        let mut floors = self.floors.clone();
        for r in &self.rows[..dropped] {
            let (key, offset) = r.cut_position();
            let floor = floors.entry(key).or_insert(offset);
            *floor = (*floor).max(offset);
        }
        write_floors(&floors_path(&self.path), &floors).map_err(io_err)?;
        self.floors = floors;
        self.file = rewrite(&self.path, &self.rows[dropped..]).map_err(io_err)?;
        self.rows.drain(..dropped);
        self.seen = self.rows.iter().map(|r| (r.key(), r.fingerprint)).collect();
        Ok(Compacted {
            dropped,
            kept: self.rows.len(),
        })
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

    /// Per `topic/partition`, one past the highest offset of a record that completed a stored
    /// row ([`StoredRow::cut_position`]).
    pub fn offsets(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for r in &self.rows {
            let (key, offset) = r.cut_position();
            let e = out.entry(key).or_insert(0);
            *e = (*e).max(offset + 1);
        }
        out
    }
}

/// Replaces the file at `path` with `rows` (written beside it, fsynced, renamed over it, the
/// folder fsynced); returns the new file, open for appending.
fn rewrite(path: &Path, rows: &[StoredRow]) -> io::Result<File> {
    let fresh = path.with_extension("rewrite");
    let mut buf = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut buf, row)?;
        buf.push(b'\n');
    }
    let mut out = File::create(&fresh)?;
    let half = buf.len() / 2;
    out.write_all(&buf[..half])?;
    crate::util::fault::point("rows_mid_compaction");
    out.write_all(&buf[half..])?;
    out.sync_all()?;
    fs::rename(&fresh, path)?;
    sync_dir(path)?;
    OpenOptions::new().append(true).open(path)
}

fn floors_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".floors");
    PathBuf::from(name)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// The floors kept beside the rows file (none if it has none). A floors file that does not
/// parse is an error: without it, rows compacted away could be stored again.
fn read_floors(path: &Path) -> io::Result<BTreeMap<String, i64>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// Writes the floors atomically (beside, fsynced, renamed).
fn write_floors(path: &Path, floors: &BTreeMap<String, i64>) -> io::Result<()> {
    let fresh = path.with_extension("floors-rewrite");
    let mut out = File::create(&fresh)?;
    out.write_all(&serde_json::to_vec(floors)?)?;
    out.sync_all()?;
    fs::rename(&fresh, path)?;
    sync_dir(path)
}

fn corrupt_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".corrupt");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(offset: i64) -> StoredRow {
        StoredRow::example(offset)
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

    #[test]
    fn a_damaged_middle_line_is_set_aside_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let mut log = RowLog::open(&path).unwrap();
        log.append(vec![stored(0)]).unwrap();
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"topic\":\"t\",\"oops\n\xff\xfe not json\n")
            .unwrap();
        drop(f);
        let mut log = RowLog::open(&path).unwrap();
        log.append(vec![stored(1)]).unwrap();
        drop(log);
        let log = RowLog::open(&path).expect("damaged lines never stop the start");
        assert_eq!(log.len(), 2);
        assert_eq!(log.offsets().get("t/0"), Some(&2));
        let aside = fs::read(dir.path().join("rows.jsonl.corrupt")).unwrap();
        assert_eq!(aside, b"{\"topic\":\"t\",\"oops\n\xff\xfe not json\n");
        let kept = fs::read_to_string(&path).unwrap();
        assert_eq!(kept.lines().count(), 2, "the file holds only good rows now");
    }

    #[test]
    fn compaction_keeps_the_newest_rows_and_knows_the_dropped_ones_for_replays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let keep = Retention {
            keep_rows: 200,
            max_age: None,
        };
        let mut log = RowLog::open(&path).unwrap();
        log.append((0..250).map(stored).collect()).unwrap();
        // 50 past the retention is within its slack (100): nothing is rewritten yet.
        assert_eq!(log.compact(&keep, 0).unwrap().dropped, 0);
        log.append((250..400).map(stored).collect()).unwrap();
        let c = log.compact(&keep, 0).unwrap();
        assert_eq!((c.dropped, c.kept), (200, 200));
        assert_eq!(log.rows()[0].offset, 200);
        // A dropped row read again (its offsets reset) is a replay; a new one is stored.
        assert_eq!(
            log.append(vec![stored(5), stored(199), stored(400)])
                .unwrap(),
            1
        );
        drop(log);
        let mut log = RowLog::open(&path).unwrap();
        assert_eq!(log.len(), 201);
        assert_eq!(log.offsets().get("t/0"), Some(&401));
        assert_eq!(log.append(vec![stored(0), stored(401)]).unwrap(), 1);
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 202);
    }

    #[test]
    fn rows_older_than_the_age_leave_with_those_stored_before_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let keep = Retention {
            keep_rows: 1000,
            max_age: Some(std::time::Duration::from_secs(3600)),
        };
        let at = |offset: i64, ms: i64| StoredRow {
            stored_at_ms: ms,
            ..stored(offset)
        };
        let t0 = 1_000_000_000;
        let mut log = RowLog::open(&path).unwrap();
        // A row without a time, 150 stored at t0, then 50 an hour later.
        let mut rows = vec![at(0, 0)];
        rows.extend((1..151).map(|o| at(o, t0)));
        rows.extend((151..201).map(|o| at(o, t0 + 3_600_000)));
        log.append(rows).unwrap();
        assert_eq!(log.retained(&keep, t0 + 3_600_000).len(), 201);
        // A millisecond later the 150 are over an hour old, and the row before them goes too.
        let now = t0 + 3_600_001;
        assert_eq!(log.retained(&keep, now)[0].offset, 151);
        let c = log.compact(&keep, now).unwrap();
        assert_eq!((c.dropped, c.kept), (151, 50));
        drop(log);
        let log = RowLog::open(&path).unwrap();
        assert_eq!(log.rows()[0].offset, 151);
        assert_eq!(log.len(), 50);
    }

    #[test]
    fn a_compaction_killed_before_its_rename_leaves_the_old_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let mut log = RowLog::open(&path).unwrap();
        log.append((0..10).map(stored).collect()).unwrap();
        drop(log);
        // What a kill inside the rewrite leaves: half a copy beside the file.
        fs::write(path.with_extension("rewrite"), b"{\"topic\":\"t\",\"part").unwrap();
        let log = RowLog::open(&path).unwrap();
        assert_eq!(log.len(), 10);
        assert!(!path.with_extension("rewrite").exists());
    }

    #[test]
    fn a_different_record_at_a_stored_offset_starts_a_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let mut log = RowLog::open(&path).unwrap();
        assert_eq!(log.append((0..3).map(stored).collect()).unwrap(), 3);
        let cutoff = log.offsets();
        // The topic is deleted and created again: offsets start at 0 with other records.
        let recreated = |offset| StoredRow {
            fingerprint: 1000 + offset as u64,
            ..stored(offset)
        };
        assert_eq!(log.append(vec![recreated(0), recreated(1)]).unwrap(), 2);
        // Their replays are still replays.
        assert_eq!(log.append(vec![recreated(1)]).unwrap(), 0);
        assert_eq!(log.len(), 5);
        let new: Vec<_> = log
            .rows()
            .iter()
            .filter(|r| r.at_or_after(&cutoff))
            .collect();
        assert_eq!(new.len(), 2, "rows of the new topic count as new");
        drop(log);
        let mut log = RowLog::open(&path).unwrap();
        assert_eq!(log.len(), 5);
        assert_eq!(log.offsets().get("t@1/0"), Some(&2));
        assert_eq!(log.append(vec![recreated(2), recreated(2)]).unwrap(), 1);
        assert_eq!(log.rows().last().unwrap().generation, 1);
    }
}
