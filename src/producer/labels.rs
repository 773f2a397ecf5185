//! Labels sent apart from their requests, as a deployment learns them: later (a delay with a
//! spread, so out of order), and for a share of the requests only. The requests then go without
//! `income_bracket`; each label goes to `census.labels` once its delay has passed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureRecord;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::kafka::{BrokerError, KafkaProducer};
use crate::stream::messages::{now_ms, Label};

/// How a label's delay spreads around the chosen delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Spread {
    /// Exactly the delay.
    None,
    /// Uniform between 0 and twice the delay.
    Uniform,
    /// Exponential with the delay as its mean.
    Exponential,
}

/// Which labels are sent apart, and when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelPlan {
    /// Mean delay after the request is sent.
    pub delay: Duration,
    pub spread: Spread,
    /// Share of requests whose label is ever sent, in [0, 1].
    pub fraction: f64,
    /// Seeds which labels are sent and their delays: the same seed, the same labels.
    pub seed: u64,
}

/// What became of the labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelsSent {
    pub sent: usize,
    /// Never sent: outside `fraction`.
    pub withheld: usize,
    /// Not sent because the producer was stopped before their time.
    pub unsent: usize,
}

/// Decides, request by request, whether its label comes and when.
pub struct LabelDraw {
    plan: LabelPlan,
    rng: StdRng,
}

impl LabelDraw {
    pub fn new(plan: LabelPlan) -> Self {
        LabelDraw {
            plan,
            rng: StdRng::seed_from_u64(plan.seed),
        }
    }

    /// The delay of the next request's label, or `None` when it never comes.
    pub fn draw(&mut self) -> Option<Duration> {
        // Both draws every time, so that which labels come does not depend on the spread.
        let comes = self.rng.random::<f64>() < self.plan.fraction;
        let u: f64 = self.rng.random();
        let mean = self.plan.delay.as_secs_f64();
        let secs = match self.plan.spread {
            Spread::None => mean,
            Spread::Uniform => 2.0 * mean * u,
            Spread::Exponential => -mean * (1.0 - u).ln(),
        };
        comes.then(|| Duration::from_secs_f64(secs))
    }
}

/// A label waiting for its time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    pub at: Instant,
    pub request_id: String,
    pub income_bracket: String,
}

/// Sends each label that comes on `due` at its time, until `due` closes and every label went
/// out; on `shutdown`, stops and counts the rest as unsent.
pub async fn send_labels(
    producer: KafkaProducer,
    topic: String,
    mut due: mpsc::UnboundedReceiver<Due>,
    shutdown: CancellationToken,
) -> Result<LabelsSent, BrokerError> {
    let mut waiting: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut counts = LabelsSent::default();
    let mut open = true;
    let mut deliveries = Vec::new();
    loop {
        let next = waiting.peek().map(|Reverse(d)| d.at);
        if !open && next.is_none() {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => {
                while due.try_recv().is_ok() {
                    counts.unsent += 1;
                }
                counts.unsent += waiting.len();
                break;
            }
            got = due.recv(), if open => match got {
                Some(d) => waiting.push(Reverse(d)),
                None => open = false,
            },
            () = sleep_until(next) => {
                let now = Instant::now();
                while waiting.peek().is_some_and(|Reverse(d)| d.at <= now) {
                    let Reverse(d) = waiting.pop().expect("a label");
                    let label = Label {
                        request_id: d.request_id,
                        income_bracket: d.income_bracket,
                        labeled_at_ms: now_ms(),
                    };
                    let payload = serde_json::to_vec(&label).expect("a label serializes");
                    let record = FutureRecord::to(&topic)
                        .key(label.request_id.as_bytes())
                        .payload(&payload);
                    match producer.send_result(record) {
                        Ok(delivery) => deliveries.push(delivery),
                        Err((source, _)) => {
                            return Err(BrokerError::Delivery { topic, source });
                        }
                    }
                    counts.sent += 1;
                }
            }
        }
    }
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((source, _))) => return Err(BrokerError::Delivery { topic, source }),
            Err(_) => return Err(BrokerError::Canceled { topic }),
        }
    }
    Ok(counts)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(plan: LabelPlan, n: usize) -> Vec<Option<Duration>> {
        let mut d = LabelDraw::new(plan);
        (0..n).map(|_| d.draw()).collect()
    }

    #[test]
    fn a_share_of_labels_comes_with_delays_spread_around_the_mean() {
        let plan = LabelPlan {
            delay: Duration::from_secs(5),
            spread: Spread::Uniform,
            fraction: 0.7,
            seed: 7,
        };
        let d = draws(plan, 10_000);
        let came: Vec<f64> = d.iter().flatten().map(Duration::as_secs_f64).collect();
        let share = came.len() as f64 / d.len() as f64;
        assert!((share - 0.7).abs() < 0.02, "{share}");
        let mean = came.iter().sum::<f64>() / came.len() as f64;
        assert!((mean - 5.0).abs() < 0.15, "{mean}");
        assert!(came.iter().all(|&s| (0.0..=10.0).contains(&s)));
        // The same seed, the same labels; another spread, the same labels come.
        assert_eq!(draws(plan, 100), draws(plan, 100));
        let fixed = LabelPlan {
            spread: Spread::None,
            ..plan
        };
        let same: Vec<bool> = draws(fixed, 100).iter().map(Option::is_some).collect();
        let uniform: Vec<bool> = draws(plan, 100).iter().map(Option::is_some).collect();
        assert_eq!(same, uniform);
        assert!(draws(fixed, 100)
            .iter()
            .flatten()
            .all(|&s| s == Duration::from_secs(5)));
    }
}
