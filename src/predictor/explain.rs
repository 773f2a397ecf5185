//! Reasons for predictions (`--explain`): which predictions carry them, and the reasons
//! themselves: every feature's TreeSHAP contribution to the champion's log-odds, largest first
//! (a reader shows the first few; the dashboard averages their sizes into each version's
//! feature importance).
//! Explaining a row costs far more than scoring it (BENCHMARKS.md section 1), so by default a
//! sample of the predictions is explained, the same requests whichever predictor scores them
//! and however often.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::bundle::Bundle;
use crate::data::CensusRow;
use crate::features::{feature_names, feature_texts, N_FEATURES};
use crate::stream::messages::Reason;

/// Which predictions carry their reasons.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Explain {
    Off,
    All,
    /// The share of requests, chosen by their id.
    Sample(f64),
}

/// The default: one prediction in 500, which keeps the predictor's full-speed throughput within
/// a few percent of what it is without reasons (BENCHMARKS.md section 1) and still gives the
/// page two explained predictions a second at 1,000 records/s.
pub const DEFAULT_EXPLAIN: Explain = Explain::Sample(0.002);

impl Explain {
    /// Whether the prediction of `request_id` carries its reasons. A sample is chosen by a hash
    /// of the id: the same requests on every replay and by every predictor.
    pub fn chooses(self, request_id: &str) -> bool {
        match self {
            Explain::Off => false,
            Explain::All => true,
            Explain::Sample(share) => {
                let digest = Sha256::digest(request_id.as_bytes());
                let head = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
                (head as f64) < share * u64::MAX as f64
            }
        }
    }

    pub fn is_on(self) -> bool {
        self != Explain::Off
    }
}

impl fmt::Display for Explain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Explain::Off => write!(f, "off"),
            Explain::All => write!(f, "all"),
            Explain::Sample(share) => write!(f, "sample:{share}"),
        }
    }
}

impl FromStr for Explain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Explain::Off),
            "all" => Ok(Explain::All),
            _ => {
                let share = s
                    .strip_prefix("sample:")
                    .ok_or_else(|| format!("`{s}` is not off, all or sample:F"))?;
                let share: f64 = share
                    .parse()
                    .map_err(|_| format!("sample:{share}: not a number"))?;
                if !(share > 0.0 && share <= 1.0) {
                    return Err(format!(
                        "sample:{share}: the share must be above 0 and at most 1"
                    ));
                }
                Ok(Explain::Sample(share))
            }
        }
    }
}

/// The reasons for the champion's scores of `rows`, one list per row (largest contribution
/// first, features that moved nothing left out); `None` when the bundle's model does not
/// explain.
pub fn reasons(bundle: &Bundle, rows: &[&CensusRow]) -> Option<Vec<Vec<Reason>>> {
    if rows.is_empty() || !bundle.model.explains() {
        return None;
    }
    let mut features = Vec::with_capacity(rows.len() * N_FEATURES);
    for row in rows {
        features.extend_from_slice(&bundle.processor.transform(row));
    }
    let contributions = bundle.model.contributions(&features)?;
    let scale = bundle.model.log_odds_scale()?;
    let names = feature_names();
    Some(
        rows.iter()
            .zip(contributions.chunks_exact(N_FEATURES + 1))
            .map(|(row, phi)| {
                let log_odds: Vec<f64> = phi[..N_FEATURES].iter().map(|c| c * scale).collect();
                top_reasons(&log_odds, &names, &feature_texts(row))
            })
            .collect(),
    )
}

/// The contributions that are not zero, largest by size first, with their features' names and
/// values.
fn top_reasons(phi: &[f64], names: &[String], values: &[String]) -> Vec<Reason> {
    // A contribution that is not a finite number would be written as `null`, which no reader
    // of the prediction could read.
    let mut order: Vec<usize> = (0..phi.len())
        .filter(|&j| phi[j] != 0.0 && phi[j].is_finite())
        .collect();
    order.sort_by(|&a, &b| phi[b].abs().total_cmp(&phi[a].abs()).then(a.cmp(&b)));
    order
        .into_iter()
        .map(|j| Reason {
            feature: names[j].clone(),
            value: values[j].clone(),
            contribution: phi[j],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_and_bad_ones_say_why() {
        for text in ["off", "all", "sample:0.002", "sample:1"] {
            assert_eq!(text.parse::<Explain>().unwrap().to_string(), text);
        }
        for bad in [
            "some",
            "sample:",
            "sample:0",
            "sample:1.5",
            "sample:-0.1",
            "sample:NaN",
        ] {
            assert!(bad.parse::<Explain>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_sample_chooses_its_share_of_requests_and_always_the_same_ones() {
        let sample = Explain::Sample(0.01);
        let chosen = (0..100_000)
            .filter(|i| sample.chooses(&format!("request-{i}")))
            .count();
        // Binomial(100,000, 0.01): sd 31.5; 4 sd either side.
        assert!((874..=1126).contains(&chosen), "{chosen} of 100,000");
        let ids: Vec<String> = (0..1000).map(|i| format!("r{i}")).collect();
        let first: Vec<bool> = ids.iter().map(|id| sample.chooses(id)).collect();
        let again: Vec<bool> = ids.iter().map(|id| sample.chooses(id)).collect();
        assert_eq!(first, again);
        assert!(ids.iter().all(|id| Explain::All.chooses(id)));
        assert!(!ids.iter().any(|id| Explain::Off.chooses(id)));
    }

    #[test]
    fn the_largest_contributions_by_size_come_first_and_zeros_never() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let values: Vec<String> = ["1", "2", "3", "4", "5"].map(String::from).to_vec();
        let r = top_reasons(&[0.1, -0.7, 0.0, 0.3, -0.05], &names, &values);
        let got: Vec<(&str, &str, f64)> = r
            .iter()
            .map(|r| (r.feature.as_str(), r.value.as_str(), r.contribution))
            .collect();
        assert_eq!(
            got,
            [
                ("b", "2", -0.7),
                ("d", "4", 0.3),
                ("a", "1", 0.1),
                ("e", "5", -0.05)
            ]
        );
        assert!(top_reasons(&[0.0, 0.0], &names[..2], &values[..2]).is_empty());
        let odd = top_reasons(&[f64::NAN, f64::INFINITY, 0.2], &names[..3], &values[..3]);
        assert_eq!(odd.len(), 1, "{odd:?}");
        assert!(serde_json::to_string(&odd).unwrap().contains("0.2"));
    }
}
