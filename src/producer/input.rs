//! The rows the producer sends: a UCI-format file (adult.test by default) or JSON lines, each
//! made into a request with this run's id and send time. The input is read a line at a time,
//! each line at most a given number of bytes: a line that cannot be sent (not UTF-8, not JSON,
//! longer than that, a UCI line that does not parse) is reported with its file and line number,
//! counted and skipped, and the rest is sent.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ProducerError;
use crate::data::{ensure_file, label_text, parse_uci_line, DataError, Fetch, TEST_FILE};
use crate::scenario::{self, Generator, Scenario};

/// Where the rows come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// adult.test in this data folder, downloaded from UCI when missing: the default.
    AdultTest(PathBuf),
    /// A file in UCI's format (adult.test by default), labels included.
    Uci(PathBuf),
    /// One JSON object a line: a request (`{"record": {...}, "income_bracket": ...}`) or a bare
    /// record with an optional `income_bracket`. A line that is not a JSON object is skipped, or
    /// sent as it is with [`ReadOptions::send_non_json`] (the predictor dead-letters it).
    JsonLines(PathBuf),
    /// Fresh rows made by a scenario from the data folder's files, labels included.
    Scenario {
        data_dir: PathBuf,
        scenario: Scenario,
    },
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

/// How the input is read.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadOptions {
    /// Longest line sent, in bytes (its line ending not counted).
    pub max_line_bytes: NonZeroUsize,
    /// Send a JSON-lines line that is not a JSON object as its bytes instead of skipping it.
    pub send_non_json: bool,
}

/// An input line that was not sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    pub file: PathBuf,
    /// From 1.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for SkippedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// Skipped lines kept to be listed in the summary; the rest are only counted.
pub(super) const SKIPPED_LISTED: usize = 5;

/// One record to send.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outgoing {
    Json(serde_json::Map<String, Value>),
    Raw(Vec<u8>),
}

/// What reading the input gave.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub outgoing: Vec<Outgoing>,
    /// A scenario's maker of rows (then `outgoing` is empty).
    pub generator: Option<Box<Generator>>,
    /// Lines skipped, and the first [`SKIPPED_LISTED`] of them.
    pub skipped: usize,
    pub first_skipped: Vec<SkippedLine>,
}

/// Takes the label (`income_bracket`) out of a JSON record, to be sent apart.
fn take_label(out: &mut Outgoing) -> Option<String> {
    match out {
        Outgoing::Json(body) => match body.remove("income_bracket") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        Outgoing::Raw(_) => None,
    }
}

/// The records to send, one by one.
pub(super) enum Records {
    /// The input's records, cycled; with labels apart, each one's label taken out of it.
    Read {
        outgoing: Vec<Outgoing>,
        labels: Option<Vec<Option<String>>>,
    },
    /// A scenario's fresh rows; with labels apart, each one's label not in it.
    Made {
        generator: Box<Generator>,
        labels_apart: bool,
    },
}

impl Records {
    /// The loaded records, their labels taken out of them when `labels_apart`.
    pub fn new(loaded: &mut Loaded, labels_apart: bool) -> Self {
        match loaded.generator.take() {
            Some(generator) => Records::Made {
                generator,
                labels_apart,
            },
            None => {
                let mut outgoing = std::mem::take(&mut loaded.outgoing);
                let labels = labels_apart.then(|| outgoing.iter_mut().map(take_label).collect());
                Records::Read { outgoing, labels }
            }
        }
    }

    /// Records there are to send before the input repeats (a scenario's never do): the default
    /// number to send.
    pub fn natural_len(&self) -> usize {
        match self {
            Records::Read { outgoing, .. } => outgoing.len(),
            Records::Made { generator, .. } => generator.pool_len(),
        }
    }

    /// `Some(n)` when record `i` is the first of the input's `n` records coming again.
    pub fn repeats_at(&self, i: usize) -> Option<usize> {
        match self {
            Records::Read { outgoing, .. } => {
                let n = outgoing.len();
                (n > 0 && i > 0 && i.is_multiple_of(n)).then_some(n)
            }
            Records::Made { .. } => None,
        }
    }

    /// Record `i` (made anew for a scenario, which makes them in order) and its label when it
    /// goes apart.
    pub fn get(&mut self, i: usize) -> (Cow<'_, Outgoing>, Option<String>) {
        match self {
            Records::Read { outgoing, labels } => {
                let k = i % outgoing.len();
                let label = labels.as_ref().and_then(|l| l[k].clone());
                (Cow::Borrowed(&outgoing[k]), label)
            }
            Records::Made {
                generator,
                labels_apart,
            } => {
                let made = generator.next_row();
                let text = label_text(made.label).to_owned();
                let mut m = serde_json::Map::new();
                m.insert(
                    "record".into(),
                    serde_json::to_value(made.row).expect("row"),
                );
                if *labels_apart {
                    (Cow::Owned(Outgoing::Json(m)), Some(text))
                } else {
                    m.insert("income_bracket".into(), text.into());
                    (Cow::Owned(Outgoing::Json(m)), None)
                }
            }
        }
    }

    /// The scenario's generator, if the records are made.
    pub fn generator(&self) -> Option<&Generator> {
        match self {
            Records::Made { generator, .. } => Some(generator),
            Records::Read { .. } => None,
        }
    }
}

/// A request as sent: this run's id and send time, then the input's fields.
#[derive(serde::Serialize)]
pub(super) struct Envelope<'a> {
    pub request_id: &'a str,
    pub sent_at_ms: i64,
    #[serde(flatten)]
    pub body: &'a serde_json::Map<String, Value>,
}

/// Reads the whole input (blocking). Only a file that cannot be opened or read is an error; a
/// bad line is logged, counted in [`Loaded`] and skipped.
pub(super) fn load_input(input: &Input, options: ReadOptions) -> Result<Loaded, ProducerError> {
    match input {
        Input::AdultTest(dir) => load_input(
            &Input::Uci(ensure_file(dir, TEST_FILE, &Fetch::default())?),
            options,
        ),
        Input::Uci(path) => read_lines(path, options, |line, bytes| uci_line(path, line, bytes)),
        Input::JsonLines(path) => read_lines(path, options, |_, bytes| {
            json_line(bytes, options.send_non_json)
        }),
        Input::Scenario { data_dir, scenario } => Ok(Loaded {
            generator: Some(Box::new(scenario::from_data(
                data_dir,
                &Fetch::default(),
                None,
                *scenario,
            )?)),
            ..Loaded::default()
        }),
    }
}

/// Reads `path` a line at a time, making each into a record with `parse`: `Ok(None)` for a line
/// with nothing to send (blank, a comment), `Err(reason)` for one to skip.
fn read_lines(
    path: &Path,
    options: ReadOptions,
    mut parse: impl FnMut(usize, &[u8]) -> Result<Option<Outgoing>, String>,
) -> Result<Loaded, ProducerError> {
    let io_error = |source| ProducerError::Input {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let cap = options.max_line_bytes.get();
    let mut lines = CappedLines::new(BufReader::with_capacity(64 << 10, file), cap);
    let mut loaded = Loaded::default();
    while let Some((number, line)) = lines.next_line().map_err(io_error)? {
        let parsed = match line {
            Line::Whole(bytes) => parse(number, bytes.strip_suffix(b"\r").unwrap_or(bytes)),
            Line::TooLong(bytes) => Err(format!(
                "{bytes} bytes, longer than the limit of {cap} (--max-line-bytes)"
            )),
        };
        match parsed {
            Ok(Some(out)) => loaded.outgoing.push(out),
            Ok(None) => {}
            Err(reason) => {
                let skipped = SkippedLine {
                    file: path.to_path_buf(),
                    line: number,
                    reason,
                };
                tracing::warn!("{skipped}; line skipped");
                loaded.skipped += 1;
                if loaded.first_skipped.len() < SKIPPED_LISTED {
                    loaded.first_skipped.push(skipped);
                }
            }
        }
    }
    Ok(loaded)
}

/// A line as [`CappedLines`] reads it.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    /// The line's bytes, without its `\n`.
    Whole(&'a [u8]),
    /// A line over the cap, of this many bytes (without its `\n`): read past, not kept.
    TooLong(u64),
}

/// The lines of a reader, each kept only up to `cap` bytes: a longer line is read through to
/// its newline without being stored, so that one huge line never takes more memory than that.
struct CappedLines<R> {
    reader: R,
    cap: usize,
    buf: Vec<u8>,
    /// Lines read so far.
    number: usize,
}

impl<R: BufRead> CappedLines<R> {
    fn new(reader: R, cap: usize) -> Self {
        CappedLines {
            reader,
            cap,
            buf: Vec::new(),
            number: 0,
        }
    }

    /// The next line and its number (from 1), or `None` at the end of the input.
    fn next_line(&mut self) -> io::Result<Option<(usize, Line<'_>)>> {
        self.buf.clear();
        let mut len = 0u64;
        let mut started = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            started = true;
            let newline = chunk.iter().position(|&b| b == b'\n');
            let part = &chunk[..newline.unwrap_or(chunk.len())];
            len += part.len() as u64;
            if len <= self.cap as u64 {
                let want = self.buf.len() + part.len();
                if want > self.buf.capacity() {
                    // Grow as a Vec would, but never past the cap.
                    let target = want.max(2 * self.buf.capacity()).min(self.cap);
                    self.buf.reserve_exact(target - self.buf.len());
                }
                self.buf.extend_from_slice(part);
            } else {
                self.buf.clear();
            }
            let used = newline.map_or(part.len(), |i| i + 1);
            self.reader.consume(used);
            if newline.is_some() {
                break;
            }
        }
        if !started {
            return Ok(None);
        }
        self.number += 1;
        let line = if len > self.cap as u64 {
            Line::TooLong(len)
        } else {
            Line::Whole(&self.buf)
        };
        Ok(Some((self.number, line)))
    }
}

/// A UCI line as a request, or why it cannot be one (the field and what is wrong with it).
fn uci_line(path: &Path, line: usize, bytes: &[u8]) -> Result<Option<Outgoing>, String> {
    let text = utf8(bytes)?;
    match parse_uci_line(path, line, text) {
        Ok(Some(r)) => {
            let mut m = serde_json::Map::new();
            m.insert("income_bracket".into(), label_text(r.label).into());
            m.insert("record".into(), serde_json::to_value(r.row).expect("row"));
            Ok(Some(Outgoing::Json(m)))
        }
        Ok(None) => Ok(None),
        Err(DataError::Malformed { field, reason, .. }) => {
            Err(format!("field `{field}`: {reason}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A JSON-lines line as a request, or why it cannot be one. With `send_non_json`, a line that is
/// not a JSON object is sent as it is.
fn json_line(bytes: &[u8], send_non_json: bool) -> Result<Option<Outgoing>, String> {
    if bytes.trim_ascii().is_empty() {
        return Ok(None);
    }
    match json_object(bytes) {
        Ok(m) => Ok(Some(Outgoing::Json(request_body(m)))),
        Err(_) if send_non_json => Ok(Some(Outgoing::Raw(bytes.to_vec()))),
        Err(reason) => Err(reason),
    }
}

fn json_object(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    let text = utf8(bytes)?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("not a JSON object but {}", json_kind(&other))),
        Err(e) => {
            let message = e.to_string();
            let location = format!(" at line {} column {}", e.line(), e.column());
            let what = message.strip_suffix(&location).unwrap_or(&message);
            Err(format!("not JSON: {what} at column {}", e.column()))
        }
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        format!("not UTF-8: byte {:#04x} at column {}", bytes[at], at + 1)
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A line's object as a request's body: a bare record is wrapped (its `income_bracket` taken
/// out beside it), and the id and send time are this run's own.
fn request_body(mut m: serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    if !m.contains_key("record") {
        let label = m.remove("income_bracket");
        let mut wrapped = serde_json::Map::new();
        if let Some(l) = label {
            wrapped.insert("income_bracket".into(), l);
        }
        wrapped.insert("record".into(), Value::Object(m));
        m = wrapped;
    }
    m.remove("request_id");
    m.remove("sent_at_ms");
    m
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    const GOOD: &str = r#"{"income_bracket": ">50K", "record": {"age": 52, "workclass": "Self-emp-inc", "fnlwgt": 287927, "education": "HS-grad", "education_num": 9, "marital_status": "Married-civ-spouse", "occupation": "Exec-managerial", "relationship": "Wife", "race": "White", "sex": "Female", "capital_gain": 15024, "capital_loss": 0, "hours_per_week": 40, "native_country": "Cuba"}}"#;
    const UCI: &str = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, \
                       Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K";

    fn options(max_line_bytes: usize) -> ReadOptions {
        ReadOptions {
            max_line_bytes: NonZeroUsize::new(max_line_bytes).unwrap(),
            send_non_json: false,
        }
    }

    fn write(dir: &tempfile::TempDir, name: &str, lines: &[&[u8]]) -> PathBuf {
        let path = dir.path().join(name);
        let mut f = File::create(&path).unwrap();
        for l in lines {
            f.write_all(l).unwrap();
            f.write_all(b"\n").unwrap();
        }
        path
    }

    /// The good line with a different age, to tell the lines apart.
    fn good(age: u32) -> String {
        GOOD.replace(r#""age": 52"#, &format!(r#""age": {age}"#))
    }

    fn ages(outgoing: &[Outgoing]) -> Vec<u64> {
        outgoing
            .iter()
            .map(|o| match o {
                Outgoing::Json(m) => m["record"]["age"].as_u64().unwrap(),
                Outgoing::Raw(b) => panic!("sent raw: {}", String::from_utf8_lossy(b)),
            })
            .collect()
    }

    #[test]
    fn bad_json_lines_are_skipped_with_their_line_numbers_and_the_rest_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let long = good(99).replace("Cuba", &"x".repeat(2000));
        let mut not_utf8 = good(98).into_bytes();
        not_utf8[60] = 0xff;
        let (g1, g2, g3, g4) = (good(21), good(22), good(23), good(24));
        let path = write(
            &dir,
            "in.jsonl",
            &[
                g1.as_bytes(),
                &not_utf8,
                g2.as_bytes(),
                long.as_bytes(),
                b"",
                g3.as_bytes(),
                br#"{"record": oops"#,
                b"[1, 2]",
                g4.as_bytes(),
            ],
        );
        let loaded = load_input(&Input::JsonLines(path.clone()), options(1000)).unwrap();
        assert_eq!(ages(&loaded.outgoing), [21, 22, 23, 24]);
        assert_eq!(loaded.skipped, 4);
        let at: Vec<(usize, &str)> = loaded
            .first_skipped
            .iter()
            .map(|s| (s.line, s.reason.as_str()))
            .collect();
        assert_eq!(
            at,
            [
                (2, "not UTF-8: byte 0xff at column 61"),
                (
                    4,
                    "2357 bytes, longer than the limit of 1000 (--max-line-bytes)"
                ),
                (7, "not JSON: expected value at column 12"),
                (8, "not a JSON object but an array"),
            ]
        );
        assert!(loaded.first_skipped.iter().all(|s| s.file == path));
        assert_eq!(
            loaded.first_skipped[0].to_string(),
            format!("{}:2: not UTF-8: byte 0xff at column 61", path.display())
        );
    }

    #[test]
    fn with_send_non_json_a_line_that_is_not_an_object_is_sent_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("{:1001}", "not json");
        let path = write(
            &dir,
            "in.jsonl",
            &[
                b"not json\r",
                b"\xff\xfe",
                b"42",
                long.as_bytes(),
                GOOD.as_bytes(),
            ],
        );
        let mut opts = options(1000);
        opts.send_non_json = true;
        let loaded = load_input(&Input::JsonLines(path), opts).unwrap();
        let raw =
            [&b"not json"[..], &b"\xff\xfe"[..], &b"42"[..]].map(|b| Outgoing::Raw(b.to_vec()));
        assert_eq!(loaded.outgoing[..3], raw);
        assert!(matches!(loaded.outgoing[3], Outgoing::Json(_)));
        // An oversized line is never sent.
        assert_eq!((loaded.outgoing.len(), loaded.skipped), (4, 1));
        assert_eq!(loaded.first_skipped[0].line, 4);
    }

    #[test]
    fn a_bare_record_is_wrapped_and_a_request_s_own_id_and_time_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let bare = r#"{"income_bracket": "<=50K", "age": 30}"#;
        let request = r#"{"request_id": "x", "sent_at_ms": 1, "record": {"age": 31}}"#;
        let path = write(&dir, "in.jsonl", &[bare.as_bytes(), request.as_bytes()]);
        let loaded = load_input(&Input::JsonLines(path), options(1000)).unwrap();
        let bodies: Vec<Value> = loaded
            .outgoing
            .into_iter()
            .map(|o| match o {
                Outgoing::Json(m) => Value::Object(m),
                Outgoing::Raw(_) => panic!("sent raw"),
            })
            .collect();
        assert_eq!(
            bodies,
            [
                serde_json::json!({"income_bracket": "<=50K", "record": {"age": 30}}),
                serde_json::json!({"record": {"age": 31}}),
            ]
        );
    }

    #[test]
    fn bad_uci_lines_are_skipped_with_their_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let bad_age = UCI.replacen("39", "thirty-nine", 1);
        let mut not_utf8 = UCI.as_bytes().to_vec();
        not_utf8[20] = 0xe9;
        let long = UCI.replace("State-gov", &"x".repeat(500));
        let path = write(
            &dir,
            "adult.test",
            &[
                b"|1x3 Cross validator",
                UCI.as_bytes(),
                bad_age.as_bytes(),
                &not_utf8,
                long.as_bytes(),
                UCI.replace("<=50K", ">50K.").as_bytes(),
                b"",
            ],
        );
        let loaded = load_input(&Input::Uci(path), options(300)).unwrap();
        assert_eq!(loaded.outgoing.len(), 2);
        let Outgoing::Json(m) = &loaded.outgoing[1] else {
            panic!("not JSON")
        };
        assert_eq!(m["income_bracket"], ">50K");
        assert_eq!(m["record"]["workclass"], "State-gov");
        let reasons: Vec<String> = loaded
            .first_skipped
            .iter()
            .map(|s| format!("{}: {}", s.line, s.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                "3: field `age`: `thirty-nine` is not a number",
                "4: not UTF-8: byte 0xe9 at column 21",
                "5: 618 bytes, longer than the limit of 300 (--max-line-bytes)",
            ]
        );
    }

    #[test]
    fn only_the_first_skipped_lines_are_listed_but_all_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines: Vec<&[u8]> = vec![&b"oops"[..]; SKIPPED_LISTED + 3];
        lines.push(GOOD.as_bytes());
        let path = write(&dir, "in.jsonl", &lines);
        let loaded = load_input(&Input::JsonLines(path), options(1000)).unwrap();
        assert_eq!(loaded.outgoing.len(), 1);
        assert_eq!(loaded.skipped, SKIPPED_LISTED + 3);
        assert_eq!(loaded.first_skipped.len(), SKIPPED_LISTED);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let path = PathBuf::from("no/such/input.jsonl");
        let err = load_input(&Input::JsonLines(path.clone()), options(1000)).unwrap_err();
        assert!(
            matches!(&err, ProducerError::Input { path: p, .. } if *p == path),
            "{err}"
        );
        assert!(err.to_string().contains("no/such/input.jsonl"), "{err}");
        let err = load_input(&Input::Uci(path), options(1000)).unwrap_err();
        assert!(err.to_string().contains("no/such/input.jsonl"), "{err}");
    }

    #[test]
    fn adult_test_gives_the_rows_the_whole_file_reader_gives() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/adult.test");
        if !path.exists() {
            eprintln!("skipping: no {}", path.display());
            return;
        }
        let rows = crate::data::read_labeled(&path).unwrap();
        let loaded = load_input(&Input::Uci(path), options(1000)).unwrap();
        assert_eq!(loaded.skipped, 0);
        assert_eq!(loaded.outgoing.len(), rows.len());
        for (out, r) in loaded.outgoing.iter().zip(&rows) {
            let Outgoing::Json(m) = out else {
                panic!("not JSON")
            };
            assert_eq!(m["record"], serde_json::to_value(&r.row).unwrap());
            assert_eq!(m["income_bracket"], label_text(r.label));
        }
    }

    /// A reader handing out `len` bytes of `a` a few KiB at a time, never as a whole.
    struct Endless(u64);

    impl Read for Endless {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = (out.len() as u64).min(self.0).min(4096) as usize;
            out[..n].fill(b'a');
            self.0 -= n as u64;
            Ok(n)
        }
    }

    #[test]
    fn a_line_over_the_cap_is_read_through_without_being_kept() {
        let huge = 100u64 << 20;
        let input = Endless(huge).chain(&b"\nnext\n\nlast"[..]);
        let mut lines = CappedLines::new(BufReader::new(input), 1 << 10);
        assert_eq!(lines.next_line().unwrap(), Some((1, Line::TooLong(huge))));
        assert!(lines.buf.capacity() <= 1 << 10, "{}", lines.buf.capacity());
        assert_eq!(
            lines.next_line().unwrap(),
            Some((2, Line::Whole(&b"next"[..])))
        );
        assert_eq!(lines.next_line().unwrap(), Some((3, Line::Whole(&b""[..]))));
        assert_eq!(
            lines.next_line().unwrap(),
            Some((4, Line::Whole(&b"last"[..])))
        );
        assert_eq!(lines.next_line().unwrap(), None);
    }

    #[test]
    fn a_line_exactly_at_the_cap_is_whole() {
        let input = &b"abcd\nabcde\n"[..];
        let mut lines = CappedLines::new(input, 4);
        assert_eq!(
            lines.next_line().unwrap(),
            Some((1, Line::Whole(&b"abcd"[..])))
        );
        assert_eq!(lines.next_line().unwrap(), Some((2, Line::TooLong(5))));
        assert_eq!(lines.next_line().unwrap(), None);
    }
}
