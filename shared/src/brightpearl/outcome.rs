//! The one write-outcome rule. Every Brightpearl write ends in exactly one of three states, and
//! the client decides which, once, from what came back on the wire; the concerns act only on
//! the outcome and never re-interpret an error.
//!
//! - `Applied`: Brightpearl answered 2xx with the shape we expect.
//! - `NotApplied`: proof that nothing was written: a 503 carrying the throttle signature, a
//!   429, a connection refused before anything was sent, a 4xx error envelope, or the
//!   message's label listed in `unprocessedMessages`. Repeating is safe.
//! - `Unknown`: anything else: a 5xx after the request was sent, a timeout, a dropped
//!   connection, a non-JSON gateway page, a 2xx or 207 whose shape does not parse. The write
//!   may have happened: whoever repeats it must first check (externalRef search, reservation
//!   GET, payment search by `transactionRef`).

use crate::error::{Error, ErrorClass};

#[derive(Debug, Clone)]
pub enum WriteOutcome<T> {
    Applied(T),
    /// Nothing was written; the error says whether a retry can help (throttle) or not (4xx).
    NotApplied(Error),
    /// The write may or may not have happened.
    Unknown(Error),
}

impl<T> WriteOutcome<T> {
    /// The outcome of a single write from the client's typed error: only `OutcomeUnknown`
    /// (and a deadline hit after sending, which the client reports as `OutcomeUnknown`) is
    /// ambiguous; every other error the write path returns carries proof of `NotApplied`.
    pub fn from_result(r: Result<T, Error>) -> Self {
        match r {
            Ok(v) => WriteOutcome::Applied(v),
            Err(e @ Error::OutcomeUnknown { .. }) => WriteOutcome::Unknown(e),
            Err(e) => WriteOutcome::NotApplied(e),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> WriteOutcome<U> {
        match self {
            WriteOutcome::Applied(v) => WriteOutcome::Applied(f(v)),
            WriteOutcome::NotApplied(e) => WriteOutcome::NotApplied(e),
            WriteOutcome::Unknown(e) => WriteOutcome::Unknown(e),
        }
    }

    pub fn is_applied(&self) -> bool {
        matches!(self, WriteOutcome::Applied(_))
    }

    /// A refusal no retry can change (a 4xx envelope): the caller parks or records it.
    pub fn is_refused(&self) -> bool {
        matches!(self, WriteOutcome::NotApplied(e) if e.class() == ErrorClass::Permanent)
    }

    /// Back to a `Result`, for callers whose write is idempotent anyway.
    pub fn into_result(self) -> Result<T, Error> {
        match self {
            WriteOutcome::Applied(v) => Ok(v),
            WriteOutcome::NotApplied(e) | WriteOutcome::Unknown(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_answer_is_unknown() {
        let lost: Result<u64, Error> =
            Err(Error::OutcomeUnknown { service: "brightpearl", detail: "502 after send".into() });
        assert!(matches!(WriteOutcome::from_result(lost), WriteOutcome::Unknown(_)));
        let throttled: Result<u64, Error> =
            Err(Error::Throttled { service: "brightpearl", retry_after: None });
        let t = WriteOutcome::from_result(throttled);
        assert!(matches!(t, WriteOutcome::NotApplied(_)) && !t.is_refused());
        let refused: Result<u64, Error> = Err(Error::Rejected {
            service: "brightpearl",
            status: 400,
            code: "CMNC-400".into(),
            message: "bad".into(),
        });
        assert!(WriteOutcome::from_result(refused).is_refused());
        assert!(WriteOutcome::from_result(Ok::<_, Error>(7)).is_applied());
    }
}
