//! Simulated Brightpearl account (issue 3, made strict in issues 12–15): the endpoints
//! pearlsync uses under `/public-api/{account}/…`, with Brightpearl's envelope, status codes,
//! ID-set caps, auth headers, a rolling-window request limit with both throttle headers,
//! injected faults (before and after the write), and webhooks fired at subscribers. It is
//! never kinder than the real API (apis.md §8): where a fact is unknown it plays the side
//! that makes a client work harder.
//!
//! Control routes (JSON) under `/__sandbox/brightpearl/`, mirroring the Rust methods on
//! [`BrightpearlSandbox`]:
//! - `POST …/seed` `{products, warehouses, suppliers, seed}` → [`BrightpearlSandbox::seed`]
//! - `POST …/stock` `{product_id, warehouse_id, on_hand}` → [`BrightpearlSandbox::set_stock`]
//!   (records a goods movement of the change, type `SC`)
//! - `POST …/ship` `{order_id, tracking, carrier}` → `{goods_out_note_id}`
//!   ([`BrightpearlSandbox::ship_goods_out`]; movements of type `GO`)
//! - `POST …/receive` `{purchase_order_id, rows?: [{row_id, quantity}]}` → `{goods_in_note_id}`
//!   ([`BrightpearlSandbox::receive_purchase_order`]; movements of type `GI`)
//! - `GET …/counters` (`DELETE` resets) → [`BrightpearlSandbox::counters`]; `GET …/state` →
//!   [`BrightpearlSandbox::state`] (orders, credits, payments, every payment POST in
//!   `payment_posts`, reservations, goods movements, settings); `GET …/webhooks/deliveries`
//! - `POST …/faults` `{rates?, script?, endpoint?, nth?, fault?}` (`DELETE` clears):
//!   [`FaultInjector::set_rates`], [`FaultInjector::script`], [`BrightpearlSandbox::script_endpoint`],
//!   [`BrightpearlSandbox::fault_at`], [`BrightpearlSandbox::clear_faults`]. A fault is
//!   `{"kind": K}` with K one of `throttle`, `server_error`, `slow` (`millis`), `drop`,
//!   `outage_503` (before the write: nothing is committed) or `lose_response`,
//!   `drop_after_write`, `server_error_after_write` (`status`: 502 default, or 504),
//!   `shape_drift` (after the write: committed first). Rates have one field per kind.
//! - `GET`/`POST …/settings` `{duplicate_post_answer?: "no_id"|"empty"|"original_id",
//!   search_lag_ms?: u64, external_ref_dedup_off?: bool, total_value_skew_4dp?: i64}` (the
//!   last two for tests: Brightpearl's externalRef uniqueness off, so only our checks guard;
//!   `totalValue` served off from the rows, so a read-back check fires) → the settings now: [`BrightpearlSandbox::settings`],
//!   [`BrightpearlSandbox::set_settings`], [`BrightpearlSandbox::set_duplicate_post_answer`],
//!   [`BrightpearlSandbox::set_search_lag`]
//! - `POST …/rate-limit` `{requests, window_ms}`; `POST …/expire-tokens`
//!   ([`BrightpearlSandbox::expire_access_tokens`])
//! - `POST …/oauth/token[/{account}]`: the refresh-token grant (rotating refresh tokens);
//!   `GET …/oauth/refresh-token` → `{refresh_token}` ([`BrightpearlSandbox::current_refresh_token`])
//!
//! Other read methods: [`BrightpearlSandbox::payments_for`] (accepted payments of an order or
//! credit), [`BrightpearlSandbox::with_state`] / [`BrightpearlSandbox::with_state_mut`].
//!
//! API resources added for issues 12–15: `POST /order-service/sales-credit/`,
//! `GET /order-service/sales-credit/{ids}`, `POST /order-service/sales-credit/{id}/close`,
//! `GET /accounting-service/customer-payment-search` (recorded columns: paymentId,
//! transactionRef, transactionCode, paymentMethodCode, paymentType, orderId, currencyId,
//! currencyCode, amountAuthorized, amountPaid, expires, paymentDate, createdOn, journalId),
//! `GET /warehouse-service/goods-movement-search` (goodsMovementId, productId, quantity,
//! warehouseId, goodsNoteId, goodsNoteTypeCode, updatedOn), and `GET
//! /warehouse-service/order/{id}/reservation`. `order-search` knows `orderTypeId` 1 SO, 2 PO,
//! 3 SC, 4 PC, `installedIntegrationInstanceId` and `parentOrderId`.
//!
//! Wire forms (see `wire.rs`, `faults.rs`):
//! - every API answer: `Ruid` (fresh UUID), `Message-Type` (`bulk-data-search` for searches,
//!   `api-proxy` for 401s, else e.g. `post-sales-order`), `brightpearl-requests-remaining`,
//!   `brightpearl-next-throttle-period` (ms) and, except on 401s,
//!   `Brightpearl-Installed-Integration-Instance-Id` (config `installed_integration_instance_id`);
//! - throttle: 503 `{"errors":[{"code":"CMNC-503","message":"You have sent too many requests…"}]}`
//!   with `brightpearl-requests-remaining: 0`;
//! - outage: 503 HTML (Cloudflare-style), `content-type: text/html`, no Brightpearl headers;
//! - after-write gateway error: 502/504 HTML page, likewise; drops: the connection is reset;
//! - 401: `{"response":"Authorization token expired"}` or `{"response":"Invalid instance token: …"}`;
//! - bad search filter: 500 `{"errors":[{"code":"CMNC-018","message":"The filter … cannot be parsed as: …"}]}`.
//!
//! Choices (apis.md §8.1 verdicts, and the harder side of every §8.2 unknown):
//! - a repeated sales-order / sales-credit POST deduplicates only when both `externalRef` and
//!   `installedIntegrationInstanceId` are sent and match: 200 "no changes will be made". Its
//!   body is unknown (§8.2); the default is `{"response":"Sales order already exists, no
//!   changes will be made"}` (no id: a well-formed success a client must not read as an id nor
//!   as an error, so it has to search by externalRef); `empty` and `original_id` are switches.
//!   Without an instance id nothing is deduplicated: a second order is created;
//! - a second reservation POST for an order is a 400 with the generic `CMNC-400`;
//!   `GET …/order/{id}/reservation` returns `[{orderId, warehouseId, orderRows}]`, 404 when none;
//! - new sales orders, credits and contacts reach the searches after `search_lag_ms`;
//! - customer payments: `paymentType` ∈ AUTH, CAPTURE, PAYMENT, RECEIPT, VOID; a repeated
//!   `transactionRef` + `paymentMethodCode` is a 400 `CMNC-400` "Duplicate payment …" and
//!   creates nothing; every POST is kept in `payment_posts`;
//! - refused as documented-invalid (400 naming the field): a `countryIsoCode` that is not
//!   three capital letters (ISO-2 "GB" refused), a sales-order/credit row without `taxCode`,
//!   row `net`/`tax` with more than 4 decimals (4 is from the row PUT doc, our strict
//!   assumption for the POST; trailing zeros do not count), order-row POST values with more
//!   than 2 decimals (documented for that call), a non-whole quantity of a stock-tracked product;
//! - one unknown id in a product or product-availability ID set is a 400 for the whole request;
//! - more ids than an endpoint's cap (200; 500 for goods-out) is a 400 `CMNC-400`;
//!   product-availability is capped at 200 like product GET;
//! - a filter on a column the search does not have, or a range on an IDSET column, is a 500
//!   `CMNC-018`; searches carry `metaData.morePagesAvailable`; default and largest page 500;
//! - a multi-message counts as one request against the limit and accepts 1–10 messages;
//! - `brightpearl-next-throttle-period` is the time until the oldest request in the rolling
//!   window ages out (the full window when it is empty); requests refused by the limiter still
//!   count as received but do not use up the window;
//! - OAuth: each refresh answers a new refresh token; the old one is then refused with 400
//!   `{"error":"invalid_grant"}`; a `client_id` other than the app ref is 400
//!   `{"error":"invalid_client"}`; `installation_instance_id` is a string;
//! - goods movements are recorded for stock corrections, goods-in and goods-out; a reservation
//!   (allocation) is not a movement (unknown on the real API, §8.2: a client relying on it
//!   would miss changes);
//! - `primaryEmail` search is a case-insensitive "contains"; `SKU` search is exact;
//! - goods-out notes carry `shipping.carrier` (a sandbox addition) beside `shippingMethodId`.

pub mod api;
mod control;
mod movements;
pub mod oauth;
mod payments;
mod sales;
mod search;
pub mod state;
mod stock;
pub mod validation;
mod warehouse;
mod webhooks;
pub mod wire;

use crate::faults::{Fault, FaultCounts, FaultInjector, FaultRates};
use api::Answer;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use wire::parse_query;

pub use control::router;
pub use state::{DuplicatePostAnswer, SeedSpec, Settings, State};

#[derive(Debug, Clone)]
pub struct BrightpearlSandboxConfig {
    pub account: String,
    /// Credentials accepted (test values, not secrets).
    pub app_ref: String,
    pub staff_token: String,
    /// Also accept a legacy system-app account token.
    pub account_token: Option<String>,
    /// Also accept OAuth: `dev_ref` + Bearer tokens issued by the sandbox token endpoint
    /// (`POST /__sandbox/brightpearl/oauth/token`) for this refresh token.
    pub oauth_refresh_token: Option<String>,
    pub dev_ref: String,
    pub rate_limit: u32,
    pub rate_window: Duration,
    /// Most ids per ID-set request.
    pub max_ids: usize,
    pub faults: FaultRates,
    pub fault_seed: u64,
    /// Seeded at start, if set.
    pub seed: Option<SeedSpec>,
    /// Sent in the `Brightpearl-Installed-Integration-Instance-Id` header of every answer
    /// (except 401s, as recorded) and as `installation_instance_id` by the token endpoint.
    pub installed_integration_instance_id: Option<String>,
    /// `expires_in` of the access tokens the token endpoint issues.
    pub oauth_expires_in: Duration,
    /// Behaviour switches at start (also set at run time through the control API).
    pub settings: Settings,
}

impl Default for BrightpearlSandboxConfig {
    fn default() -> Self {
        BrightpearlSandboxConfig {
            account: "sandbox".into(),
            app_ref: "pearlsync-sandbox".into(),
            staff_token: "sandbox-staff-token".into(),
            account_token: None,
            oauth_refresh_token: None,
            dev_ref: "pearlsync-dev".into(),
            rate_limit: 200,
            rate_window: Duration::from_secs(60),
            max_ids: 200,
            faults: FaultRates::default(),
            fault_seed: 1,
            seed: None,
            installed_integration_instance_id: Some("42".into()),
            oauth_expires_in: Duration::from_secs(604_800),
            settings: Settings::default(),
        }
    }
}

/// What the sandbox counted, for assertions and the benchmark report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BrightpearlCounters {
    /// Authenticated API requests received (refused by the limiter or faulted included).
    pub requests: u64,
    /// Per endpoint key, e.g. `GET /warehouse-service/product-availability/{ids}`.
    pub per_endpoint: BTreeMap<String, u64>,
    pub unauthorized: u64,
    /// Every 503 sent: the limiter's and injected throttles.
    pub throttled_503: u64,
    /// 503s sent because the window was full.
    pub rate_limited: u64,
    /// The most requests received inside any one rolling window.
    pub max_in_window: u64,
    pub webhooks_delivered: u64,
    pub webhooks_failed: u64,
    pub faults: FaultCounts,
}

impl BrightpearlCounters {
    pub fn endpoint(&self, key: &str) -> u64 {
        self.per_endpoint.get(key).copied().unwrap_or(0)
    }
}

/// One webhook call the sandbox made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub subscription_id: u64,
    pub url: String,
    pub body: Option<String>,
    /// HTTP status, or 0 when the call failed.
    pub status: u16,
}

#[derive(Default)]
struct Limiter {
    /// Requests that used the window.
    accepted: VecDeque<Instant>,
    /// Every request that reached the limiter.
    received: VecDeque<Instant>,
}

#[derive(Default)]
struct EndpointFaults {
    scripts: HashMap<String, VecDeque<Option<Fault>>>,
    at: HashMap<(String, u64), Fault>,
}

struct Runtime {
    rate_limit: u32,
    rate_window: Duration,
    tokens: oauth::Tokens,
}

pub struct BrightpearlSandbox {
    config: BrightpearlSandboxConfig,
    base_url: String,
    state: Mutex<State>,
    limiter: Mutex<Limiter>,
    runtime: Mutex<Runtime>,
    faults: FaultInjector,
    endpoint_faults: Mutex<EndpointFaults>,
    counters: Mutex<BrightpearlCounters>,
    /// Shared with the delivery tasks.
    hook_log: Arc<Mutex<Vec<WebhookDelivery>>>,
    http: reqwest::Client,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The counter key of a request: method plus path with every ID set replaced by `{ids}`.
pub fn endpoint_key(method: &str, path: &str) -> String {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '-' || c == '*') {
                "{ids}"
            } else {
                s
            }
        })
        .collect();
    format!("{method} /{}", segs.join("/"))
}

impl BrightpearlSandbox {
    pub fn new(config: BrightpearlSandboxConfig, base_url: &str) -> Self {
        let mut state = config.seed.map(State::seeded).unwrap_or_default();
        state.settings = config.settings;
        BrightpearlSandbox {
            faults: FaultInjector::new(config.faults, config.fault_seed),
            runtime: Mutex::new(Runtime {
                rate_limit: config.rate_limit.max(1),
                rate_window: config.rate_window,
                tokens: oauth::Tokens { refresh: config.oauth_refresh_token.clone(), ..Default::default() },
            }),
            base_url: base_url.to_string(),
            state: Mutex::new(state),
            limiter: Mutex::new(Limiter::default()),
            endpoint_faults: Mutex::new(EndpointFaults::default()),
            counters: Mutex::new(BrightpearlCounters::default()),
            hook_log: Arc::new(Mutex::new(vec![])),
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
            config,
        }
    }

    pub fn config(&self) -> &BrightpearlSandboxConfig {
        &self.config
    }

    /// Host root to give a client as its base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `{base}/public-api/{account}`.
    pub fn api_prefix(&self) -> String {
        format!("{}/public-api/{}", self.base_url, self.config.account)
    }

    /// Replaces all data with a deterministic catalogue.
    pub fn seed(&self, spec: SeedSpec) {
        let mut state = lock(&self.state);
        let webhooks = std::mem::take(&mut state.webhooks);
        let settings = state.settings;
        *state = State::seeded(spec);
        state.settings = settings;
        // Subscriptions survive a reseed: they belong to the integration, not the catalogue.
        state.next_id.insert("webhook".into(), webhooks.keys().max().map_or(1, |m| m + 1));
        state.webhooks = webhooks;
    }

    pub fn counters(&self) -> BrightpearlCounters {
        let mut c = lock(&self.counters).clone();
        c.faults = self.faults.counts();
        let log = lock(&self.hook_log);
        c.webhooks_delivered = log.iter().filter(|d| (200..300).contains(&d.status)).count() as u64;
        c.webhooks_failed = log.len() as u64 - c.webhooks_delivered;
        c
    }

    pub fn reset_counters(&self) {
        *lock(&self.counters) = BrightpearlCounters::default();
        let mut l = lock(&self.limiter);
        l.received.clear();
    }

    /// A serialisable copy of everything the account holds.
    pub fn state(&self) -> State {
        lock(&self.state).clone()
    }

    /// Reads the state under the lock without copying it.
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&lock(&self.state))
    }

    /// Edits the state in place (tests shape the catalogue: reorder settings, suppliers).
    pub fn with_state_mut<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut lock(&self.state))
    }

    pub fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    /// Fault for exactly the `nth` (1-based) request to `endpoint` (an [`endpoint_key`]).
    pub fn fault_at(&self, endpoint: &str, nth: u64, fault: Fault) {
        lock(&self.endpoint_faults).at.insert((endpoint.to_string(), nth), fault);
    }

    /// Faults for the next requests to `endpoint`, in order (`None` lets one through).
    pub fn script_endpoint(&self, endpoint: &str, faults: impl IntoIterator<Item = Option<Fault>>) {
        lock(&self.endpoint_faults).scripts.entry(endpoint.to_string()).or_default().extend(faults);
    }

    /// The behaviour switches now.
    pub fn settings(&self) -> Settings {
        lock(&self.state).settings
    }

    pub fn set_settings(&self, settings: Settings) {
        lock(&self.state).settings = settings;
    }

    /// What a repeated sales-order / sales-credit POST answers (default [`DuplicatePostAnswer::NoId`]).
    pub fn set_duplicate_post_answer(&self, answer: DuplicatePostAnswer) {
        lock(&self.state).settings.duplicate_post_answer = answer;
    }

    /// How long a new sales order or credit stays out of the searches (default 0).
    pub fn set_search_lag(&self, lag: Duration) {
        lock(&self.state).settings.search_lag_ms = lag.as_millis() as u64;
    }

    /// The refresh token the token endpoint accepts now (it rotates on every grant).
    pub fn current_refresh_token(&self) -> Option<String> {
        lock(&self.runtime).tokens.refresh.clone()
    }

    /// Payments Brightpearl accepted against an order (sales order or credit).
    pub fn payments_for(&self, order_id: u64) -> Vec<state::PaymentRec> {
        lock(&self.state).payments.iter().filter(|p| p.order_id == order_id).cloned().collect()
    }

    pub fn clear_faults(&self) {
        self.faults.clear();
        *lock(&self.endpoint_faults) = EndpointFaults::default();
    }

    pub fn set_rate_limit(&self, requests: u32, window: Duration) {
        let mut r = lock(&self.runtime);
        r.rate_limit = requests.max(1);
        r.rate_window = window;
    }

    /// Invalidates every OAuth access token issued so far (an expiry, for refresh tests).
    pub fn expire_access_tokens(&self) {
        lock(&self.runtime).tokens.expire_all();
    }

    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        lock(&self.hook_log).clone()
    }

    /// `Err(message)` with the 401's message (recorded wording) when the credentials fail.
    fn authorised(&self, headers: &HeaderMap) -> Result<(), String> {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let invalid = |token: &str| Err(format!("Invalid instance token: {token}"));
        if h("brightpearl-app-ref") != self.config.app_ref {
            return Err(format!("Invalid app reference: {}", h("brightpearl-app-ref")));
        }
        if !h("brightpearl-staff-token").is_empty() {
            let t = h("brightpearl-staff-token");
            return if t == self.config.staff_token { Ok(()) } else { invalid(t) };
        }
        if !h("brightpearl-account-token").is_empty() {
            let t = h("brightpearl-account-token");
            return if self.config.account_token.as_deref() == Some(t) { Ok(()) } else { invalid(t) };
        }
        if let Some(token) = h("authorization").strip_prefix("Bearer ") {
            if h("brightpearl-dev-ref") != self.config.dev_ref {
                return Err(format!("Invalid developer reference: {}", h("brightpearl-dev-ref")));
            }
            return match lock(&self.runtime).tokens.check(token, Instant::now()) {
                oauth::TokenCheck::Valid => Ok(()),
                oauth::TokenCheck::Expired => Err("Authorization token expired".into()),
                oauth::TokenCheck::Invalid => invalid(token),
            };
        }
        Err("Not authenticated".into())
    }

    /// Counts a received request. `Err(period)` when the window is full.
    fn admit(&self, now: Instant) -> Result<(), ()> {
        let (limit, window) = {
            let r = lock(&self.runtime);
            (r.rate_limit, r.rate_window)
        };
        let mut l = lock(&self.limiter);
        while l.accepted.front().is_some_and(|t| now.duration_since(*t) >= window) {
            l.accepted.pop_front();
        }
        while l.received.front().is_some_and(|t| now.duration_since(*t) >= window) {
            l.received.pop_front();
        }
        l.received.push_back(now);
        let seen = l.received.len() as u64;
        let full = l.accepted.len() as u32 >= limit;
        if !full {
            l.accepted.push_back(now);
        }
        drop(l);
        let mut c = lock(&self.counters);
        c.max_in_window = c.max_in_window.max(seen);
        if full { Err(()) } else { Ok(()) }
    }

    /// (remaining, next-throttle-period ms) for the headers.
    fn throttle_headers(&self) -> (u32, u64) {
        let (limit, window) = {
            let r = lock(&self.runtime);
            (r.rate_limit, r.rate_window)
        };
        let now = Instant::now();
        let mut l = lock(&self.limiter);
        while l.accepted.front().is_some_and(|t| now.duration_since(*t) >= window) {
            l.accepted.pop_front();
        }
        let remaining = limit.saturating_sub(l.accepted.len() as u32);
        let period = l.accepted.front().map_or(window, |t| (*t + window).saturating_duration_since(now));
        (remaining, period.as_millis().max(1) as u64)
    }

    /// An answer with every header Brightpearl sends: `Ruid`, `Message-Type`, both throttle
    /// headers and the instance id. A throttle answer says 0 requests remaining.
    fn respond(&self, status: u16, body: &Value, message_type: String, throttled: bool) -> Response {
        let (remaining, period) = self.throttle_headers();
        let headers = wire::ApiHeaders {
            message_type,
            requests_remaining: if throttled { 0 } else { remaining },
            next_throttle_period_ms: period,
            instance_id: if status == 401 {
                None
            } else {
                self.config.installed_integration_instance_id.clone()
            },
        };
        wire::api_response(status, body, &headers)
    }

    fn endpoint_fault(&self, key: &str, nth: u64) -> Option<Option<Fault>> {
        let mut ef = lock(&self.endpoint_faults);
        let picked = match ef.at.remove(&(key.to_string(), nth)) {
            Some(f) => Some(Some(f)),
            None => ef.scripts.get_mut(key).and_then(VecDeque::pop_front),
        };
        if let Some(Some(f)) = &picked {
            self.faults.record(f);
        }
        picked
    }

    fn execute(
        &self,
        method: &str,
        segments: &[&str],
        query: &HashMap<String, String>,
        body: &Value,
    ) -> Answer {
        if let (true, ["multi-message"]) = (method == "POST", segments) {
            return self.multi_message(body);
        }
        let answer = lock(&self.state).dispatch(method, segments, query, body, self.config.max_ids);
        if !answer.events.is_empty() {
            self.fire(answer.events.clone());
        }
        answer
    }

    fn multi_message(&self, body: &Value) -> Answer {
        let messages = body.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
        if messages.is_empty() || messages.len() > 10 {
            return api::error(400, "CMNC-400", "a multi-message carries 1 to 10 messages");
        }
        let stop = body.get("onFail").and_then(Value::as_str) == Some("STOP");
        let mut processed = vec![];
        let mut unprocessed = vec![];
        let mut failed = false;
        for m in messages {
            let label = m.get("label").and_then(Value::as_str).unwrap_or_default().to_string();
            if failed && stop {
                unprocessed.push(json!(label));
                continue;
            }
            let method = m.get("httpMethod").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase();
            let uri = m.get("uri").and_then(Value::as_str).unwrap_or_default();
            let (path, q) = uri.split_once('?').unwrap_or((uri, ""));
            let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
            let answer =
                self.execute(&method, &segments, &parse_query(q), m.get("body").unwrap_or(&Value::Null));
            failed |= answer.status >= 300;
            processed.push(json!({"label": label, "statusCode": answer.status, "body": answer.body}));
        }
        let status = if failed { 207 } else { 200 };
        Answer {
            status,
            body: json!({"response": {"processedMessages": processed, "unprocessedMessages": unprocessed}}),
            events: vec![],
        }
    }
}

async fn handle_api(
    AxState(sb): AxState<Arc<BrightpearlSandbox>>,
    Path((account, path)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let message_type = wire::message_type(method.as_str(), &segments);
    if account != sb.config.account {
        let body =
            json!({"errors": [{"code": "CMNC-404", "message": format!("account {account} not found")}]});
        return sb.respond(404, &body, "api-proxy".into(), false);
    }
    if let Err(message) = sb.authorised(&headers) {
        lock(&sb.counters).unauthorized += 1;
        return sb.respond(401, &wire::unauthorized_body(&message), "api-proxy".into(), false);
    }
    let key = endpoint_key(method.as_str(), &path);
    let nth = {
        let mut c = lock(&sb.counters);
        c.requests += 1;
        let n = c.per_endpoint.entry(key.clone()).or_default();
        *n += 1;
        *n
    };
    if sb.admit(Instant::now()).is_err() {
        let mut c = lock(&sb.counters);
        c.throttled_503 += 1;
        c.rate_limited += 1;
        drop(c);
        return sb.respond(503, &wire::throttle_body(), message_type, true);
    }
    let fault = sb.endpoint_fault(&key, nth).unwrap_or_else(|| sb.faults.next());
    // Before the write: answer the fault and commit nothing.
    match fault {
        Some(Fault::Throttle) => {
            lock(&sb.counters).throttled_503 += 1;
            return sb.respond(503, &wire::throttle_body(), message_type, true);
        }
        Some(Fault::ServerError) => {
            let body = json!({"errors": [{"code": "CMNC-500", "message": "sandbox fault: internal error"}]});
            return sb.respond(500, &body, message_type, false);
        }
        Some(Fault::Outage503) => return crate::faults::html_error_page(503),
        Some(Fault::Drop) => return crate::faults::dropped_connection(),
        Some(Fault::Slow { millis }) => crate::faults::slow(millis).await,
        _ => {}
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                let body = json!({"errors": [{"code": "CMNC-400", "message": format!("invalid JSON: {e}")}]});
                return sb.respond(400, &body, message_type, false);
            }
        }
    };
    let answer = sb.execute(method.as_str(), &segments, &parse_query(query.as_deref().unwrap_or("")), &body);
    // After the write: it is committed; the answer is what fails. (On a read there is nothing
    // to commit: the fault is simply the answer.)
    match fault {
        Some(Fault::LoseResponse | Fault::DropAfterWrite) => crate::faults::dropped_connection(),
        Some(Fault::ServerErrorAfterWrite { status }) => crate::faults::html_error_page(status),
        Some(Fault::ShapeDrift) => {
            let multi = method == Method::POST && segments == ["multi-message"];
            let (status, drifted) = wire::drift(multi, answer.status, &answer.body);
            sb.respond(status, &drifted, message_type, false)
        }
        _ => sb.respond(answer.status, &answer.body, message_type, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys_hide_id_sets() {
        assert_eq!(
            endpoint_key("GET", "warehouse-service/product-availability/1-200,305"),
            "GET /warehouse-service/product-availability/{ids}"
        );
        assert_eq!(endpoint_key("POST", "/order-service/sales-order/"), "POST /order-service/sales-order");
        assert_eq!(
            endpoint_key("GET", "warehouse-service/order/*/goods-note/goods-out/7"),
            "GET /warehouse-service/order/{ids}/goods-note/goods-out/{ids}"
        );
    }

    #[test]
    fn seeds_are_deterministic() {
        let spec = SeedSpec { products: 5, warehouses: 2, suppliers: 2, seed: 9 };
        let a = serde_json::to_value(State::seeded(spec)).unwrap();
        let b = serde_json::to_value(State::seeded(spec)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["products"]["1001"]["sku"], "SKU-00001");
    }
}
