//! Reads `adult.data` / `adult.test` in UCI's own format with polars: no header, `", "`
//! separators, `?` for unknown, the test file's `|1x3 Cross validator` first line, test labels
//! with a trailing dot. Every malformed value is reported with file, line and field.

use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::schema::{check_category, check_numeric, parse_label, CensusRow, LabeledRow, COLUMNS};
use super::DataError;

/// Reads a UCI-format file into labeled rows.
pub fn read_labeled(path: &Path) -> Result<Vec<LabeledRow>, DataError> {
    let df = read_frame(path)?;
    let header_lines = leading_comment_lines(path)?;
    let cols: Vec<&StringChunked> = COLUMNS
        .iter()
        .map(|name| df.column(name).and_then(|c| c.str()))
        .collect::<PolarsResult<_>>()
        .map_err(|e| csv_error(path, e))?;

    let mut rows = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        // polars reads a blank line as a row of nulls; UCI files end with one.
        if (0..COLUMNS.len()).all(|c| cols[c].get(i).is_none_or(|v| v.trim().is_empty())) {
            continue;
        }
        rows.push(labeled_row(path, i + 1 + header_lines, |c| cols[c].get(i))?);
    }
    if rows.is_empty() {
        return Err(DataError::Empty(path.to_path_buf()));
    }
    Ok(rows)
}

/// One line of a UCI-format file, without its line ending, as a labeled row: `Ok(None)` for a
/// blank or `|` comment line. `line` is its number in `path`, for the error, which names the
/// field as [`read_labeled`]'s do. For a reader that goes on past a bad line (the producer);
/// [`read_labeled`] stops at the first.
pub fn parse_uci_line(
    path: &Path,
    line: usize,
    text: &str,
) -> Result<Option<LabeledRow>, DataError> {
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.trim().is_empty() || text.starts_with('|') {
        return Ok(None);
    }
    let fields: Vec<&str> = text.split(',').collect();
    // As polars reads the file: too few fields leave the last ones missing.
    if fields.len() > COLUMNS.len() {
        return Err(ragged(path, line, fields.len()));
    }
    labeled_row(path, line, |c| fields.get(c).copied()).map(Some)
}

/// The row of line `line` of `path`, whose field `c` (in [`COLUMNS`] order) is `get(c)`. Every
/// value is checked: a missing one, a number that does not parse or no person can have, a label
/// that is neither bracket.
fn labeled_row<'a>(
    path: &Path,
    line: usize,
    get: impl Fn(usize) -> Option<&'a str>,
) -> Result<LabeledRow, DataError> {
    let field = |c: usize| -> Result<&str, DataError> {
        match get(c) {
            Some(v) if !v.trim().is_empty() => Ok(v.trim()),
            _ => Err(malformed(path, line, COLUMNS[c], "missing value".into())),
        }
    };
    let number = |c: usize| -> Result<f64, DataError> {
        let text = field(c)?;
        let value: f64 = text
            .parse()
            .map_err(|_| malformed(path, line, COLUMNS[c], format!("`{text}` is not a number")))?;
        check_numeric(COLUMNS[c], value)
            .map_err(|e| malformed(path, line, COLUMNS[c], e.to_string()))?;
        Ok(value)
    };
    let text = |c: usize| -> Result<String, DataError> {
        let text = field(c)?;
        check_category(COLUMNS[c], text)
            .map_err(|e| malformed(path, line, COLUMNS[c], e.to_string()))?;
        Ok(text.to_owned())
    };
    let label_text = field(14)?;
    let label = parse_label(label_text).ok_or_else(|| {
        malformed(
            path,
            line,
            COLUMNS[14],
            format!("`{label_text}` is neither <=50K nor >50K"),
        )
    })?;
    Ok(LabeledRow {
        row: CensusRow {
            age: number(0)?,
            workclass: text(1)?,
            fnlwgt: number(2)?,
            education: text(3)?,
            education_num: number(4)?,
            marital_status: text(5)?,
            occupation: text(6)?,
            relationship: text(7)?,
            race: text(8)?,
            sex: text(9)?,
            capital_gain: number(10)?,
            capital_loss: number(11)?,
            hours_per_week: number(12)?,
            native_country: text(13)?,
        },
        label,
    })
}

fn read_frame(path: &Path) -> Result<DataFrame, DataError> {
    let schema = Schema::from_iter(
        COLUMNS
            .iter()
            .map(|c| Field::new(PlSmallStr::from(*c), DataType::String)),
    );
    CsvReadOptions::default()
        .with_has_header(false)
        .with_schema(Some(Arc::new(schema)))
        .with_parse_options(
            CsvParseOptions::default()
                .with_separator(b',')
                .with_quote_char(None)
                .with_comment_prefix(Some("|"))
                .with_truncate_ragged_lines(false),
        )
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|reader| reader.finish())
        .map_err(|e| match find_ragged_line(path) {
            Some(err) => err,
            None => csv_error(path, e),
        })
}

/// polars' own message for a line with the wrong number of fields carries no line number; find
/// the line ourselves so that the user is told where to look.
fn find_ragged_line(path: &Path) -> Option<DataError> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().enumerate().find_map(|(i, line)| {
        let fields = line.split(',').count();
        let skip = line.trim().is_empty() || line.starts_with('|');
        (!skip && fields != COLUMNS.len()).then(|| ragged(path, i + 1, fields))
    })
}

/// A line with `fields` fields instead of one per column: names the first missing column, or the
/// last one when there are too many.
fn ragged(path: &Path, line: usize, fields: usize) -> DataError {
    let field = COLUMNS.get(fields).copied().unwrap_or("income_bracket");
    malformed(
        path,
        line,
        field,
        format!("expected {} fields, found {fields}", COLUMNS.len()),
    )
}

fn leading_comment_lines(path: &Path) -> Result<usize, DataError> {
    let text = fs::read_to_string(path).map_err(|e| DataError::Io(path.to_path_buf(), e))?;
    Ok(text.lines().take_while(|l| l.starts_with('|')).count())
}

fn malformed(path: &Path, line: usize, field: &str, reason: String) -> DataError {
    DataError::Malformed {
        file: PathBuf::from(path),
        line,
        field: field.to_owned(),
        reason,
    }
}

fn csv_error(path: &Path, e: PolarsError) -> DataError {
    DataError::Csv(path.to_path_buf(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, \
                        Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K";

    #[test]
    fn a_line_reads_as_the_whole_file_reader_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adult.test");
        let second = GOOD.replace("<=50K", ">50K.").replace(", 39,", ", 52,");
        let text = format!("|1x3 Cross validator\n{GOOD}\r\n\n{second}\n");
        fs::write(&path, &text).unwrap();
        let whole = read_labeled(&path).unwrap();
        let by_line: Vec<LabeledRow> = text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| parse_uci_line(&path, i + 1, l).unwrap())
            .collect();
        assert_eq!(by_line, whole);
        assert_eq!(by_line.len(), 2);
    }

    #[test]
    fn a_bad_line_is_named_by_file_line_and_field() {
        let path = Path::new("in.csv");
        let err = |line: &str| parse_uci_line(path, 7, line).unwrap_err().to_string();
        assert_eq!(
            err(&GOOD.replacen("39", "thirty-nine", 1)),
            "in.csv:7: field `age`: `thirty-nine` is not a number"
        );
        assert!(
            err(&GOOD.replace(", 40,", ", 169,")).starts_with("in.csv:7: field `hours_per_week`")
        );
        assert!(
            err(&GOOD.replace("<=50K", "maybe")).starts_with("in.csv:7: field `income_bracket`")
        );
        assert_eq!(
            err(GOOD.rsplit_once(',').unwrap().0),
            "in.csv:7: field `income_bracket`: missing value"
        );
        assert_eq!(
            err(&format!("{GOOD}, extra")),
            "in.csv:7: field `income_bracket`: expected 15 fields, found 16"
        );
        assert_eq!(
            parse_uci_line(path, 1, "|1x3 Cross validator").unwrap(),
            None
        );
        assert_eq!(parse_uci_line(path, 1, "  ").unwrap(), None);
    }
}
