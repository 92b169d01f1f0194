//! The seam between Lambda events and handlers: what triggered this invocation, and the
//! partial-batch response. Functions take events as JSON so one binary serves its schedule
//! (the template passes `{"pearlsync": "<task>"}`, or a plain EventBridge scheduled event),
//! its SQS queue and, for the ingress, its Function URL.

use crate::batch::{BatchMessage, BatchReport};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A schedule. `task` is the template's `pearlsync` input (None for a plain EventBridge
    /// scheduled event); `input` is the whole event, for flags such as `"reconcile": true`.
    Schedule { task: Option<String>, input: Value },
    /// An SQS batch.
    Sqs(Vec<BatchMessage>),
    /// Anything else (a Function URL request is handled by its own adapter).
    Other(Value),
}

pub fn classify(event: Value) -> Trigger {
    if let Some(records) = event.get("Records").and_then(Value::as_array)
        && records.iter().all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
    {
        let messages = records
            .iter()
            .map(|r| {
                let attrs = r.get("attributes").cloned().unwrap_or(Value::Null);
                BatchMessage {
                    message_id: r.get("messageId").and_then(Value::as_str).unwrap_or_default().to_string(),
                    body: r.get("body").and_then(Value::as_str).unwrap_or_default().to_string(),
                    group_id: attrs.get("MessageGroupId").and_then(Value::as_str).map(str::to_string),
                    receive_count: attrs
                        .get("ApproximateReceiveCount")
                        .and_then(Value::as_str)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                }
            })
            .collect();
        return Trigger::Sqs(messages);
    }
    if let Some(task) = event.get("pearlsync").and_then(Value::as_str) {
        return Trigger::Schedule { task: Some(task.to_string()), input: event.clone() };
    }
    if event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        return Trigger::Schedule { task: None, input: event };
    }
    Trigger::Other(event)
}

/// The `ReportBatchItemFailures` answer.
pub fn batch_response(report: &BatchReport) -> Value {
    let failures: Vec<Value> = report.failures.iter().map(|id| json!({"itemIdentifier": id})).collect();
    json!({"batchItemFailures": failures})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_schedule_and_template_inputs_are_told_apart() {
        let sqs = json!({"Records": [{"messageId": "m1", "body": "{}", "eventSource": "aws:sqs",
            "attributes": {"ApproximateReceiveCount": "3", "MessageGroupId": "g"}}]});
        match classify(sqs) {
            Trigger::Sqs(m) => {
                assert_eq!(m[0].message_id, "m1");
                assert_eq!(m[0].receive_count, 3);
                assert_eq!(m[0].group_id.as_deref(), Some("g"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(json!({"pearlsync": "poll-inventory"})),
            Trigger::Schedule { task: Some(t), .. } if t == "poll-inventory"));
        assert!(matches!(
            classify(json!({"detail-type": "Scheduled Event", "source": "aws.events"})),
            Trigger::Schedule { task: None, .. }
        ));
        assert!(matches!(classify(json!({"x": 1})), Trigger::Other(_)));
        let report = BatchReport { failures: vec!["a".into()], ..BatchReport::default() };
        assert_eq!(batch_response(&report), json!({"batchItemFailures": [{"itemIdentifier": "a"}]}));
    }
}
