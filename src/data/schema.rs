//! The Adult census record: its columns, its label, and the one in-memory row type every other
//! module (training, the stream, the processor) speaks.

use serde::{Deserialize, Serialize};

/// Column names of the UCI files, in file order.
pub const COLUMNS: [&str; 15] = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income_bracket",
];

/// One person's questionnaire answers. Numeric fields are `f64` as in the UCI files; `?` (unknown)
/// stays a string and the feature processor maps it to its unknown code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CensusRow {
    pub age: f64,
    pub workclass: String,
    pub fnlwgt: f64,
    pub education: String,
    pub education_num: f64,
    pub marital_status: String,
    pub occupation: String,
    pub relationship: String,
    pub race: String,
    pub sex: String,
    pub capital_gain: f64,
    pub capital_loss: f64,
    pub hours_per_week: f64,
    pub native_country: String,
}

/// A row with its label (`true` for `>50K`) when known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabeledRow {
    pub row: CensusRow,
    pub label: bool,
}

/// Parses an income bracket as written in adult.data (`<=50K`, `>50K`) or adult.test (with a
/// trailing dot). Returns `None` for anything else.
pub fn parse_label(text: &str) -> Option<bool> {
    match text.trim().trim_end_matches('.') {
        "<=50K" => Some(false),
        ">50K" => Some(true),
        _ => None,
    }
}

/// The label's text form, as the UCI training file writes it.
pub fn label_text(label: bool) -> &'static str {
    if label {
        ">50K"
    } else {
        "<=50K"
    }
}

/// Longest category text accepted, in bytes. The longest in the census is 26
/// (`Outlying-US(Guam-USVI-etc)`); a longer one is junk that would otherwise be stored, trained
/// on and kept in the processor's vocabulary for good.
pub const MAX_CATEGORY_BYTES: usize = 100;

/// An answer no person can give.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImpossibleValue {
    #[error("{field} is {bytes} bytes long; at most {MAX_CATEGORY_BYTES}")]
    TooLong { field: &'static str, bytes: usize },
    #[error("{field} is not a finite number")]
    NotFinite { field: &'static str },
    #[error("{field} = {value} is outside {low}..={high}")]
    OutOfRange {
        field: &'static str,
        value: f64,
        low: f64,
        high: f64,
    },
}

/// Checks one category's text: the stream's and the CLI's shared validation.
pub fn check_category(field: &'static str, value: &str) -> Result<(), ImpossibleValue> {
    if value.len() > MAX_CATEGORY_BYTES {
        return Err(ImpossibleValue::TooLong {
            field,
            bytes: value.len(),
        });
    }
    Ok(())
}

/// Checks one numeric answer: the stream's and the CLI's shared validation.
pub fn check_numeric(field: &'static str, value: f64) -> Result<(), ImpossibleValue> {
    if !value.is_finite() {
        return Err(ImpossibleValue::NotFinite { field });
    }
    let (low, high) = match field {
        "age" => (0.0, 130.0),
        "hours_per_week" => (0.0, 168.0),
        "education_num" => (0.0, 30.0),
        _ => (0.0, f64::MAX),
    };
    if value < low || value > high {
        return Err(ImpossibleValue::OutOfRange {
            field,
            value,
            low,
            high,
        });
    }
    Ok(())
}

impl CensusRow {
    /// The numeric fields by name, for validation.
    pub fn numeric_fields(&self) -> [(&'static str, f64); 6] {
        [
            ("age", self.age),
            ("fnlwgt", self.fnlwgt),
            ("education_num", self.education_num),
            ("capital_gain", self.capital_gain),
            ("capital_loss", self.capital_loss),
            ("hours_per_week", self.hours_per_week),
        ]
    }

    /// The row's features, hashed: the same for the same answers wherever the row comes.
    pub fn features_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(self)
            .expect("a row serializes")
            .hash(&mut h);
        h.finish()
    }

    /// The category fields by name, for validation.
    pub fn category_fields(&self) -> [(&'static str, &str); 8] {
        [
            ("workclass", &self.workclass),
            ("education", &self.education),
            ("marital_status", &self.marital_status),
            ("occupation", &self.occupation),
            ("relationship", &self.relationship),
            ("race", &self.race),
            ("sex", &self.sex),
            ("native_country", &self.native_country),
        ]
    }

    /// Checks every numeric field with [`check_numeric`] and every category with
    /// [`check_category`].
    pub fn validate(&self) -> Result<(), ImpossibleValue> {
        self.numeric_fields()
            .iter()
            .try_for_each(|(name, value)| check_numeric(name, *value))?;
        self.category_fields()
            .iter()
            .try_for_each(|(name, value)| check_category(name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_both_files_parse() {
        assert_eq!(parse_label("<=50K"), Some(false));
        assert_eq!(parse_label(">50K."), Some(true));
        assert_eq!(parse_label(" >50K"), Some(true));
        assert_eq!(parse_label("50K"), None);
    }

    #[test]
    fn impossible_values_are_named() {
        assert!(check_numeric("age", -1.0)
            .unwrap_err()
            .to_string()
            .contains("age"));
        assert!(check_numeric("hours_per_week", 169.0).is_err());
        assert!(check_numeric("hours_per_week", 168.0).is_ok());
        assert!(check_numeric("fnlwgt", f64::NAN).is_err());
        let long = "x".repeat(MAX_CATEGORY_BYTES + 1);
        let e = check_category("workclass", &long).unwrap_err().to_string();
        assert!(e.contains("workclass") && e.contains("101 bytes"), "{e}");
        assert!(check_category("workclass", &long[1..]).is_ok());
    }
}
