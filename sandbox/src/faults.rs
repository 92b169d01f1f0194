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
    // --- Before the write: nothing is committed. ---
    /// The API's throttle answer (Brightpearl 503, Shopify THROTTLED, BigCommerce 429).
    Throttle,
    /// HTTP 500.
    ServerError,
    /// Answer normally after a delay.
    Slow { millis: u64 },
    /// Drop the connection before the request is processed.
    Drop,
    /// A 503 outage that is not a throttle: an HTML edge page (Cloudflare style), no
    /// "too many requests" text, no API headers.
    #[serde(rename = "outage_503")]
    Outage503,
    // --- After the write: the request is processed and committed, then the answer fails. ---
    /// Process the request, then drop the connection before the answer is sent: the write
    /// happened but the client never hears of it. Same as `DropAfterWrite`; kept for callers
    /// that name it so.
    LoseResponse,
    /// Commit, then drop the connection.
    DropAfterWrite,
    /// Commit, then answer a gateway error (502 or 504) with an HTML body, not JSON.
    ServerErrorAfterWrite {
        #[serde(default = "default_gateway_status")]
        status: u16,
    },
    /// Commit, then answer with a body whose shape is not the documented one (for a
    /// multi-message: a 207 whose per-message entries drift).
    ShapeDrift,
}

fn default_gateway_status() -> u16 {
    502
}

impl Fault {
    /// True when the request is processed (and any write committed) before the fault shows.
    pub fn commits_first(&self) -> bool {
        matches!(
            self,
            Fault::Slow { .. }
                | Fault::LoseResponse
                | Fault::DropAfterWrite
                | Fault::ServerErrorAfterWrite { .. }
                | Fault::ShapeDrift
        )
    }
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
    /// Commit, then 502/504 with an HTML body (half each).
    #[serde(default)]
    pub server_error_after_write: f64,
    /// Commit, then drop the connection.
    #[serde(default)]
    pub drop_after_write: f64,
    /// Commit, then answer a drifted shape.
    #[serde(default)]
    pub shape_drift: f64,
    /// A non-throttle 503 (HTML edge page), before the write.
    #[serde(default, rename = "outage_503")]
    pub outage_503: f64,
}

impl FaultRates {
    /// `--fault-rate R`: R split evenly across throttles, 5xx, slow answers and drops, all
    /// before the write.
    pub fn mixed(rate: f64) -> Self {
        let each = rate / 4.0;
        FaultRates {
            throttle: each,
            server_error: each,
            slow: each,
            drop: each,
            slow_millis: 300,
            ..Self::default()
        }
    }

    /// `--after-write-rate R`: R split half 5xx-after-write (502/504, HTML body), half
    /// drop-after-write. Combine with [`FaultRates::mixed`] through [`FaultRates::plus`].
    pub fn after_write(rate: f64) -> Self {
        FaultRates { server_error_after_write: rate / 2.0, drop_after_write: rate / 2.0, ..Self::default() }
    }

    /// Both sets of rates (each kind added; `slow_millis` the larger).
    pub fn plus(self, other: FaultRates) -> Self {
        FaultRates {
            throttle: self.throttle + other.throttle,
            server_error: self.server_error + other.server_error,
            slow: self.slow + other.slow,
            drop: self.drop + other.drop,
            lose_response: self.lose_response + other.lose_response,
            slow_millis: self.slow_millis.max(other.slow_millis),
            server_error_after_write: self.server_error_after_write + other.server_error_after_write,
            drop_after_write: self.drop_after_write + other.drop_after_write,
            shape_drift: self.shape_drift + other.shape_drift,
            outage_503: self.outage_503 + other.outage_503,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    pub throttle: u64,
    pub server_error: u64,
    pub slow: u64,
    pub drop: u64,
    pub lose_response: u64,
    #[serde(default)]
    pub server_error_after_write: u64,
    #[serde(default)]
    pub drop_after_write: u64,
    #[serde(default)]
    pub shape_drift: u64,
    #[serde(default, rename = "outage_503")]
    pub outage_503: u64,
}

impl FaultCounts {
    fn count(&mut self, fault: &Fault) {
        let slot = match fault {
            Fault::Throttle => &mut self.throttle,
            Fault::ServerError => &mut self.server_error,
            Fault::Slow { .. } => &mut self.slow,
            Fault::Drop => &mut self.drop,
            Fault::Outage503 => &mut self.outage_503,
            Fault::LoseResponse => &mut self.lose_response,
            Fault::DropAfterWrite => &mut self.drop_after_write,
            Fault::ServerErrorAfterWrite { .. } => &mut self.server_error_after_write,
            Fault::ShapeDrift => &mut self.shape_drift,
        };
        *slot += 1;
    }

    /// Faults injected after the write was committed (the answers a client cannot trust).
    pub fn after_write(&self) -> u64 {
        self.lose_response + self.drop_after_write + self.server_error_after_write + self.shape_drift
    }
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
        FaultInjector {
            inner: Mutex::new(Inner { rates, rng: Some(fastrand::Rng::with_seed(seed)), ..Inner::default() }),
        }
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

    /// Counts a fault decided elsewhere (a per-endpoint script), so every injected fault shows
    /// in [`FaultInjector::counts`].
    pub fn record(&self, fault: &Fault) {
        self.lock().counts.count(fault);
    }

    /// The fault for this request, if any.
    pub fn next(&self) -> Option<Fault> {
        let mut inner = self.lock();
        let fault = match inner.script.pop_front() {
            Some(scripted) => scripted,
            None => {
                let rates = inner.rates;
                let rng = inner.rng.get_or_insert_with(fastrand::Rng::new);
                let roll = rng.f64();
                let gateway = if rng.bool() { 502 } else { 504 };
                let mut edge = 0.0;
                let mut pick = None;
                for (p, fault) in [
                    (rates.throttle, Fault::Throttle),
                    (rates.server_error, Fault::ServerError),
                    (rates.slow, Fault::Slow { millis: rates.slow_millis.max(1) }),
                    (rates.drop, Fault::Drop),
                    (rates.lose_response, Fault::LoseResponse),
                    (rates.server_error_after_write, Fault::ServerErrorAfterWrite { status: gateway }),
                    (rates.drop_after_write, Fault::DropAfterWrite),
                    (rates.shape_drift, Fault::ShapeDrift),
                    (rates.outage_503, Fault::Outage503),
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
        if let Some(f) = &fault {
            inner.counts.count(f);
        }
        fault
    }
}

/// An edge/gateway error page as a CDN in front of an API sends it: HTML, not the API's JSON
/// envelope, and none of the API's own headers.
pub fn html_error_page(status: u16) -> Response {
    let (title, text) = match status {
        502 => ("502 Bad Gateway", "Bad gateway: the origin web server returned an invalid response."),
        503 => ("503 Service Temporarily Unavailable", "The origin web server is temporarily unavailable."),
        504 => ("504 Gateway Time-out", "Gateway time-out: the origin web server did not answer in time."),
        _ => ("Error", "The origin web server could not handle the request."),
    };
    let ray: String = (0..16).map(|_| fastrand::alphanumeric().to_ascii_lowercase()).collect();
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{text}</p>\n\
         <p>Cloudflare Ray ID: {ray}</p></body></html>\n"
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let h = response.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    h.insert(axum::http::header::SERVER, axum::http::HeaderValue::from_static("cloudflare"));
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("{ray}-LHR")) {
        h.insert("cf-ray", v);
    }
    response
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
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_LENGTH, axum::http::HeaderValue::from_static("64"));
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

    #[test]
    fn after_write_rate_is_half_gateway_errors_half_drops() {
        let rates = FaultRates::after_write(0.2);
        assert_eq!(rates.server_error_after_write, 0.1);
        assert_eq!(rates.drop_after_write, 0.1);
        let injector = FaultInjector::new(rates, 3);
        let faults: Vec<Fault> = (0..10_000).filter_map(|_| injector.next()).collect();
        let gateway = faults.iter().filter(|f| matches!(f, Fault::ServerErrorAfterWrite { .. })).count();
        let dropped = faults.iter().filter(|f| **f == Fault::DropAfterWrite).count();
        assert!((850..1_150).contains(&gateway), "{gateway}");
        assert!((850..1_150).contains(&dropped), "{dropped}");
        assert!(faults.contains(&Fault::ServerErrorAfterWrite { status: 502 }));
        assert!(faults.contains(&Fault::ServerErrorAfterWrite { status: 504 }));
        assert_eq!(injector.counts().after_write(), (gateway + dropped) as u64);
    }

    #[test]
    fn new_kinds_read_from_json_and_commit_only_after_write_kinds() {
        let f: Fault = serde_json::from_str(r#"{"kind":"server_error_after_write"}"#).unwrap();
        assert_eq!(f, Fault::ServerErrorAfterWrite { status: 502 });
        let f: Fault = serde_json::from_str(r#"{"kind":"outage_503"}"#).unwrap();
        assert_eq!(f, Fault::Outage503);
        assert!(!Fault::Outage503.commits_first());
        assert!(!Fault::Throttle.commits_first());
        assert!(Fault::DropAfterWrite.commits_first());
        assert!(Fault::ShapeDrift.commits_first());
    }
}
