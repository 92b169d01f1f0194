//! Fault injection shared by every simulated API: a random rate per kind of fault, plus a
//! scripted sequence that runs first (for tests that need a fault at an exact request).
//! Each API module turns a `Fault` into its own wire form (Brightpearl 503 with its headers,
//! Shopify THROTTLED, BigCommerce 429...).

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// The API's throttle answer (Brightpearl 503, Shopify THROTTLED, BigCommerce 429).
    Throttle,
    /// HTTP 500.
    ServerError,
    /// Answer normally after a delay.
    Slow { millis: u64 },
    /// Drop the connection before the request is processed.
    Drop,
    /// Process the request, then drop the connection before the answer is sent: the write
    /// happened but the client never hears of it.
    LoseResponse,
}

/// Probabilities per request, each in 0..=1. `total` > 1 is clamped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultRates {
    #[serde(default)]
    pub throttle: f64,
    #[serde(default)]
    pub server_error: f64,
    #[serde(default)]
    pub slow: f64,
    #[serde(default)]
    pub drop: f64,
    #[serde(default)]
    pub lose_response: f64,
    /// Delay used by `slow`, in milliseconds.
    #[serde(default)]
    pub slow_millis: u64,
}

impl FaultRates {
    /// `--fault-rate R`: R split evenly across throttles, 5xx, slow answers and drops.
    pub fn mixed(rate: f64) -> Self {
        let each = rate / 4.0;
        FaultRates { throttle: each, server_error: each, slow: each, drop: each, lose_response: 0.0, slow_millis: 300 }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    pub throttle: u64,
    pub server_error: u64,
    pub slow: u64,
    pub drop: u64,
    pub lose_response: u64,
}

#[derive(Default)]
struct Inner {
    rates: FaultRates,
    script: VecDeque<Option<Fault>>,
    counts: FaultCounts,
    rng: Option<fastrand::Rng>,
}

/// Decides, per request, whether to inject a fault. Thread-safe; cheap.
#[derive(Default)]
pub struct FaultInjector {
    inner: Mutex<Inner>,
}

impl FaultInjector {
    pub fn new(rates: FaultRates, seed: u64) -> Self {
        FaultInjector { inner: Mutex::new(Inner { rates, rng: Some(fastrand::Rng::with_seed(seed)), ..Inner::default() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_rates(&self, rates: FaultRates) {
        self.lock().rates = rates;
    }

    pub fn rates(&self) -> FaultRates {
        self.lock().rates
    }

    /// Queues faults for the next requests, in order; `None` lets one request through.
    pub fn script(&self, faults: impl IntoIterator<Item = Option<Fault>>) {
        self.lock().script.extend(faults);
    }

    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.script.clear();
        inner.rates = FaultRates::default();
    }

    pub fn counts(&self) -> FaultCounts {
        self.lock().counts
    }

    /// The fault for this request, if any.
    pub fn next(&self) -> Option<Fault> {
        let mut inner = self.lock();
        let fault = match inner.script.pop_front() {
            Some(scripted) => scripted,
            None => {
                let rates = inner.rates;
                let roll = inner.rng.get_or_insert_with(fastrand::Rng::new).f64();
                let mut edge = 0.0;
                let mut pick = None;
                for (p, fault) in [
                    (rates.throttle, Fault::Throttle),
                    (rates.server_error, Fault::ServerError),
                    (rates.slow, Fault::Slow { millis: rates.slow_millis.max(1) }),
                    (rates.drop, Fault::Drop),
                    (rates.lose_response, Fault::LoseResponse),
                ] {
                    edge += p;
                    if roll < edge {
                        pick = Some(fault);
                        break;
                    }
                }
                pick
            }
        };
        match fault {
            Some(Fault::Throttle) => inner.counts.throttle += 1,
            Some(Fault::ServerError) => inner.counts.server_error += 1,
            Some(Fault::Slow { .. }) => inner.counts.slow += 1,
            Some(Fault::Drop) => inner.counts.drop += 1,
            Some(Fault::LoseResponse) => inner.counts.lose_response += 1,
            None => {}
        }
        fault
    }
}

/// A response whose body fails at once: hyper aborts the connection, and the client sees a
/// dropped connection instead of an answer.
pub fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox fault: connection dropped",
        ))
    });
    let mut response = Response::new(Body::from_stream(failing));
    *response.status_mut() = StatusCode::OK;
    // Promise a body that never comes, so the client cannot mistake this for an empty answer.
    response.headers_mut().insert(axum::http::header::CONTENT_LENGTH, axum::http::HeaderValue::from_static("64"));
    response
}

pub async fn slow(millis: u64) {
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_come_first_then_the_rate() {
        let injector = FaultInjector::new(FaultRates { throttle: 1.0, ..FaultRates::default() }, 7);
        injector.script([Some(Fault::ServerError), None]);
        assert_eq!(injector.next(), Some(Fault::ServerError));
        assert_eq!(injector.next(), None);
        assert_eq!(injector.next(), Some(Fault::Throttle));
        assert_eq!(injector.counts().throttle, 1);
        assert_eq!(injector.counts().server_error, 1);
    }

    #[test]
    fn rates_are_roughly_honoured() {
        let injector = FaultInjector::new(FaultRates { server_error: 0.3, ..FaultRates::default() }, 42);
        let hits = (0..10_000).filter(|_| injector.next().is_some()).count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
    }
}
