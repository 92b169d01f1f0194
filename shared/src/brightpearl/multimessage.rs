//! Multi-message: up to 10 writes in one HTTP request (one request against the throttle, per
//! client docs; UNCONFIRMED by the vendor), each with its own status in the answer.

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

/// The outcome of one message. `status` 0 means Brightpearl did not process it
/// (`unprocessedMessages`, e.g. after an earlier failure with `onFail: STOP`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageResult {
    pub label: String,
    pub status: u16,
    /// The message's `response` on success.
    pub response: Option<Value>,
    /// `(code, message)` pairs on failure.
    pub errors: Vec<(String, String)>,
}

impl MessageResult {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The created id, for POSTs that answer `{"response": 123}`.
    pub fn created_id(&self) -> Option<u64> {
        self.response.as_ref().and_then(Value::as_u64)
    }

    pub(crate) fn from_processed(v: &Value) -> Option<MessageResult> {
        let label = v.get("label")?.as_str()?.to_string();
        let status = v.get("statusCode").and_then(Value::as_u64).unwrap_or(0) as u16;
        let body = v.get("body").cloned().unwrap_or(Value::Null);
        Some(MessageResult {
            label,
            status,
            response: body.get("response").cloned(),
            errors: super::client::parse_errors(&body),
        })
    }
}
