//! Decoding and validating a request. Anything that cannot be scored gets a [`Rejection`] that
//! names the kind of fault, which becomes the dead letter's reason. An unseen category is not a
//! fault: the processor scores it with its unknown code.

use crate::data::parse_label;

use super::messages::{Label, Request};

/// Why a record cannot be scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    EmptyPayload,
    NotJson,
    MissingField,
    WrongType,
    ImpossibleValue,
    /// The record decoded, but the model failed to score it.
    ScoringFailed,
    /// The prediction was refused by the broker (e.g. larger than the topic allows); the dead
    /// letter stands in for it.
    Undeliverable,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::EmptyPayload,
        Fault::NotJson,
        Fault::MissingField,
        Fault::WrongType,
        Fault::ImpossibleValue,
        Fault::ScoringFailed,
        Fault::Undeliverable,
    ];

    /// The reason as written in the dead letter's `dlq.reason` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::EmptyPayload => "empty_payload",
            Fault::NotJson => "not_json",
            Fault::MissingField => "missing_field",
            Fault::WrongType => "wrong_type",
            Fault::ImpossibleValue => "impossible_value",
            Fault::ScoringFailed => "scoring_failed",
            Fault::Undeliverable => "undeliverable",
        }
    }
}

/// A rejected record: the fault and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub fault: Fault,
    pub detail: String,
}

pub(crate) fn reject(fault: Fault, detail: impl Into<String>) -> Rejection {
    Rejection {
        fault,
        detail: detail.into(),
    }
}

/// Longest `request_id` accepted, in bytes: it travels twice in a prediction (key and value),
/// which must fit the predictions topic's limit.
pub const MAX_REQUEST_ID_BYTES: usize = 256;

/// A JSON payload as `T`, its faults classified.
fn decode_json<T: serde::de::DeserializeOwned>(payload: Option<&[u8]>) -> Result<T, Rejection> {
    let bytes = match payload {
        None | Some([]) => return Err(reject(Fault::EmptyPayload, "the message has no payload")),
        Some(b) => b,
    };
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let msg = e.to_string();
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => reject(Fault::NotJson, msg),
            Category::Data if msg.starts_with("missing field") => reject(Fault::MissingField, msg),
            Category::Data => reject(Fault::WrongType, msg),
        }
    })
}

fn check_request_id(id: &str) -> Result<(), Rejection> {
    if id.is_empty() {
        return Err(reject(Fault::MissingField, "request_id is empty"));
    }
    if id.len() > MAX_REQUEST_ID_BYTES {
        return Err(reject(
            Fault::ImpossibleValue,
            format!(
                "request_id is {} bytes; at most {MAX_REQUEST_ID_BYTES}",
                id.len()
            ),
        ));
    }
    Ok(())
}

/// Decodes and validates one `census.labels` payload; returns it with its label (`>50K`).
pub fn decode_label(payload: Option<&[u8]>) -> Result<(Label, bool), Rejection> {
    let label: Label = decode_json(payload)?;
    check_request_id(&label.request_id)?;
    match parse_label(&label.income_bracket) {
        Some(truth) => Ok((label, truth)),
        None => Err(reject(
            Fault::ImpossibleValue,
            format!(
                "income_bracket `{}` is neither <=50K nor >50K",
                label.income_bracket
            ),
        )),
    }
}

/// Decodes and validates one `census.requests` payload.
pub fn decode_request(payload: Option<&[u8]>) -> Result<Request, Rejection> {
    let request: Request = decode_json(payload)?;
    check_request_id(&request.request_id)?;
    request
        .record
        .validate()
        .map_err(|e| reject(Fault::ImpossibleValue, e.to_string()))?;
    if let Some(label) = &request.income_bracket {
        if parse_label(label).is_none() {
            return Err(reject(
                Fault::ImpossibleValue,
                format!("income_bracket `{label}` is neither <=50K nor >50K"),
            ));
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"request_id":"r1","sent_at_ms":1,"income_bracket":">50K.","record":{"age":39,"workclass":"State-gov","fnlwgt":77516,"education":"Bachelors","education_num":13,"marital_status":"Never-married","occupation":"Adm-clerical","relationship":"Not-in-family","race":"White","sex":"Male","capital_gain":2174,"capital_loss":0,"hours_per_week":40,"native_country":"Mars"}}"#;

    fn fault(payload: &str) -> Fault {
        decode_request(Some(payload.as_bytes())).unwrap_err().fault
    }

    #[test]
    fn a_good_request_with_an_unseen_category_decodes() {
        let r = decode_request(Some(GOOD.as_bytes())).unwrap();
        assert_eq!(r.record.native_country, "Mars");
        assert_eq!(r.income_bracket.as_deref(), Some(">50K."));
    }

    #[test]
    fn a_label_decodes_and_its_faults_are_classified() {
        let good = r#"{"request_id":"r1","income_bracket":">50K.","labeled_at_ms":5}"#;
        let (label, truth) = decode_label(Some(good.as_bytes())).unwrap();
        assert_eq!((label.request_id.as_str(), truth), ("r1", true));
        let fault = |p: &str| decode_label(Some(p.as_bytes())).unwrap_err().fault;
        assert_eq!(fault("{"), Fault::NotJson);
        assert_eq!(
            fault(&good.replace(r#","labeled_at_ms":5"#, "")),
            Fault::MissingField
        );
        assert_eq!(fault(&good.replace("5}", r#""5"}"#)), Fault::WrongType);
        assert_eq!(
            fault(&good.replace(">50K.", "rich")),
            Fault::ImpossibleValue
        );
        assert_eq!(fault(&good.replace("r1", "")), Fault::MissingField);
    }

    #[test]
    fn each_fault_is_classified() {
        assert_eq!(decode_request(None).unwrap_err().fault, Fault::EmptyPayload);
        assert_eq!(
            decode_request(Some(b"")).unwrap_err().fault,
            Fault::EmptyPayload
        );
        assert_eq!(fault("not json at all"), Fault::NotJson);
        assert_eq!(fault(&GOOD[..40]), Fault::NotJson);
        assert_eq!(
            fault(&GOOD.replace(r#""age":39,"#, "")),
            Fault::MissingField
        );
        assert_eq!(
            fault(&GOOD.replace(r#""age":39"#, r#""age":"old""#)),
            Fault::WrongType
        );
        assert_eq!(
            fault(&GOOD.replace(r#""age":39"#, r#""age":-3"#)),
            Fault::ImpossibleValue
        );
        assert_eq!(
            fault(&GOOD.replace(r#""hours_per_week":40"#, r#""hours_per_week":200"#)),
            Fault::ImpossibleValue
        );
        assert_eq!(
            fault(&GOOD.replace(">50K.", "rich")),
            Fault::ImpossibleValue
        );
        let long = format!("\"{}\"", "x".repeat(crate::data::MAX_CATEGORY_BYTES + 1));
        let r = decode_request(Some(GOOD.replace(r#""Mars""#, &long).as_bytes())).unwrap_err();
        assert_eq!(r.fault, Fault::ImpossibleValue);
        assert!(r.detail.contains("native_country"), "{}", r.detail);
        let long_id = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
        assert_eq!(
            fault(&GOOD.replace(r#""r1""#, &format!("\"{long_id}\""))),
            Fault::ImpossibleValue
        );
        let longest = "x".repeat(MAX_REQUEST_ID_BYTES);
        assert!(decode_request(Some(GOOD.replace("r1", &longest).as_bytes())).is_ok());
    }
}
