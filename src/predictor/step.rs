//! The predictor's work on one batch, without a broker: decode, validate, transform and score
//! with the bundle in use; one outcome per message, in input order.

use super::explain::{reasons, Explain};
use crate::data::{label_text, parse_label};
use crate::kafka::InMessage;
use crate::registry::{CurrentServing, Serving};
use crate::stream::decode::{decode_request, Fault, Rejection};
use crate::stream::messages::{now_ms, Prediction, Request};

/// The result of one consumed record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Prediction {
        key: String,
        payload: Vec<u8>,
        /// Where the request was read: topic, partition, offset.
        source: (String, i32, i64),
        /// What the live metrics need of it.
        scored: Scored,
    },
    DeadLetter {
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        fault: Fault,
        detail: String,
        source: (String, i32, i64),
    },
}

/// A prediction's figures for the live metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// The request's `sent_at_ms`.
    pub sent_at_ms: i64,
    /// The request's label, when it came with one: whether it is `>50K`.
    pub truth: Option<bool>,
    /// The champion's version and probability.
    pub champion: (u32, f64),
    /// The challenger's in shadow, if any.
    pub challenger: Option<(u32, f64)>,
    /// It carries its reasons.
    pub explained: bool,
}

impl Outcome {
    fn dead_letter(m: &InMessage, rejection: Rejection) -> Self {
        Outcome::DeadLetter {
            key: m.key.clone(),
            payload: m.payload.clone(),
            fault: rejection.fault,
            detail: rejection.detail,
            source: (m.topic.clone(), m.partition, m.offset),
        }
    }
}

/// Scores batches with whatever bundles serve when each batch starts.
pub struct Predictor {
    current: CurrentServing,
    /// Versions used, in the order they were first used.
    versions: Vec<u32>,
    explain: Explain,
}

impl Predictor {
    pub fn new(current: CurrentServing) -> Self {
        Predictor {
            current,
            versions: Vec::new(),
            explain: Explain::Off,
        }
    }

    /// The same, its predictions explained as `explain` says.
    pub fn explaining(mut self, explain: Explain) -> Self {
        self.explain = explain;
        self
    }

    /// One outcome per message of `batch`, in order. The whole batch is scored with the bundles
    /// serving when it starts (the service installs a champion before it reads any batch).
    pub fn step(&mut self, batch: &[InMessage]) -> Vec<Outcome> {
        let serving = self
            .current
            .load_full()
            .expect("a champion is installed before the first batch");
        let version = serving.champion.manifest.version;
        if self.versions.last() != Some(&version) {
            self.versions.push(version);
        }
        score_batch_explained(&serving, batch, self.explain)
    }

    pub fn versions(&self) -> &[u32] {
        &self.versions
    }

    /// The challenger scored in shadow now, if any.
    pub fn challenger_version(&self) -> Option<u32> {
        self.current
            .load()
            .as_ref()
            .and_then(|s| s.challenger.as_ref().map(|c| c.manifest.version))
    }
}

/// The outcomes of a batch the model failed to score: each decoded request a `scoring_failed`
/// dead letter with the model's error, each undecodable one its own.
fn unscored(
    batch: &[InMessage],
    decoded: Vec<Result<Request, Rejection>>,
    detail: &str,
) -> Vec<Outcome> {
    batch
        .iter()
        .zip(decoded)
        .map(|(m, d)| {
            let rejection = d.err().unwrap_or_else(|| Rejection {
                fault: Fault::ScoringFailed,
                detail: detail.to_owned(),
            });
            Outcome::dead_letter(m, rejection)
        })
        .collect()
}

/// Scores a batch with the champion (and the challenger in shadow): one outcome per message, in
/// order. A batch the champion fails to score dead-letters its scorable records with the reason,
/// rather than stopping the service; a challenger that fails only loses its shadow scores.
pub fn score_batch(serving: &Serving, batch: &[InMessage]) -> Vec<Outcome> {
    score_batch_explained(serving, batch, Explain::Off)
}

/// [`score_batch`], the predictions `explain` chooses carrying their reasons (none where the
/// champion does not explain).
pub fn score_batch_explained(
    serving: &Serving,
    batch: &[InMessage],
    explain: Explain,
) -> Vec<Outcome> {
    let bundle = &serving.champion;
    let decoded: Vec<_> = batch
        .iter()
        .map(|m| decode_request(m.payload.as_deref()))
        .collect();
    let rows: Vec<_> = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok().map(|r| &r.record))
        .collect();
    let shadow: Option<(u32, Vec<f64>)> =
        serving
            .challenger
            .as_ref()
            .and_then(|c| match c.predict(rows.iter().copied()) {
                Ok(p) => Some((c.manifest.version, p)),
                Err(e) => {
                    tracing::warn!(
                        "shadow scoring with v{} failed: {}",
                        c.manifest.version,
                        crate::error_chain(&e)
                    );
                    None
                }
            });
    let probabilities = match bundle.predict(rows.into_iter()) {
        Ok(p) => p,
        Err(e) => {
            let detail = crate::error_chain(&e);
            tracing::error!("scoring a batch failed: {detail}");
            return unscored(batch, decoded, &detail);
        }
    };
    let choice: Vec<bool> = decoded
        .iter()
        .map(|d| d.as_ref().is_ok_and(|r| explain.chooses(&r.request_id)))
        .collect();
    let chosen: Vec<&crate::data::CensusRow> = decoded
        .iter()
        .zip(&choice)
        .filter_map(|(d, &c)| d.as_ref().ok().filter(|_| c))
        .map(|r| &r.record)
        .collect();
    let mut explained = reasons(bundle, &chosen).unwrap_or_default().into_iter();
    // The challenger's reasons on the same rows, when it explains too.
    let mut challenger_explained = serving
        .challenger
        .as_ref()
        .filter(|_| shadow.is_some())
        .and_then(|c| reasons(c, &chosen))
        .unwrap_or_default()
        .into_iter();
    let mut probabilities = probabilities.into_iter();
    let (challenger_version, mut shadow) = match shadow {
        Some((v, p)) => (Some(v), Some(p.into_iter())),
        None => (None, None),
    };
    let predicted_at_ms = now_ms();
    let bundle_sha256 = bundle.manifest.bundle_sha256();
    batch
        .iter()
        .zip(decoded)
        .zip(choice)
        .map(|((m, d), chosen)| match d {
            Ok(request) => {
                let probability = probabilities.next().expect("one probability per request");
                let challenger_probability = shadow.as_mut().and_then(Iterator::next);
                let (reasons, challenger_reasons) = if chosen {
                    (
                        explained.next().unwrap_or_default(),
                        challenger_explained.next().unwrap_or_default(),
                    )
                } else {
                    (Vec::new(), Vec::new())
                };
                let prediction = Prediction {
                    probability,
                    predicted: label_text(probability >= 0.5).to_owned(),
                    income_bracket: request.income_bracket,
                    model_version: bundle.manifest.version,
                    bundle_sha256: bundle_sha256.clone(),
                    challenger_version,
                    challenger_probability,
                    sent_at_ms: request.sent_at_ms,
                    predicted_at_ms,
                    partition: m.partition,
                    offset: m.offset,
                    request_id: request.request_id,
                    reasons,
                    challenger_reasons,
                };
                let scored = Scored {
                    sent_at_ms: prediction.sent_at_ms,
                    truth: prediction.income_bracket.as_deref().and_then(parse_label),
                    champion: (prediction.model_version, probability),
                    challenger: challenger_version.zip(challenger_probability),
                    explained: !prediction.reasons.is_empty(),
                };
                Outcome::Prediction {
                    key: prediction.request_id.clone(),
                    payload: serde_json::to_vec(&prediction).expect("prediction serializes"),
                    source: (m.topic.clone(), m.partition, m.offset),
                    scored,
                }
            }
            Err(rejection) => Outcome::dead_letter(m, rejection),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(offset: i64, payload: &str) -> InMessage {
        InMessage {
            topic: "census.requests".into(),
            partition: 0,
            offset,
            key: Some(format!("k{offset}").into_bytes()),
            payload: Some(payload.as_bytes().to_vec()),
            timestamp_ms: None,
        }
    }

    #[test]
    fn a_batch_the_model_cannot_score_becomes_dead_letters_with_the_models_error() {
        let good = r#"{"request_id": "r", "sent_at_ms": 1, "record": {"age": 52, "workclass": "Self-emp-inc", "fnlwgt": 287927, "education": "HS-grad", "education_num": 9, "marital_status": "Married-civ-spouse", "occupation": "Exec-managerial", "relationship": "Wife", "race": "White", "sex": "Female", "capital_gain": 15024, "capital_loss": 0, "hours_per_week": 40, "native_country": "United-States"}}"#;
        let batch = vec![message(7, good), message(8, "not json"), message(9, good)];
        let decoded: Vec<_> = batch
            .iter()
            .map(|m| decode_request(m.payload.as_deref()))
            .collect();
        assert!(decoded[0].is_ok() && decoded[2].is_ok(), "{decoded:?}");
        let outcomes = unscored(&batch, decoded, "the model failed");
        let reasons: Vec<_> = outcomes
            .iter()
            .map(|o| match o {
                Outcome::DeadLetter {
                    fault,
                    detail,
                    source,
                    payload,
                    ..
                } => {
                    assert_eq!(
                        payload.as_deref(),
                        Some(batch[(source.2 - 7) as usize].payload.as_deref().unwrap())
                    );
                    (*fault, detail.clone(), source.2)
                }
                Outcome::Prediction { .. } => panic!("nothing is predicted"),
            })
            .collect();
        assert_eq!(
            reasons[0],
            (Fault::ScoringFailed, "the model failed".into(), 7)
        );
        assert_eq!(reasons[1].0, Fault::NotJson);
        assert_eq!(
            reasons[2],
            (Fault::ScoringFailed, "the model failed".into(), 9)
        );
    }
}
