//! Settings that are checked once, when they are made: each type can hold only a valid value, so
//! nothing deeper checks again. Flags parse straight into them (`FromStr`), so a bad value stops
//! a binary at start with the flag's name, before any data is read or connection opened.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

/// Why a setting's value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSetting(String);

/// Records a second: a finite number, 0 meaning as fast as possible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(f64);

impl Rate {
    pub const UNLIMITED: Rate = Rate(0.0);

    pub fn new(per_sec: f64) -> Result<Self, InvalidSetting> {
        if per_sec.is_finite() && per_sec >= 0.0 {
            Ok(Rate(per_sec))
        } else {
            Err(InvalidSetting(format!(
                "{per_sec} is not a rate: give records a second, or 0 for as fast as possible"
            )))
        }
    }

    /// Records a second, `None` when unlimited.
    pub fn per_sec(self) -> Option<f64> {
        (self.0 > 0.0).then_some(self.0)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Rate {
    type Err = InvalidSetting;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| InvalidSetting(format!("`{s}` is not a number")))?;
        Rate::new(v)
    }
}

/// Cross-validation folds: at least 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Folds(usize);

impl Folds {
    pub fn new(k: usize) -> Result<Self, InvalidSetting> {
        if k >= 2 {
            Ok(Folds(k))
        } else {
            Err(InvalidSetting(format!(
                "{k} folds cannot cross-validate: at least 2"
            )))
        }
    }

    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for Folds {
    fn default() -> Self {
        Folds(crate::defaults::FOLDS)
    }
}

impl fmt::Display for Folds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Folds {
    type Err = InvalidSetting;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Folds::new(parse_count(s)?)
    }
}

/// A count that must be at least 1 (batch sizes, budgets, retrain cadence, threads).
pub fn positive(s: &str) -> Result<NonZeroUsize, InvalidSetting> {
    NonZeroUsize::new(parse_count(s)?)
        .ok_or_else(|| InvalidSetting("must be at least 1".to_owned()))
}

/// A partition count: at least 1.
pub fn partitions(s: &str) -> Result<i32, InvalidSetting> {
    match s.trim().parse::<i32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(InvalidSetting(format!(
            "`{s}` is not a partition count (a whole number, at least 1)"
        ))),
    }
}

/// A replication factor: at least 1.
pub fn replication_factor(s: &str) -> Result<i32, InvalidSetting> {
    match s.trim().parse::<i32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(InvalidSetting(format!(
            "`{s}` is not a replication factor (a whole number, at least 1)"
        ))),
    }
}

/// Kafka bootstrap servers: a non-empty list of `host:port`.
pub fn brokers(s: &str) -> Result<String, InvalidSetting> {
    if s.split(',').all(|b| b.trim().is_empty()) {
        return Err(InvalidSetting(
            "no broker given: list them as host:port[,host:port…]".to_owned(),
        ));
    }
    Ok(s.trim().to_owned())
}

/// A probability strictly between 0 and 1 (the gate's α).
pub fn probability(s: &str) -> Result<f64, InvalidSetting> {
    match s.trim().parse::<f64>() {
        Ok(p) if p > 0.0 && p < 1.0 => Ok(p),
        _ => Err(InvalidSetting(format!(
            "`{s}` is not a probability strictly between 0 and 1"
        ))),
    }
}

/// A finite number, 0 or more (the gate's margin).
pub fn non_negative(s: &str) -> Result<f64, InvalidSetting> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(InvalidSetting(format!(
            "`{s}` is not a number of 0 or more"
        ))),
    }
}

/// A finite number above 0 (an age in hours).
pub fn positive_number(s: &str) -> Result<f64, InvalidSetting> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(InvalidSetting(format!("`{s}` is not a number above 0"))),
    }
}

fn parse_count(s: &str) -> Result<usize, InvalidSetting> {
    s.trim()
        .parse()
        .map_err(|_| InvalidSetting(format!("`{s}` is not a whole number")))
}

/// A flag's seconds: finite, 0 or more (fractions allowed).
pub fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected seconds (0 or more), got '{s}'")),
    }
}

/// A flag's share: between 0 and 1.
pub fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a share between 0 and 1, got '{s}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_values_parse() {
        assert_eq!("0".parse::<Rate>().unwrap().per_sec(), None);
        assert_eq!("250".parse::<Rate>().unwrap().per_sec(), Some(250.0));
        assert!("-1".parse::<Rate>().is_err());
        assert!("NaN".parse::<Rate>().is_err());
        assert!("inf".parse::<Rate>().is_err());
        assert!("1".parse::<Folds>().is_err());
        assert_eq!("3".parse::<Folds>().unwrap().get(), 3);
        assert!(positive("0").is_err());
        assert!(positive("-2").is_err());
        assert_eq!(positive("7").unwrap().get(), 7);
        assert!(partitions("0").is_err());
        assert_eq!(replication_factor(" 3 ").unwrap(), 3);
        assert!(replication_factor("0").is_err());
        assert!(replication_factor("three").is_err());
        assert!(brokers("").is_err());
        assert!(brokers(" , ").is_err());
        assert_eq!(brokers(" a:1,b:2 ").unwrap(), "a:1,b:2");
        assert!(probability("0").is_err() && probability("1").is_err());
        assert_eq!(probability("0.05").unwrap(), 0.05);
        assert!(non_negative("-0.1").is_err() && non_negative("inf").is_err());
    }
}
