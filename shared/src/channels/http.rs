//! The HTTP loop shared by the channel clients: counts requests, waits out throttles using
//! the channel's own signal, retries transient failures of idempotent calls, and maps
//! statuses onto `crate::Error`.

use crate::error::{Error, Result};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest single wait we accept from a throttle signal; longer waits go back to the queue.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub(crate) struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self, service: &'static str) -> Result<serde_json::Value> {
        if self.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Unavailable { service, detail: format!("answer is not JSON: {e}") })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// 2xx passes; 401/403 → Unauthorized; other statuses → Rejected with the body's message.
    pub fn ok(self, service: &'static str) -> Result<Reply> {
        match self.status {
            200..=299 => Ok(self),
            401 | 403 => Err(Error::Unauthorized { service, message: format!("HTTP {}", self.status) }),
            status => {
                let text = String::from_utf8_lossy(&self.body);
                let message: String = text.chars().take(300).collect();
                let code = serde_json::from_slice::<serde_json::Value>(&self.body)
                    .ok()
                    .and_then(|v| v.get("code").and_then(|c| c.as_str().map(str::to_string)))
                    .unwrap_or_default();
                Err(Error::Rejected { service, status, code, message })
            }
        }
    }
}

pub(crate) struct Http {
    pub client: reqwest::Client,
    pub service: &'static str,
    max_retries: u32,
    requests: AtomicU64,
    throttled: AtomicU64,
    not_before: Mutex<Option<Instant>>,
}

/// Whether a request may be repeated after a 5xx or lost connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and absolute writes: repeating them changes nothing.
    Idempotent,
    /// Creates: only throttles (which the server refused before doing anything) are retried.
    ThrottleOnly,
}

impl Http {
    pub fn new(service: &'static str, max_retries: u32) -> Self {
        // One connection pool and TLS setup for every store: building a client loads the
        // trust roots, and a function's cold start should do that once, not once per store.
        static SHARED: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
        let client = SHARED
            .get_or_init(|| {
                crate::tls::http_client_builder()
                    .timeout(Duration::from_secs(20))
                    .connect_timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default()
            })
            .clone();
        Http {
            client,
            service,
            max_retries,
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            not_before: Mutex::new(None),
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Holds the next request back for `wait` (the channel said its budget is spent).
    pub fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_WAIT);
        let mut slot = self.not_before.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none_or(|current| current < until) {
            *slot = Some(until);
        }
    }

    async fn wait_turn(&self) {
        let until = *self.not_before.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            let now = Instant::now();
            if until > now {
                tokio::time::sleep(until - now).await;
            }
        }
    }

    /// Sends the request `build` makes, as often as needed. `throttle` inspects an answer and
    /// says how long to wait when it is a throttle (beyond HTTP 429, which is always one).
    pub async fn send(
        &self,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Send + Sync),
        retry: Retry,
        throttle: &(dyn Fn(&Reply) -> Option<Duration> + Send + Sync),
    ) -> Result<Reply> {
        let mut attempt: u32 = 0;
        loop {
            self.wait_turn().await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = build().send().await;
            let reply = match outcome {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    match response.bytes().await {
                        Ok(body) => Ok(Reply { status, headers, body: body.to_vec() }),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    let detail = format!("request failed: {}", without_url(&e));
                    if retry == Retry::Idempotent && attempt < self.max_retries {
                        attempt += 1;
                        tracing::warn!(service = self.service, attempt, %detail, "retrying after a transport error");
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Err(Error::Unavailable { service: self.service, detail });
                }
            };
            let throttle_wait = if reply.status == 429 {
                Some(throttle(&reply).or_else(|| retry_after(&reply)).unwrap_or_else(|| backoff(attempt + 1)))
            } else {
                throttle(&reply)
            };
            if let Some(wait) = throttle_wait {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                if attempt >= self.max_retries || wait > MAX_WAIT {
                    return Err(Error::Throttled { service: self.service, retry_after: Some(wait) });
                }
                attempt += 1;
                tracing::info!(
                    service = self.service,
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    "throttled; waiting"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if reply.status >= 500 {
                if retry == Retry::Idempotent && attempt < self.max_retries {
                    attempt += 1;
                    tracing::warn!(
                        service = self.service,
                        attempt,
                        status = reply.status,
                        "retrying after a server error"
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                return Err(Error::Unavailable {
                    service: self.service,
                    detail: format!("HTTP {}", reply.status),
                });
            }
            return Ok(reply);
        }
    }
}

/// reqwest errors print the URL, which may carry credentials in a query string.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "transport"
    };
    kind.to_string()
}

fn retry_after(reply: &Reply) -> Option<Duration> {
    reply.header("retry-after").and_then(|v| v.trim().parse::<f64>().ok()).map(Duration::from_secs_f64)
}

/// Exponential back-off with jitter: 100 ms, 200 ms, 400 ms... capped at 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base / 2))
}

/// Joins a base URL and a path without doubling slashes.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// A URL with query parameters, percent-encoded.
pub(crate) fn with_query(url: &str, params: &[(&str, String)]) -> Result<reqwest::Url> {
    let mut url =
        reqwest::Url::parse(url).map_err(|e| Error::config("stores.base_url", format!("{url}: {e}")))?;
    if !params.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in params {
            pairs.append_pair(k, v);
        }
    }
    Ok(url)
}
