//! One error type for the library. Every variant answers one question for the caller:
//! can a retry help? Retryable failures go back to the queue; permanent ones are parked
//! with their reason and replayed after a fix.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A configuration variable is missing or malformed. Permanent: fix the deployment.
    #[error("configuration: {variable}: {reason}")]
    Config { variable: String, reason: String },

    /// The remote service asked us to slow down (Brightpearl 503, Shopify THROTTLED, HTTP 429).
    #[error("{service} throttled the request; retry after {retry_after:?}")]
    Throttled { service: &'static str, retry_after: Option<Duration> },

    /// 5xx, timeout, dropped connection: the request may not have happened; safe to retry
    /// because every write we make is idempotent or guarded.
    #[error("{service} unavailable: {detail}")]
    Unavailable { service: &'static str, detail: String },

    /// The request went out but its answer was lost (timeout, dropped connection): it may or
    /// may not have been applied. Retryable where the write is idempotent or guarded; a caller
    /// with a non-idempotent write (a payment) must check before repeating it.
    #[error("{service}: outcome unknown, the answer was lost: {detail}")]
    OutcomeUnknown { service: &'static str, detail: String },

    /// The remote service understood the request and refused it (4xx other than 429).
    #[error("{service} rejected the request (HTTP {status} {code}): {message}")]
    Rejected { service: &'static str, status: u16, code: String, message: String },

    /// Credentials are missing, wrong or expired beyond refresh.
    #[error("{service} refused the credentials: {message}")]
    Unauthorized { service: &'static str, message: String },

    /// A payload we were given cannot be used (bad JSON, missing field, bad signature).
    #[error("bad input: {0}")]
    BadInput(String),

    /// A channel line's SKU has no Brightpearl product. The order is parked with this reason.
    #[error("unknown SKU {0}")]
    UnknownSku(String),

    /// The same idempotency key arrived with a different payload.
    #[error("idempotency key {key} reused with a different payload")]
    IdempotencyPayloadMismatch { key: String },

    /// Waiting (for the budget, a throttle period or a backoff) would pass the invocation's
    /// deadline. Retryable: the job goes back to its queue instead of dying with the Lambda.
    #[error("{service}: {detail}; the invocation's deadline is too close to wait")]
    Deadline { service: &'static str, detail: String },

    /// The state store failed (throttled, unreachable). Retryable.
    #[error("state store: {0}")]
    State(String),

    /// The queue failed (unreachable, throttled). Retryable.
    #[error("queue: {0}")]
    Queue(String),
}

/// Whether a retry can help. The order writer's batch wrapper and the ingress map on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Retryable,
    Permanent,
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Throttled { .. }
            | Error::Unavailable { .. }
            | Error::OutcomeUnknown { .. }
            | Error::Deadline { .. }
            | Error::State(_)
            | Error::Queue(_) => ErrorClass::Retryable,
            Error::Config { .. }
            | Error::Rejected { .. }
            | Error::Unauthorized { .. }
            | Error::BadInput(_)
            | Error::UnknownSku(_)
            | Error::IdempotencyPayloadMismatch { .. } => ErrorClass::Permanent,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    pub fn config(variable: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config { variable: variable.into(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_and_outages_are_retryable_rejections_are_not() {
        assert!(Error::Throttled { service: "brightpearl", retry_after: None }.is_retryable());
        assert!(Error::Unavailable { service: "shopify", detail: "timeout".into() }.is_retryable());
        assert!(Error::State("x".into()).is_retryable());
        assert!(!Error::UnknownSku("A-1".into()).is_retryable());
        assert!(
            !Error::Rejected {
                service: "brightpearl",
                status: 400,
                code: "CMNC-010".into(),
                message: "bad".into()
            }
            .is_retryable()
        );
        assert_eq!(Error::UnknownSku("A-1".into()).to_string(), "unknown SKU A-1");
    }
}
