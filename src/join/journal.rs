//! The join's state on disk: a JSON-lines journal of its changes ([`Op`]), appended and fsynced
//! before the offsets of the records that made them are committed, and replayed at start. It
//! is rewritten from the live state (beside it, fsynced, renamed over it) once it holds many
//! more lines than the state has entries, so it stays as bounded as the state.
//!
//! A torn last line (a crash in the middle of a write) is cut off: its offsets were never
//! committed, so its records come again. A damaged line elsewhere is moved to
//! `<file>.corrupt` with a warning that names it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::state::{Join, Op};

/// Lines a journal may hold beyond twice the state's entries before it is rewritten.
const SLACK_LINES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
#[error("{path}")]
pub struct JournalError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Lines in the file.
    lines: usize,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and rebuilds the join it describes.
    pub fn open<R>(path: &Path, window: Duration) -> Result<(Journal, Join<R>), JournalError>
    where
        R: Clone + Serialize + DeserializeOwned,
    {
        let io_err = |source| JournalError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        let (bytes, complete) = crate::util::jsonl::read_complete(path).map_err(io_err)?;
        let mut join = Join::new(window);
        let mut lines = 0;
        let mut corrupt: Vec<&[u8]> = Vec::new();
        for (n, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Op<R>>(line) {
                Ok(op) => {
                    join.replay(op);
                    lines += 1;
                }
                Err(e) => {
                    tracing::warn!(
                        "{}:{}: not a join record ({e}); moved to {}.corrupt",
                        path.display(),
                        n + 1,
                        path.display()
                    );
                    corrupt.push(line);
                }
            }
        }
        if complete < bytes.len() {
            tracing::warn!("{}: dropping a torn last line", path.display());
        }
        if !corrupt.is_empty() {
            let mut aside = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path.with_extension("corrupt"))
                .map_err(io_err)?;
            for line in &corrupt {
                aside.write_all(line).map_err(io_err)?;
                aside.write_all(b"\n").map_err(io_err)?;
            }
            aside.sync_data().map_err(io_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
            lines,
        };
        if !corrupt.is_empty() || complete < bytes.len() {
            journal.rewrite(&join)?;
        }
        Ok((journal, join))
    }

    fn err(&self, source: io::Error) -> JournalError {
        JournalError {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends `ops` and makes them durable; rewrites the journal when it has grown well past
    /// the state it describes.
    pub fn append<R: Clone + Serialize>(
        &mut self,
        ops: &[Op<R>],
        join: &Join<R>,
    ) -> Result<(), JournalError> {
        if ops.is_empty() {
            return Ok(());
        }
        if self.lines + ops.len() > 2 * join.len() + SLACK_LINES {
            // The state already holds `ops`: the rewrite makes them durable too.
            return self.rewrite(join);
        }
        let mut buf = Vec::new();
        for op in ops {
            serde_json::to_writer(&mut buf, op).map_err(|e| self.err(e.into()))?;
            buf.push(b'\n');
        }
        let half = buf.len() / 2;
        self.file.write_all(&buf[..half]).map_err(|e| self.err(e))?;
        crate::util::fault::point("join_mid_write");
        self.file.write_all(&buf[half..]).map_err(|e| self.err(e))?;
        self.file.sync_data().map_err(|e| self.err(e))?;
        self.lines += ops.len();
        Ok(())
    }

    /// Replaces the journal with the state's snapshot (written beside it, fsynced, renamed).
    pub fn rewrite<R: Clone + Serialize>(&mut self, join: &Join<R>) -> Result<(), JournalError> {
        let ops = join.snapshot();
        let fresh = self.path.with_extension("rewrite");
        let write = || -> io::Result<()> {
            let mut out = io::BufWriter::new(File::create(&fresh)?);
            for op in &ops {
                serde_json::to_writer(&mut out, op)?;
                out.write_all(b"\n")?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            fs::rename(&fresh, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| self.err(e))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| self.err(e))?;
        self.lines = ops.len();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines in the file now.
    pub fn lines(&self) -> usize {
        self.lines
    }
}
