//! One HTTP call to Brightpearl: pacing, auth, the `response`/`errors` envelope, retries, and
//! the write-outcome rule (see `outcome`). Every typed call goes through [`BrightpearlClient::call`].
//!
//! How an answer is classified:
//! - **Throttle** (proof nothing happened): HTTP 429, or a 503 with the throttle signature
//!   (Brightpearl's "too many requests" text, or `brightpearl-requests-remaining: 0`). Retried,
//!   reads and writes alike, after a probe wait: the throttle period, but at most 0.5 s, 1 s, 2 s…
//!   for the first, second, third throttle in a row (`budget::probe_wait`), with one request
//!   probing for room while the rest wait.
//! - **Outage** (a 503 without the signature, any other 5xx, a non-JSON page from the CDN or a
//!   gateway, a timeout, a dropped connection): reads and idempotent writes are retried; any
//!   other write returns `OutcomeUnknown`, because it may have been committed.
//! - A connection refused before sending is retried for everyone: nothing reached Brightpearl.
//! - HTTP 500 with `CMNC-018` is a refused search filter: permanent, never retried.
//! - Any other 4xx with an error envelope is a refusal (`Rejected`); a 4xx without one (a
//!   gateway page) is treated like an outage.
//!
//! Every wait knows the invocation's deadline: one that would pass it returns `Deadline`
//! (retryable) at once, before anything is sent, so the job goes back to its queue.

use super::budget::{Decision, backoff};
use super::client::{BrightpearlClient, lock};
use super::config::AuthKind;
use super::oauth;
use crate::error::{Error, Result};
use crate::metrics::{self, Unit, names};
use crate::state::now_epoch_millis;
use reqwest::Method;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(super) const SERVICE: &str = "brightpearl";
/// Time kept free before the deadline for recording what happened.
const DEADLINE_MARGIN: Duration = Duration::from_millis(1500);
/// Below this, a request is not worth sending before the deadline.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(500);
/// The code Brightpearl answers (with HTTP 500) for a search filter it cannot apply.
const BAD_SEARCH_FILTER: &str = "CMNC-018";

/// May the request be sent again when we cannot tell whether it was processed?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// Reads, and writes whose repeat changes nothing (a status PUT).
    Safe,
    /// Writes that would duplicate: repeated only with proof they were not processed.
    Unsafe,
}

/// `errors[]` as (code, message) pairs.
pub(crate) fn parse_errors(body: &Value) -> Vec<(String, String)> {
    body.get("errors")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| {
                    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                    (s("code"), s("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-encodes a query value, keeping the characters Brightpearl filters use literally.
fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' | b'/' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub(super) fn query_string(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", encode_query_value(v))).collect();
    format!("?{}", joined.join("&"))
}

fn header_u64(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn header_text(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// The throttle signature of a 503: Brightpearl's own text, or nothing left in the window.
fn is_throttle_503(body: &[u8], remaining: Option<u64>) -> bool {
    remaining == Some(0) || String::from_utf8_lossy(body).to_ascii_lowercase().contains("too many requests")
}

/// A short, loggable excerpt of a body that is not JSON (a CDN or gateway page).
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(120).collect()
}

impl BrightpearlClient {
    /// Sets the running invocation's deadline (None: no deadline). Calls made after it
    /// never wait past it.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        *lock(&self.inner.deadline) = deadline;
    }

    fn time_left(&self) -> Option<Duration> {
        lock(&self.inner.deadline).map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Sleeps `wait`, or fails at once when that would pass the deadline.
    async fn pause(&self, wait: Duration, why: &str) -> Result<()> {
        if let Some(left) = self.time_left()
            && wait + DEADLINE_MARGIN + MIN_REQUEST_TIME > left
        {
            return Err(Error::Deadline {
                service: SERVICE,
                detail: format!("{why}: a wait of {} ms", wait.as_millis()),
            });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// This request's timeout: the configured one, cut to what the deadline leaves.
    fn request_timeout(&self) -> Result<Duration> {
        let configured = Duration::from_millis(self.inner.config.request_timeout_ms.max(1));
        match self.time_left() {
            None => Ok(configured),
            Some(left) => {
                let usable = left.saturating_sub(DEADLINE_MARGIN);
                if usable < MIN_REQUEST_TIME {
                    Err(Error::Deadline { service: SERVICE, detail: "no time left to send".into() })
                } else {
                    Ok(configured.min(usable))
                }
            }
        }
    }

    async fn wait_for_budget(&self) -> Result<()> {
        loop {
            let decision = lock(&self.inner.budget).try_acquire(Instant::now(), self.priority);
            match decision {
                Decision::Go => return Ok(()),
                Decision::Wait(d) => {
                    tracing::debug!(wait_ms = d.as_millis() as u64, priority = ?self.priority, "brightpearl budget low, waiting");
                    self.pause(d, "the request budget is spent").await?;
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let c = &self.inner.config;
        backoff(
            attempt,
            Duration::from_millis(c.backoff_base_ms),
            Duration::from_millis(c.backoff_cap_ms),
            &mut lock(&self.inner.rng),
        )
    }

    /// Before repeating a request whose connection dropped: at once but for 50–100 ms of
    /// jitter the first time (a new connection usually works), then 100–200 and 200–400 ms.
    fn reconnect_wait(&self, attempt: u32) -> Duration {
        self.backoff(attempt.saturating_sub(1).min(2))
    }

    /// The server's throttle period (a backoff when it sent none), capped at two windows. What
    /// is actually waited is the probe wait the budget derives from it (`budget::probe_wait`).
    fn throttle_period(&self, period: Option<Duration>, attempt: u32) -> Duration {
        let cap = Duration::from_millis(self.inner.config.rate_limit_window_ms.max(1)) * 2;
        period.filter(|p| !p.is_zero()).unwrap_or_else(|| self.backoff(attempt)).min(cap)
    }

    fn auth_headers(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let auth = &self.inner.config.auth;
        req = req.header("brightpearl-app-ref", &auth.app_ref);
        match auth.kind {
            AuthKind::Staff => req.header("brightpearl-staff-token", auth.staff_token.expose()),
            AuthKind::System => req.header("brightpearl-account-token", auth.account_token.expose()),
            AuthKind::Oauth => {
                let access = lock(&self.inner.tokens).access.clone();
                req.header("brightpearl-dev-ref", &auth.dev_ref).bearer_auth(access)
            }
        }
    }

    /// Every response names the installed integration instance it was made for; a write under
    /// another instance would escape the externalRef uniqueness, so a mismatch stops writes.
    fn observe_instance(&self, headers: &reqwest::header::HeaderMap) {
        let Some(seen) = header_u64(headers, "brightpearl-installed-integration-instance-id") else { return };
        let mut instance = lock(&self.inner.instance);
        match instance.configured {
            Some(c) if c != seen => {
                if instance.mismatch.is_none() {
                    tracing::error!(
                        configured = c,
                        answered = seen,
                        "Brightpearl answers for another installed integration instance; writes stop"
                    );
                }
                instance.mismatch = Some(seen);
            }
            Some(_) => {}
            None => instance.learned = Some(seen),
        }
    }

    /// The installed integration instance id for writes, or the configuration error that says
    /// where to find it.
    pub fn instance_id_for_writes(&self) -> Result<u64> {
        let instance = lock(&self.inner.instance);
        if let (Some(c), Some(seen)) = (instance.configured, instance.mismatch) {
            return Err(Error::config(
                "brightpearl.installed_integration_instance_id",
                format!("configured {c}, but Brightpearl answers for instance {seen}"),
            ));
        }
        instance.configured.or(instance.oauth).ok_or_else(|| {
            Error::config(
                "brightpearl.installed_integration_instance_id",
                "required for writes: without it Brightpearl does not deduplicate on externalRef. It is \
                 the value of the Brightpearl-Installed-Integration-Instance-Id header on any API answer \
                 (or installation_instance_id in an OAuth token answer)",
            )
        })
    }

    /// Adopts the shared token record the first time, and whenever it holds a newer pair than
    /// ours. True when it changed our tokens.
    async fn adopt_shared_tokens(&self) -> Result<Option<u64>> {
        let Some(store) = &self.inner.token_store else { return Ok(None) };
        let Some((record, version)) = oauth::load(store.as_ref()).await? else {
            lock(&self.inner.tokens).synced = true;
            return Ok(None);
        };
        let mut tokens = lock(&self.inner.tokens);
        tokens.synced = true;
        if tokens.refresh != record.refresh {
            tokens.access = record.access.clone();
            tokens.refresh = record.refresh.clone();
            tokens.expires_at_ms = record.expires_at_ms;
            if let Some(i) = record.instance {
                lock(&self.inner.instance).oauth = Some(i);
            }
        }
        Ok(Some(version))
    }

    /// OAuth only: reads the shared pair once, and refreshes ahead of the announced expiry.
    async fn prepare_oauth(&self, generation: u64) -> Result<()> {
        if self.inner.config.auth.kind != AuthKind::Oauth {
            return Ok(());
        }
        if !lock(&self.inner.tokens).synced {
            self.adopt_shared_tokens().await?;
        }
        let due = {
            let t = lock(&self.inner.tokens);
            t.expires_at_ms > 0 && now_epoch_millis() + oauth::REFRESH_AHEAD_MS >= t.expires_at_ms
        };
        if due { self.refresh_oauth(generation).await } else { Ok(()) }
    }

    /// One refresh-token grant. `seen_generation` avoids a second grant when another task
    /// already refreshed while we waited; the shared record avoids one when another process
    /// did. A refused refresh is a typed `Unauthorized` and counted for its alarm.
    async fn refresh_oauth(&self, seen_generation: u64) -> Result<()> {
        let mut generation = self.inner.refresh_lock.lock().await;
        if *generation != seen_generation {
            return Ok(());
        }
        let before = lock(&self.inner.tokens).refresh.clone();
        let read_version = self.adopt_shared_tokens().await?;
        if lock(&self.inner.tokens).refresh != before {
            // Another function refreshed first: its pair is ours now.
            *generation += 1;
            return Ok(());
        }
        let c = &self.inner.config;
        let url = c
            .auth
            .token_url
            .clone()
            .unwrap_or_else(|| format!("https://oauth.brightpearlapp.com/token/{}", c.account));
        if before.is_empty() {
            return Err(Error::Unauthorized {
                service: SERVICE,
                message: "access token refused and no refresh token".into(),
            });
        }
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", before),
            ("client_id", c.auth.app_ref.clone()),
        ];
        if !c.auth.client_secret.is_empty() {
            form.push(("client_secret", c.auth.client_secret.expose().to_string()));
        }
        let body = query_string(&form).trim_start_matches('?').to_string();
        let resp = self
            .inner
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Unavailable { service: SERVICE, detail: format!("token refresh: {e}") })?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        let access = v.get("access_token").and_then(Value::as_str).unwrap_or_default().to_string();
        if status != 200 || access.is_empty() {
            let reason = v.get("error").and_then(Value::as_str).unwrap_or("no access_token");
            tracing::error!(status, reason, "brightpearl OAuth refresh refused");
            metrics::emit(names::OAUTH_REFRESH_FAILURES, Unit::Count, 1.0, &[]);
            return Err(Error::Unauthorized {
                service: SERVICE,
                message: format!("OAuth token refresh refused with HTTP {status} {reason}"),
            });
        }
        // A string in recorded answers ("13"); accept a number too.
        let instance = match v.get("installation_instance_id") {
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        };
        let record = oauth::TokenRecord {
            access,
            refresh: v
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| lock(&self.inner.tokens).refresh.clone()),
            expires_at_ms: oauth::expires_at(v.get("expires_in").and_then(Value::as_u64)),
            instance,
            api_domain: v.get("api_domain").and_then(Value::as_str).map(str::to_string),
        };
        {
            let mut tokens = lock(&self.inner.tokens);
            tokens.access = record.access.clone();
            tokens.refresh = record.refresh.clone();
            tokens.expires_at_ms = record.expires_at_ms;
        }
        if let Some(i) = instance {
            lock(&self.inner.instance).oauth = Some(i);
        }
        if let Some(store) = &self.inner.token_store
            && !oauth::save(store.as_ref(), &record, read_version).await?
        {
            tracing::warn!(
                "another function wrote the OAuth record at the same time; keeping ours in memory"
            );
        }
        *generation += 1;
        tracing::info!("brightpearl OAuth access token refreshed");
        Ok(())
    }

    /// Sends one call with pacing and retries. `Ok(None)` is a 404 on a call where 404 means
    /// "no results" (multi-id GETs); otherwise the envelope's `response` (`Null` when empty).
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        replay: Replay,
        empty_on_404: bool,
    ) -> Result<Option<Value>> {
        let url = format!("{}{}{}", self.inner.prefix, path, query_string(query));
        let max_attempts = self.inner.config.max_attempts.max(1);
        let mut attempt = 0u32;
        let mut refreshed = false;
        // An outage after sending: what a write returns when it may have been committed.
        let unknown = |detail: String| Error::OutcomeUnknown { service: SERVICE, detail };
        let outage = |detail: String| Error::Unavailable { service: SERVICE, detail };
        loop {
            attempt += 1;
            let may_retry = attempt < max_attempts;
            self.wait_for_budget().await?;
            let timeout = self.request_timeout()?;
            let generation = *self.inner.refresh_lock.lock().await;
            self.prepare_oauth(generation).await?;
            let generation = *self.inner.refresh_lock.lock().await;
            let mut req = self.auth_headers(self.inner.http.request(method.clone(), &url)).timeout(timeout);
            if let Some(b) = body {
                req = req.json(b);
            }
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    lock(&self.inner.budget).on_no_response();
                    // A refused connection never reached Brightpearl: safe to repeat for anyone.
                    let refused = e.is_connect();
                    let detail = format!("{method} {path}: {e}");
                    if may_retry && (replay == Replay::Safe || refused) {
                        tracing::warn!(%method, path, error = %e, "brightpearl request failed, retrying");
                        self.inner.retried.fetch_add(1, Ordering::Relaxed);
                        self.pause(self.reconnect_wait(attempt), "retrying a failed connection").await?;
                        continue;
                    }
                    return Err(if refused || replay == Replay::Safe {
                        outage(detail)
                    } else {
                        unknown(detail)
                    });
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let remaining = header_u64(&headers, "brightpearl-requests-remaining");
            let period = header_u64(&headers, "brightpearl-next-throttle-period").map(Duration::from_millis);
            let ruid = header_text(&headers, "ruid");
            lock(&self.inner.budget).on_response(Instant::now(), remaining.map(|r| r as u32), period);
            self.observe_instance(&headers);
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    let detail = format!("{method} {path}: the answer was lost: {e}");
                    if may_retry && replay == Replay::Safe {
                        tracing::warn!(%method, path, error = %e, ruid, "brightpearl answer lost, retrying");
                        self.inner.retried.fetch_add(1, Ordering::Relaxed);
                        self.pause(self.reconnect_wait(attempt), "retrying a lost answer").await?;
                        continue;
                    }
                    return Err(if replay == Replay::Safe { outage(detail) } else { unknown(detail) });
                }
            };
            // None: not JSON (a CDN or gateway page).
            let parsed: Option<Value> =
                if bytes.is_empty() { Some(Value::Null) } else { serde_json::from_slice(&bytes).ok() };
            let errors = parsed.as_ref().map(parse_errors).unwrap_or_default();
            let first_error = || {
                let code = errors.first().map(|e| e.0.clone()).unwrap_or_default();
                let message = if errors.is_empty() {
                    // 401s carry their message as a string in `response` (recorded).
                    parsed
                        .as_ref()
                        .and_then(|p| p.get("response").and_then(Value::as_str).or_else(|| p.as_str()))
                        .map(str::to_string)
                        .unwrap_or_else(|| snippet(&bytes))
                } else {
                    errors.iter().map(|e| e.1.as_str()).collect::<Vec<_>>().join("; ")
                };
                (code, message)
            };
            let throttled = status == 429 || (status == 503 && is_throttle_503(&bytes, remaining));
            // A 404 on a multi-id GET means "none of those" (apis.md §1.3), not an error.
            if status >= 400 && !throttled && !(status == 404 && empty_on_404) {
                let (code, message) = first_error();
                tracing::warn!(%method, path, status, code, message, ruid, "brightpearl error answer");
            }
            match status {
                200..=299 => match parsed {
                    Some(v) => {
                        let response = match v {
                            Value::Object(mut o) => o.remove("response").unwrap_or(Value::Null),
                            _ => Value::Null,
                        };
                        return Ok(Some(response));
                    }
                    None => {
                        let detail = format!(
                            "{method} {path}: HTTP {status} with a non-JSON body: {}",
                            snippet(&bytes)
                        );
                        if may_retry && replay == Replay::Safe {
                            self.pause(self.backoff(attempt), "retrying a non-JSON answer").await?;
                            continue;
                        }
                        return Err(if replay == Replay::Safe { outage(detail) } else { unknown(detail) });
                    }
                },
                404 if empty_on_404 => return Ok(None),
                401 => {
                    if self.inner.config.auth.kind == AuthKind::Oauth && !refreshed {
                        refreshed = true;
                        self.refresh_oauth(generation).await?;
                        attempt -= 1;
                        continue;
                    }
                    let (_, message) = first_error();
                    return Err(Error::Unauthorized { service: SERVICE, message });
                }
                _ if throttled => {
                    self.inner.throttled.fetch_add(1, Ordering::Relaxed);
                    let period = self.throttle_period(period, attempt);
                    let wait = {
                        let mut rng = lock(&self.inner.rng);
                        lock(&self.inner.budget).on_throttled(Instant::now(), period, &mut rng)
                    };
                    if may_retry {
                        tracing::info!(%method, path, wait_ms = wait.as_millis() as u64, "brightpearl throttled, waiting out the period");
                        self.inner.retried.fetch_add(1, Ordering::Relaxed);
                        self.pause(wait, "throttled").await?;
                        continue;
                    }
                    return Err(Error::Throttled { service: SERVICE, retry_after: Some(wait) });
                }
                500 if errors.iter().any(|(code, _)| code == BAD_SEARCH_FILTER) => {
                    let (code, message) = first_error();
                    return Err(Error::Rejected {
                        service: SERVICE,
                        status,
                        code,
                        message: format!("search filter refused ({}): {message}", query_string(query)),
                    });
                }
                500..=599 => {
                    let (code, message) = first_error();
                    let detail = format!("{method} {path}: HTTP {status} {code} {message} (Ruid {ruid})");
                    if may_retry && replay == Replay::Safe {
                        self.inner.retried.fetch_add(1, Ordering::Relaxed);
                        self.pause(self.backoff(attempt), "retrying a server error").await?;
                        continue;
                    }
                    return Err(if replay == Replay::Safe { outage(detail) } else { unknown(detail) });
                }
                _ => {
                    let (code, message) = first_error();
                    if errors.is_empty() && replay == Replay::Unsafe {
                        // No Brightpearl envelope: a gateway answered; no proof either way.
                        return Err(unknown(format!(
                            "{method} {path}: HTTP {status} without an error envelope: {message}"
                        )));
                    }
                    return Err(Error::Rejected { service: SERVICE, status, code, message });
                }
            }
        }
    }

    /// A GET where 404 means "none of those exist".
    pub(super) async fn get_many(&self, path: &str, query: &[(&str, String)]) -> Result<Option<Value>> {
        self.call(Method::GET, path, query, None, Replay::Safe, true).await
    }

    pub(super) async fn write(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        replay: Replay,
    ) -> Result<Value> {
        Ok(self.call(method, path, &[], Some(body), replay, false).await?.unwrap_or(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_values_keep_filter_syntax_and_escape_the_rest() {
        assert_eq!(
            query_string(&[
                ("updatedOn", "2026-07-01T00:00:00.000Z/".into()),
                ("primaryEmail", "a+b@x.com".into())
            ]),
            "?updatedOn=2026-07-01T00:00:00.000Z/&primaryEmail=a%2Bb%40x.com"
        );
        assert_eq!(query_string(&[]), "");
    }

    #[test]
    fn errors_keep_code_and_message() {
        let body = json!({"errors": [{"code": "CMNC-404", "message": "not found"}]});
        assert_eq!(parse_errors(&body), vec![("CMNC-404".to_string(), "not found".to_string())]);
        assert!(parse_errors(&json!({"response": 1})).is_empty());
    }

    #[test]
    fn a_503_is_a_throttle_only_with_its_signature() {
        let throttle = br#"{"errors":[{"code":"CMNC-503","message":"You have sent too many requests"}]}"#;
        assert!(is_throttle_503(throttle, Some(3)));
        assert!(is_throttle_503(b"", Some(0)));
        let gateway = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>";
        assert!(!is_throttle_503(gateway, None));
        assert!(!is_throttle_503(gateway, Some(150)));
    }
}
