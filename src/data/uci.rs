//! Reads `adult.data` / `adult.test` in UCI's own format with polars: no header, `", "`
//! separators, `?` for unknown, the test file's `|1x3 Cross validator` first line, test labels
//! with a trailing dot. Every malformed value is reported with file, line and field.

use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::schema::{check_numeric, parse_label, CensusRow, LabeledRow, COLUMNS};
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
        let line = i + 1 + header_lines;
        let field = |c: usize| -> Result<&str, DataError> {
            match cols[c].get(i) {
                Some(v) if !v.trim().is_empty() => Ok(v.trim()),
                _ => Err(malformed(path, line, COLUMNS[c], "missing value".into())),
            }
        };
        // polars reads a blank line as a row of nulls; UCI files end with one.
        if (0..COLUMNS.len()).all(|c| cols[c].get(i).is_none_or(|v| v.trim().is_empty())) {
            continue;
        }
        let number = |c: usize| -> Result<f64, DataError> {
            let text = field(c)?;
            let value: f64 = text.parse().map_err(|_| {
                malformed(path, line, COLUMNS[c], format!("`{text}` is not a number"))
            })?;
            check_numeric(COLUMNS[c], value)
                .map_err(|e| malformed(path, line, COLUMNS[c], e.to_string()))?;
            Ok(value)
        };
        let text = |c: usize| field(c).map(str::to_owned);
        let label_text = field(14)?;
        let label = parse_label(label_text).ok_or_else(|| {
            malformed(
                path,
                line,
                COLUMNS[14],
                format!("`{label_text}` is neither <=50K nor >50K"),
            )
        })?;
        rows.push(LabeledRow {
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
        });
    }
    if rows.is_empty() {
        return Err(DataError::Empty(path.to_path_buf()));
    }
    Ok(rows)
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
        (!skip && fields != COLUMNS.len()).then(|| {
            let field = COLUMNS.get(fields).copied().unwrap_or("income_bracket");
            malformed(
                path,
                i + 1,
                field,
                format!("expected {} fields, found {fields}", COLUMNS.len()),
            )
        })
    })
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
