//! Multi-message: up to 10 writes in one HTTP request (one request against the throttle, per
//! client docs; UNCONFIRMED by the vendor), each with its own status in the answer. Sending
//! and the per-message outcomes are in `writes`.

use super::outcome::WriteOutcome;
use super::transport::{SERVICE, parse_errors};
use crate::error::Error;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most destructive messages one multi-message may carry.
pub const MAX_MESSAGES: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub label: String,
    /// Relative to the account prefix, e.g. `/order-service/order/12/row`.
    pub uri: String,
    pub http_method: String,
    #[serde(default)]
    pub body: Value,
}

impl Message {
    pub fn post(label: impl Into<String>, uri: impl Into<String>, body: Value) -> Self {
        Message { label: label.into(), uri: uri.into(), http_method: "POST".into(), body }
    }

    pub fn put(label: impl Into<String>, uri: impl Into<String>, body: Value) -> Self {
        Message { label: label.into(), uri: uri.into(), http_method: "PUT".into(), body }
    }
}

/// One entry of `processedMessages`, read strictly: a label, a numeric status and a body.
/// `None` when the entry does not have that shape (its message's outcome is then unknown).
pub(crate) fn parse_processed(v: &Value) -> Option<(String, WriteOutcome<Value>)> {
    let label = v.get("label")?.as_str()?.to_string();
    let status = u16::try_from(v.get("statusCode")?.as_u64()?).ok()?;
    let body = match v.get("body") {
        None | Some(Value::Null) => Value::Null,
        Some(b @ Value::Object(_)) => b.clone(),
        Some(_) => return None,
    };
    let errors = parse_errors(&body);
    let (code, message) = errors.first().cloned().unwrap_or_default();
    let outcome = match status {
        200..=299 => WriteOutcome::Applied(body.get("response").cloned().unwrap_or(Value::Null)),
        429 => WriteOutcome::NotApplied(Error::Throttled { service: SERVICE, retry_after: None }),
        400..=499 if !errors.is_empty() => {
            WriteOutcome::NotApplied(Error::Rejected { service: SERVICE, status, code, message })
        }
        _ => WriteOutcome::Unknown(Error::OutcomeUnknown {
            service: SERVICE,
            detail: format!("message {label}: HTTP {status} {code} {message}"),
        }),
    };
    Some((label, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn processed_entries_are_read_strictly() {
        let ok = json!({"label": "so-0", "statusCode": 200, "body": {"response": 12}});
        assert!(
            matches!(parse_processed(&ok), Some((l, WriteOutcome::Applied(v))) if l == "so-0" && v == json!(12))
        );
        let refused = json!({"label": "so-1", "statusCode": 400, "body": {"errors": [{"code": "CMNC-400", "message": "x"}]}});
        assert!(parse_processed(&refused).is_some_and(|(_, o)| o.is_refused()));
        let gateway = json!({"label": "so-2", "statusCode": 502, "body": null});
        assert!(matches!(parse_processed(&gateway), Some((_, WriteOutcome::Unknown(_)))));
        // Drifted shapes: a string status, a string body.
        assert!(parse_processed(&json!({"label": "so-3", "statusCode": "200", "body": {}})).is_none());
        assert!(parse_processed(&json!({"label": "so-4", "statusCode": 200, "body": "ok"})).is_none());
    }
}
