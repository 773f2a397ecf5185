//! The end-of-run summary: sent, predicted, missing, duplicates, dead-lettered, accuracy per
//! model version, latency percentiles, input lines skipped.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::ValueEnum;

use super::SkippedLine;
use crate::scenario::{Ceiling, Scenario};
use crate::stream::messages::Prediction;

/// Accuracy of one model version on the labeled requests it scored.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VersionTally {
    pub predictions: u64,
    pub labeled: u64,
    pub correct: u64,
}

impl VersionTally {
    pub fn accuracy(&self) -> Option<f64> {
        (self.labeled > 0).then(|| self.correct as f64 / self.labeled as f64)
    }
}

/// The end-of-run summary.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub sent: usize,
    pub predicted: usize,
    pub dead_lettered: usize,
    pub duplicates: usize,
    /// Request ids that got neither a prediction nor a dead letter.
    pub missing: Vec<String>,
    pub per_version: BTreeMap<u32, VersionTally>,
    /// First prediction of each request, in arrival order: the first
    /// [`super::collect::KEEP_PREDICTIONS`] of them (the others are counted, not kept).
    pub predictions: Vec<Prediction>,
    /// Each second of sends, its answers and its worst latency.
    pub seconds: Seconds,
    /// Send-to-receive latency of each first prediction, milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Of that, send to scored (the prediction's `predicted_at_ms - sent_at_ms`, wall clocks at
    /// millisecond resolution): what the inbound path and the predictor take.
    pub scored_ms: Vec<f64>,
    pub elapsed: Duration,
    /// First send to last prediction or dead letter.
    pub throughput: f64,
    /// Input lines not sent (not UTF-8, not JSON, too long, a UCI line that does not parse).
    pub skipped_lines: usize,
    /// The first few of them.
    pub first_skipped: Vec<SkippedLine>,
    /// Labels sent apart on the labels topic, when they were.
    pub labels: Option<super::LabelsSent>,
    /// The scenario that made the rows, and the best any model could score on them.
    pub scenario: Option<(Scenario, Ceiling)>,
}

impl Summary {
    pub fn report(&self) -> String {
        let mut s = format!(
            "sent {}, predicted {}, dead-lettered {}, missing {}, duplicates {}\n\
             throughput {:.0} records/s over {:.1} s\n",
            self.sent,
            self.predicted,
            self.dead_lettered,
            self.missing.len(),
            self.duplicates,
            self.throughput,
            self.elapsed.as_secs_f64()
        );
        s += &format!("input lines skipped: {}\n", self.skipped_lines);
        if let Some(l) = self.labels {
            s += &format!(
                "labels sent apart: {}, never sent (outside --label-fraction): {}, not sent \
                 (stopped before their time): {}\n",
                l.sent, l.withheld, l.unsent
            );
        }
        if let Some((scenario, ceiling)) = &self.scenario {
            s += &scenario_line(scenario, ceiling);
        }
        for skipped in &self.first_skipped {
            s += &format!("  {skipped}\n");
        }
        if self.skipped_lines > self.first_skipped.len() {
            s += &format!(
                "  and {} more (each in the log)\n",
                self.skipped_lines - self.first_skipped.len()
            );
        }
        for (name, values) in [
            ("latency ms", &self.latencies_ms),
            ("  of which send to scored", &self.scored_ms),
        ] {
            if let Some([p50, p95, p99, max]) = quantiles(values, [0.5, 0.95, 0.99, 1.0]) {
                s += &format!("{name}: p50 {p50:.1}, p95 {p95:.1}, p99 {p99:.1}, max {max:.1}\n");
            }
        }
        let slowest = self.slowest_seconds(3);
        if !slowest.is_empty() {
            let shown: Vec<String> = slowest.iter().map(SlowSecond::to_string).collect();
            s += &format!("slowest seconds, by send time: {}\n", shown.join("; "));
        }
        for (v, t) in &self.per_version {
            let acc = match (t.accuracy(), self.labels) {
                // Labels sent apart are known here at once (they reach the pipeline later).
                (Some(a), Some(_)) => format!("{a:.4} (labels sent apart, known here at once)"),
                (Some(a), None) => format!("{a:.4}"),
                (None, Some(_)) => "– (no label sent)".into(),
                (None, None) => "n/a".into(),
            };
            s += &format!(
                "model v{v}: {} predictions, accuracy {acc} on {} labeled\n",
                t.predictions, t.labeled
            );
        }
        if !self.missing.is_empty() {
            let shown: Vec<&str> = self.missing.iter().take(20).map(String::as_str).collect();
            s += &format!("never answered: {}", shown.join(", "));
            if self.missing.len() > shown.len() {
                s += &format!(" and {} more", self.missing.len() - shown.len());
            }
            s.push('\n');
        }
        s
    }
}

/// One second of sends and its worst latency: where a stall was, to set beside other logs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowSecond {
    /// The second's start, epoch milliseconds (the requests' `sent_at_ms`).
    pub second_ms: i64,
    /// Requests sent in it that were answered.
    pub answered: usize,
    pub max_ms: f64,
    /// Of the slowest, send to scored.
    pub scored_ms: f64,
}

impl std::fmt::Display for SlowSecond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = chrono::DateTime::from_timestamp_millis(self.second_ms)
            .map(|t| t.format("%H:%M:%S UTC").to_string())
            .unwrap_or_else(|| self.second_ms.to_string());
        write!(
            f,
            "{at} max {:.1} ms (send to scored {:.1}) of {} answered",
            self.max_ms, self.scored_ms, self.answered
        )
    }
}

/// Each second of sends with its answered requests and its worst latency, as they arrive:
/// one entry a second of the run, whatever the rate.
#[derive(Debug, Clone, Default)]
pub struct Seconds(BTreeMap<i64, SlowSecond>);

impl Seconds {
    /// A request sent at `sent_at_ms` answered after `latency_ms`, `scored_ms` of it to scored.
    pub fn answered(&mut self, sent_at_ms: i64, latency_ms: f64, scored_ms: f64) {
        let second_ms = sent_at_ms.div_euclid(1000) * 1000;
        let w = self.0.entry(second_ms).or_insert(SlowSecond {
            second_ms,
            answered: 0,
            max_ms: f64::NEG_INFINITY,
            scored_ms: 0.0,
        });
        w.answered += 1;
        if latency_ms > w.max_ms {
            w.max_ms = latency_ms;
            w.scored_ms = scored_ms;
        }
    }

    /// The `n` seconds with the largest latency, worst first.
    pub fn slowest(&self, n: usize) -> Vec<SlowSecond> {
        let mut worst: Vec<SlowSecond> = self.0.values().copied().collect();
        worst.sort_by(|a, b| b.max_ms.total_cmp(&a.max_ms));
        worst.truncate(n);
        worst
    }
}

impl Summary {
    /// The `n` seconds of sends with the largest latency, worst first.
    pub fn slowest_seconds(&self, n: usize) -> Vec<SlowSecond> {
        self.seconds.slowest(n)
    }
}

/// What a scenario made, and the best score possible on it.
fn scenario_line(scenario: &Scenario, ceiling: &Ceiling) -> String {
    let name = scenario
        .kind
        .to_possible_value()
        .map(|v| v.get_name().to_owned());
    let mut s = format!(
        "scenario {}: {} fresh rows made (none a copy of a UCI row), drift {:.2} reached at row {}",
        name.unwrap_or_default(),
        ceiling.rows,
        scenario.strength,
        scenario.ramp_rows
    );
    if let (Some(a), Some(l)) = (ceiling.accuracy(), ceiling.log_loss()) {
        s += &format!(
            "; the best possible on them (the reference's own probabilities): accuracy {a:.4}, \
             log loss {l:.4}"
        );
    }
    s.push('\n');
    s
}

/// The quantiles `qs` (each 0..=1) of `values` (nearest rank), sorting them once.
pub fn quantiles<const N: usize>(values: &[f64], qs: [f64; N]) -> Option<[f64; N]> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(qs.map(|q| v[((v.len() - 1) as f64 * q).round() as usize]))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_counts_the_skipped_lines_and_lists_the_first() {
        let mut s = Summary::default();
        assert!(
            s.report().contains("\ninput lines skipped: 0\n"),
            "{}",
            s.report()
        );
        s.skipped_lines = 3;
        s.first_skipped = (2..4)
            .map(|line| SkippedLine {
                file: "in.jsonl".into(),
                line,
                reason: "not JSON".into(),
            })
            .collect();
        let report = s.report();
        assert!(
            report.contains(
                "input lines skipped: 3\n  in.jsonl:2: not JSON\n  in.jsonl:3: not JSON\n  \
                 and 1 more (each in the log)\n"
            ),
            "{report}"
        );
    }

    #[test]
    fn the_slowest_seconds_are_found_by_send_time_worst_first() {
        let mut s = Summary::default();
        // Three seconds of sends: the second one holds the stall.
        for (sent, latency) in [
            (1_000, 5.0),
            (1_500, 7.0),
            (2_100, 900.0),
            (2_900, 40.0),
            (3_000, 9.0),
        ] {
            s.seconds.answered(sent, latency, latency - 1.0);
            s.latencies_ms.push(latency);
            s.scored_ms.push(latency - 1.0);
        }
        let worst = s.slowest_seconds(2);
        assert_eq!(
            worst,
            vec![
                SlowSecond {
                    second_ms: 2_000,
                    answered: 2,
                    max_ms: 900.0,
                    scored_ms: 899.0
                },
                SlowSecond {
                    second_ms: 3_000,
                    answered: 1,
                    max_ms: 9.0,
                    scored_ms: 8.0
                },
            ]
        );
        assert!(s
            .report()
            .contains("slowest seconds, by send time: 00:00:02 UTC max 900.0 ms"));
    }

    #[test]
    fn quantiles_are_nearest_ranks_of_one_sort() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(
            quantiles(&values, [0.0, 0.5, 0.99, 1.0]),
            Some([1.0, 51.0, 99.0, 100.0])
        );
        assert_eq!(quantiles(&[], [0.5]), None);
    }
}
