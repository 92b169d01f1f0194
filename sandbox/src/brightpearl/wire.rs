//! How the simulated Brightpearl puts an answer on the wire: the envelope, the headers every
//! answer carries (recorded in apis.md §8.1), the throttle and outage 503s, the 401 body, and
//! the drifted shapes of the `shape_drift` fault.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The throttle 503's message: the text clients look for (apis.md §1.3).
pub const THROTTLE_MESSAGE: &str =
    "You have sent too many requests. Please wait before sending another request";

/// The JSON body of a throttle 503.
pub fn throttle_body() -> Value {
    json!({"errors": [{"code": "CMNC-503", "message": THROTTLE_MESSAGE}]})
}

/// The 401 body: the message is a string in `response` (recorded), not an `errors` list.
pub fn unauthorized_body(message: &str) -> Value {
    json!({ "response": message })
}

/// Headers of one API answer.
pub struct ApiHeaders {
    pub message_type: String,
    pub requests_remaining: u32,
    pub next_throttle_period_ms: u64,
    /// `Brightpearl-Installed-Integration-Instance-Id`; absent on 401s (as recorded).
    pub instance_id: Option<String>,
}

/// A fresh request id in the recorded `Ruid` form (a UUID v4 text).
pub fn ruid() -> String {
    let hex = |n: usize| -> String {
        (0..n).map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0')).collect()
    };
    let variant = ['8', '9', 'a', 'b'][fastrand::usize(0..4)];
    format!("{}-{}-4{}-{variant}{}-{}", hex(8), hex(4), hex(3), hex(3), hex(12))
}

/// The recorded `Message-Type` values: `bulk-data-search` for searches, `api-proxy` for the
/// gate's own answers (401), otherwise the method and resource, e.g. `post-order`.
pub fn message_type(method: &str, segments: &[&str]) -> String {
    match segments {
        [.., last] if last.ends_with("-search") => "bulk-data-search".into(),
        [_, resource, ..] => format!("{}-{resource}", method.to_ascii_lowercase()),
        [resource] => format!("{}-{resource}", method.to_ascii_lowercase()),
        [] => "api-proxy".into(),
    }
}

/// A JSON answer with Brightpearl's headers. A `Value::Null` body is sent empty.
pub fn api_response(status: u16, body: &Value, headers: &ApiHeaders) -> Response {
    let mut response = if body.is_null() {
        Response::new(Body::empty())
    } else {
        let mut r = Response::new(Body::from(body.to_string()));
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
        r
    };
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert("brightpearl-requests-remaining", HeaderValue::from(headers.requests_remaining));
    h.insert("brightpearl-next-throttle-period", HeaderValue::from(headers.next_throttle_period_ms));
    if let Ok(v) = HeaderValue::from_str(&ruid()) {
        h.insert("ruid", v);
    }
    if let Ok(v) = HeaderValue::from_str(&headers.message_type) {
        h.insert("message-type", v);
    }
    if let Some(id) = headers.instance_id.as_deref().and_then(|i| HeaderValue::from_str(i).ok()) {
        h.insert("brightpearl-installed-integration-instance-id", id);
    }
    response
}

/// The `shape_drift` fault: the same outcome in a shape the documentation does not describe.
/// A multi-message becomes a 207 whose per-message entries carry `statusCode` as a string and
/// lose `body` (or carry it under another name); anything else wraps its `response`.
pub fn drift(is_multi_message: bool, status: u16, body: &Value) -> (u16, Value) {
    if is_multi_message {
        let processed: Vec<Value> = body
            .pointer("/response/processedMessages")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let label = m.get("label").cloned().unwrap_or(Value::Null);
                        let code = m.get("statusCode").map(|c| c.to_string()).unwrap_or_default();
                        if i % 2 == 0 {
                            json!({"label": label, "statusCode": code})
                        } else {
                            json!({"label": label, "status": code, "result": m.get("body").cloned().unwrap_or(Value::Null)})
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let unprocessed = body.pointer("/response/unprocessedMessages").cloned().unwrap_or(json!([]));
        return (
            207,
            json!({"response": {"processedMessages": processed, "unprocessedMessages": unprocessed}}),
        );
    }
    match body.get("response") {
        Some(inner) => (status, json!({"response": {"result": inner}})),
        None => (status, json!({"result": body})),
    }
}

pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        let q = parse_query("primaryEmail=a%2Bb%40x.com&updatedOn=2026-01-01T00:00:00Z/");
        assert_eq!(q["primaryEmail"], "a+b@x.com");
        assert_eq!(q["updatedOn"], "2026-01-01T00:00:00Z/");
    }

    #[test]
    fn ruids_look_like_the_recorded_ones() {
        let a = ruid();
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_ne!(a, ruid());
    }

    #[test]
    fn message_types_follow_the_recordings() {
        assert_eq!(message_type("GET", &["order-service", "order-search"]), "bulk-data-search");
        assert_eq!(message_type("POST", &["order-service", "order"]), "post-order");
    }

    #[test]
    fn drifted_multi_messages_lose_their_documented_shape() {
        let body = json!({"response": {"processedMessages": [
            {"label": "a", "statusCode": 200, "body": {"response": 1}},
            {"label": "b", "statusCode": 200, "body": {"response": 2}}], "unprocessedMessages": []}});
        let (status, drifted) = drift(true, 200, &body);
        assert_eq!(status, 207);
        let list = drifted.pointer("/response/processedMessages").and_then(Value::as_array).unwrap();
        assert_eq!(list[0]["statusCode"], "200");
        assert!(list[0].get("body").is_none());
        assert!(list[1].get("statusCode").is_none());
    }
}
