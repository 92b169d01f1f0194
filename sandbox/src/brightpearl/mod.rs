//! Simulated Brightpearl account (issue 3): the endpoints pearlsync uses under
//! `/public-api/{account}/…`, with Brightpearl's envelope, status codes, ID-set caps, auth
//! headers, a rolling-window request limit with both throttle headers, injected faults, and
//! webhooks fired at subscribers. A control API under `/__sandbox/brightpearl/` (and the same
//! methods on [`BrightpearlSandbox`]) seeds data, moves stock, ships and receives, and reads
//! counters and state.
//!
//! Control routes (JSON), mirroring the Rust methods:
//! - `POST /__sandbox/brightpearl/seed` `{products, warehouses, suppliers, seed}` → [`BrightpearlSandbox::seed`]
//! - `POST …/stock` `{product_id, warehouse_id, on_hand}` → [`BrightpearlSandbox::set_stock`]
//! - `POST …/ship` `{order_id, tracking, carrier}` → `{goods_out_note_id}`
//! - `POST …/receive` `{purchase_order_id, rows?: [{row_id, quantity}]}` → `{goods_in_note_id}`
//! - `GET …/counters` (`DELETE` resets), `GET …/state`, `GET …/webhooks/deliveries`
//! - `POST …/faults` `{rates?, script?, endpoint?, nth?, fault?}` (`DELETE` clears)
//! - `POST …/rate-limit` `{requests, window_ms}`; `POST …/expire-tokens`
//! - `POST …/oauth/token[/{account}]`: refresh-token grant for OAuth clients
//!
//! Choices on UNCONFIRMED behaviour (see `reference/apis.md` §7):
//! - a repeated sales-order POST with the same externalRef + installedIntegrationInstanceId
//!   answers 200 with the existing order id and changes nothing;
//! - more ids than an endpoint's cap (200; 500 for goods-out) is a 400 `CMNC-400`;
//!   product-availability is capped at 200 like product GET;
//! - a multi-message counts as one request against the limit and accepts 1–10 messages;
//! - `brightpearl-next-throttle-period` is in milliseconds: the time until the oldest request
//!   in the rolling window ages out (the full window when it is empty);
//! - requests refused by the limiter still count as received but do not use up the window;
//! - `primaryEmail` search is a case-insensitive "contains"; `SKU` search is exact;
//! - a second reservation POST for an order is a 400 `WHSC-102`;
//! - product GET lists suppliers as `suppliers: [{supplierId, isDefault}]`;
//! - goods-out notes carry `shipping.carrier` (a sandbox addition) beside `shippingMethodId`.

pub mod api;
pub mod state;

use crate::faults::{Fault, FaultCounts, FaultInjector, FaultRates};
use api::{Answer, Event};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use state::{SeedSpec, State};

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
    access_tokens: Vec<String>,
    issued: u64,
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
        let state = config.seed.map(State::seeded).unwrap_or_default();
        BrightpearlSandbox {
            faults: FaultInjector::new(config.faults, config.fault_seed),
            runtime: Mutex::new(Runtime {
                rate_limit: config.rate_limit.max(1),
                rate_window: config.rate_window,
                access_tokens: vec![],
                issued: 0,
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
        *state = State::seeded(spec);
        // Subscriptions survive a reseed: they belong to the integration, not the catalogue.
        state.next_id.insert("webhook".into(), webhooks.keys().max().map_or(1, |m| m + 1));
        state.webhooks = webhooks;
    }

    /// Sets a product's unallocated stock in a warehouse; fires on-hand-modified.
    pub fn set_stock(&self, product_id: u64, warehouse_id: u64, on_hand: i64) {
        {
            let mut state = lock(&self.state);
            state.stock.entry(product_id).or_default().entry(warehouse_id).or_default().on_hand = on_hand;
            if let Some(p) = state.products.get_mut(&product_id) {
                p.updated_on = Utc::now();
            }
        }
        self.fire(vec![Event::on_hand([product_id])]);
    }

    /// Creates and ships a goods-out note for the order's reserved rows (or all its rows when
    /// nothing is reserved); fires goods-out-note.modified.shipped. Returns the note id.
    pub fn ship_goods_out(&self, order_id: u64, tracking: &str, carrier: &str) -> Result<u64, String> {
        let (id, events) = {
            let mut state = lock(&self.state);
            let order = state.orders.get(&order_id).cloned().ok_or(format!("no order {order_id}"))?;
            let method = match state.shipping_methods.get(carrier) {
                Some(m) => *m,
                None => {
                    let m = state.shipping_methods.len() as u64 + 1;
                    state.shipping_methods.insert(carrier.to_string(), m);
                    m
                }
            };
            let (warehouse, rows) = match state.reservations.get_mut(&order_id) {
                Some(r) if !r.fulfilled => {
                    r.fulfilled = true;
                    (
                        r.warehouse_id,
                        r.rows.iter().map(|(row, (p, q))| (*row, *p, *q, true)).collect::<Vec<_>>(),
                    )
                }
                Some(_) => return Err(format!("order {order_id} is already shipped")),
                None => {
                    let w =
                        order.warehouse_id.or_else(|| state.warehouses.keys().next().copied()).unwrap_or(1);
                    (
                        w,
                        order
                            .rows
                            .iter()
                            .filter_map(|r| Some((r.id, r.product_id?, r.quantity, false)))
                            .collect(),
                    )
                }
            };
            for (_, product, qty, allocated) in &rows {
                let s = state.stock.entry(*product).or_default().entry(warehouse).or_default();
                if *allocated { s.allocated -= qty } else { s.on_hand -= qty }
            }
            let id = state.next("goods-out");
            state.goods_out.insert(
                id,
                state::GoodsOutRec {
                    id,
                    order_id,
                    warehouse_id: warehouse,
                    shipped: true,
                    tracking: Some(tracking.to_string()),
                    carrier: Some(carrier.to_string()),
                    shipping_method_id: Some(method),
                    rows: rows
                        .iter()
                        .map(|(row, p, q, _)| state::NoteRowRec {
                            row_id: *row,
                            product_id: *p,
                            quantity: *q,
                        })
                        .collect(),
                },
            );
            let mut events = vec![Event { full_event: "goods-out-note.modified.shipped", ids: vec![id] }];
            if rows.iter().any(|r| !r.3) {
                events.push(Event::on_hand(rows.iter().filter(|r| !r.3).map(|r| r.1)));
            }
            (id, events)
        };
        self.fire(events);
        Ok(id)
    }

    /// Receives a PO into its warehouse: all outstanding quantities, or `rows` as
    /// (PO row id, quantity). Raises on-hand stock; fires goods-in-note.created and
    /// product.modified.on-hand-modified. Returns the goods-in note id.
    pub fn receive_purchase_order(&self, po_id: u64, rows: Option<Vec<(u64, i64)>>) -> Result<u64, String> {
        let (id, events) = {
            let mut state = lock(&self.state);
            let po = state
                .orders
                .get(&po_id)
                .filter(|o| o.order_type == "PO")
                .cloned()
                .ok_or(format!("no PO {po_id}"))?;
            let warehouse = po.warehouse_id.or_else(|| state.warehouses.keys().next().copied()).unwrap_or(1);
            let mut received: HashMap<u64, i64> = HashMap::new();
            for n in state.goods_in.values().filter(|n| n.order_id == po_id) {
                for r in &n.rows {
                    *received.entry(r.row_id).or_default() += r.quantity;
                }
            }
            let outstanding = |row_id: u64| {
                po.rows
                    .iter()
                    .find(|r| r.id == row_id)
                    .map(|r| r.quantity - received.get(&row_id).copied().unwrap_or(0))
            };
            let wanted: Vec<(u64, i64)> = match rows {
                Some(list) => list,
                None => po.rows.iter().map(|r| (r.id, outstanding(r.id).unwrap_or(0))).collect(),
            };
            let mut note_rows = vec![];
            for (row_id, qty) in wanted {
                let left = outstanding(row_id).ok_or(format!("PO {po_id} has no row {row_id}"))?;
                let qty = qty.min(left);
                let product = po.rows.iter().find(|r| r.id == row_id).and_then(|r| r.product_id);
                if let (true, Some(product)) = (qty > 0, product) {
                    note_rows.push(state::NoteRowRec { row_id, product_id: product, quantity: qty });
                }
            }
            if note_rows.is_empty() {
                return Err(format!("PO {po_id} has nothing left to receive"));
            }
            for r in &note_rows {
                state.stock.entry(r.product_id).or_default().entry(warehouse).or_default().on_hand +=
                    r.quantity;
                *received.entry(r.row_id).or_default() += r.quantity;
            }
            let fully = po.rows.iter().all(|r| received.get(&r.id).copied().unwrap_or(0) >= r.quantity);
            if fully && let Some(o) = state.orders.get_mut(&po_id) {
                o.status_id = state::PO_STATUS_RECEIVED;
                o.updated_on = Utc::now();
            }
            let id = state.next("goods-in");
            let products: Vec<u64> = note_rows.iter().map(|r| r.product_id).collect();
            state.goods_in.insert(
                id,
                state::GoodsInRec {
                    id,
                    order_id: po_id,
                    warehouse_id: warehouse,
                    received_on: Utc::now(),
                    rows: note_rows,
                },
            );
            (id, vec![Event { full_event: "goods-in-note.created", ids: vec![id] }, Event::on_hand(products)])
        };
        self.fire(events);
        Ok(id)
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
        lock(&self.runtime).access_tokens.clear();
    }

    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        lock(&self.hook_log).clone()
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if h("brightpearl-app-ref") != self.config.app_ref {
            return false;
        }
        if !h("brightpearl-staff-token").is_empty() {
            return h("brightpearl-staff-token") == self.config.staff_token;
        }
        if !h("brightpearl-account-token").is_empty() {
            return self.config.account_token.as_deref() == Some(h("brightpearl-account-token"));
        }
        if let Some(token) = h("authorization").strip_prefix("Bearer ") {
            return h("brightpearl-dev-ref") == self.config.dev_ref
                && lock(&self.runtime).access_tokens.iter().any(|t| t == token);
        }
        false
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

    fn respond(&self, status: u16, body: Value) -> Response {
        let (remaining, period) = self.throttle_headers();
        let mut resp =
            (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(body))
                .into_response();
        let h = resp.headers_mut();
        h.insert("brightpearl-requests-remaining", HeaderValue::from(remaining));
        h.insert("brightpearl-next-throttle-period", HeaderValue::from(period));
        resp
    }

    fn endpoint_fault(&self, key: &str, nth: u64) -> Option<Option<Fault>> {
        let mut ef = lock(&self.endpoint_faults);
        if let Some(f) = ef.at.remove(&(key.to_string(), nth)) {
            return Some(Some(f));
        }
        ef.scripts.get_mut(key).and_then(VecDeque::pop_front)
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

    /// Delivers events to matching subscriptions in the background.
    fn fire(&self, events: Vec<Event>) {
        let hooks: Vec<state::WebhookRec> = lock(&self.state).webhooks.values().cloned().collect();
        if hooks.is_empty() || events.is_empty() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        for event in events {
            if event.ids.is_empty() {
                continue;
            }
            for hook in hooks.iter().filter(|h| subscribes(&h.subscribe_to, event.full_event)) {
                let id_sets: Vec<String> = if hook.id_set_accepted {
                    vec![api::idset_string(&event.ids)]
                } else {
                    event.ids.iter().map(u64::to_string).collect()
                };
                for id_set in id_sets {
                    let (url, body) = render(hook, &self.config.account, event.full_event, &id_set);
                    let http = self.http.clone();
                    let hook = hook.clone();
                    let log = Arc::clone(&self.hook_log);
                    handle.spawn(async move {
                        let status = deliver(&http, &hook, &url, body.clone()).await;
                        lock(&log).push(WebhookDelivery { subscription_id: hook.id, url, body, status });
                    });
                }
            }
        }
    }
}

fn subscribes(subscribe_to: &str, full_event: &str) -> bool {
    full_event == subscribe_to
        || full_event.strip_prefix(subscribe_to).is_some_and(|rest| rest.starts_with('.'))
}

fn render(
    hook: &state::WebhookRec,
    account: &str,
    full_event: &str,
    id_set: &str,
) -> (String, Option<String>) {
    let mut parts = full_event.splitn(3, '.');
    let resource_type = parts.next().unwrap_or_default();
    let lifecycle = parts.next().unwrap_or_default();
    let specifier = parts.next().unwrap_or_default();
    let raised_on = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let fill = |t: &str| {
        t.replace("${account-code}", account)
            .replace("${resource-type}", resource_type)
            .replace("${resource-id}", id_set)
            .replace("${lifecycle-event}", lifecycle)
            .replace("${resource-specifier}", specifier)
            .replace("${full-event}", full_event)
            .replace("${raised-on}", &raised_on)
            .replace("${brightpearl-version}", "sandbox-1.0")
    };
    let body = matches!(hook.http_method.to_ascii_uppercase().as_str(), "POST" | "PUT")
        .then(|| hook.body_template.as_deref().map(fill).unwrap_or_default());
    (fill(&hook.uri_template), body)
}

/// QoS 0 retries only on 503; QoS 1 on every failure except 4xx. Three retries at most.
async fn deliver(http: &reqwest::Client, hook: &state::WebhookRec, url: &str, body: Option<String>) -> u16 {
    let method = reqwest::Method::from_bytes(hook.http_method.to_ascii_uppercase().as_bytes())
        .unwrap_or(reqwest::Method::POST);
    let mut status = 0;
    for attempt in 0..4u32 {
        let mut req = http.request(method.clone(), url);
        if let Some(b) = &body {
            req = req
                .header("content-type", hook.content_type.as_deref().unwrap_or("application/json"))
                .body(b.clone());
        }
        status = match req.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        let retry = match hook.quality_of_service {
            0 => status == 503,
            _ => !(200..500).contains(&status),
        };
        if !retry {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt as u64 + 1))).await;
    }
    status
}

fn parse_query(q: &str) -> HashMap<String, String> {
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

async fn handle_api(
    AxState(sb): AxState<Arc<BrightpearlSandbox>>,
    Path((account, path)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if account != sb.config.account {
        return sb.respond(
            404,
            json!({"errors": [{"code": "CMNC-404", "message": format!("account {account} not found")}]}),
        );
    }
    if !sb.authorised(&headers) {
        lock(&sb.counters).unauthorized += 1;
        return sb.respond(401, json!({"errors": [{"code": "CMNC-401", "message": "Not authenticated"}]}));
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
        return sb.respond(503, json!({"errors": [{"code": "CMNC-503", "message": "You have sent too many requests. Please wait before sending another request"}]}));
    }
    let fault = sb.endpoint_fault(&key, nth).unwrap_or_else(|| sb.faults.next());
    let mut lose_response = false;
    match fault {
        Some(Fault::Throttle) => {
            lock(&sb.counters).throttled_503 += 1;
            return sb.respond(503, json!({"errors": [{"code": "CMNC-503", "message": "You have sent too many requests. Please wait before sending another request"}]}));
        }
        Some(Fault::ServerError) => {
            return sb.respond(
                500,
                json!({"errors": [{"code": "CMNC-500", "message": "sandbox fault: internal error"}]}),
            );
        }
        Some(Fault::Slow { millis }) => crate::faults::slow(millis).await,
        Some(Fault::Drop) => return crate::faults::dropped_connection(),
        Some(Fault::LoseResponse) => lose_response = true,
        None => {}
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return sb.respond(
                    400,
                    json!({"errors": [{"code": "CMNC-400", "message": format!("invalid JSON: {e}")}]}),
                );
            }
        }
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let answer = sb.execute(method.as_str(), &segments, &parse_query(query.as_deref().unwrap_or("")), &body);
    if lose_response {
        return crate::faults::dropped_connection();
    }
    sb.respond(answer.status, answer.body)
}

#[derive(Deserialize)]
struct StockBody {
    product_id: u64,
    warehouse_id: u64,
    on_hand: i64,
}

#[derive(Deserialize)]
struct ShipBody {
    order_id: u64,
    tracking: String,
    #[serde(default)]
    carrier: String,
}

#[derive(Deserialize)]
struct ReceiveRow {
    row_id: u64,
    quantity: i64,
}

#[derive(Deserialize)]
struct ReceiveBody {
    purchase_order_id: u64,
    #[serde(default)]
    rows: Option<Vec<ReceiveRow>>,
}

#[derive(Deserialize)]
struct FaultsBody {
    #[serde(default)]
    rates: Option<FaultRates>,
    #[serde(default)]
    script: Vec<Option<Fault>>,
    /// With `endpoint`: `script` applies to that endpoint only, or `nth` + `fault`.
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    nth: Option<u64>,
    #[serde(default)]
    fault: Option<Fault>,
}

#[derive(Deserialize)]
struct RateLimitBody {
    requests: u32,
    window_ms: u64,
}

fn control_error(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

async fn oauth_token(AxState(sb): AxState<Arc<BrightpearlSandbox>>, body: Bytes) -> Response {
    let form = parse_query(&String::from_utf8_lossy(&body));
    let valid = form.get("grant_type").map(String::as_str) == Some("refresh_token")
        && sb.config.oauth_refresh_token.is_some()
        && form.get("refresh_token") == sb.config.oauth_refresh_token.as_ref();
    if !valid {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_grant"}))).into_response();
    }
    let token = {
        let mut r = lock(&sb.runtime);
        r.issued += 1;
        let t = format!("sandbox-access-{}", r.issued);
        r.access_tokens.push(t.clone());
        t
    };
    Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "refresh_token": sb.config.oauth_refresh_token,
        "api_domain": sb.base_url.trim_start_matches("http://"),
        "installation_instance_id": 1,
    }))
    .into_response()
}

/// The Brightpearl API plus the control routes.
pub fn router(sandbox: Arc<BrightpearlSandbox>) -> Router {
    Router::new()
        .route("/public-api/{account}/{*path}", any(handle_api))
        .route(
            "/__sandbox/brightpearl/seed",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(spec): Json<SeedSpec>| async move {
                sb.seed(spec);
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/__sandbox/brightpearl/stock",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(b): Json<StockBody>| async move {
                sb.set_stock(b.product_id, b.warehouse_id, b.on_hand);
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/__sandbox/brightpearl/ship",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(b): Json<ShipBody>| async move {
                match sb.ship_goods_out(b.order_id, &b.tracking, &b.carrier) {
                    Ok(id) => Json(json!({"goods_out_note_id": id})).into_response(),
                    Err(e) => control_error(e),
                }
            }),
        )
        .route(
            "/__sandbox/brightpearl/receive",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(b): Json<ReceiveBody>| async move {
                let rows = b.rows.map(|r| r.into_iter().map(|r| (r.row_id, r.quantity)).collect());
                match sb.receive_purchase_order(b.purchase_order_id, rows) {
                    Ok(id) => Json(json!({"goods_in_note_id": id})).into_response(),
                    Err(e) => control_error(e),
                }
            }),
        )
        .route(
            "/__sandbox/brightpearl/counters",
            get(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move { Json(sb.counters()) }).delete(
                |AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move {
                    sb.reset_counters();
                    Json(json!({"ok": true}))
                },
            ),
        )
        .route(
            "/__sandbox/brightpearl/state",
            get(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move { Json(sb.state()) }),
        )
        .route(
            "/__sandbox/brightpearl/webhooks/deliveries",
            get(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move { Json(sb.webhook_deliveries()) }),
        )
        .route(
            "/__sandbox/brightpearl/faults",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(b): Json<FaultsBody>| async move {
                if let Some(r) = b.rates {
                    sb.faults.set_rates(r);
                }
                match (&b.endpoint, b.nth, b.fault) {
                    (Some(e), Some(n), Some(f)) => sb.fault_at(e, n, f),
                    (Some(e), _, _) => sb.script_endpoint(e, b.script),
                    (None, _, _) => sb.faults.script(b.script),
                }
                Json(json!({"ok": true}))
            })
            .delete(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move {
                sb.clear_faults();
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/__sandbox/brightpearl/rate-limit",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(b): Json<RateLimitBody>| async move {
                sb.set_rate_limit(b.requests, Duration::from_millis(b.window_ms.max(1)));
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/__sandbox/brightpearl/expire-tokens",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move {
                sb.expire_access_tokens();
                Json(json!({"ok": true}))
            }),
        )
        .route("/__sandbox/brightpearl/oauth/token", post(oauth_token))
        .route("/__sandbox/brightpearl/oauth/token/{account}", post(oauth_token))
        .with_state(sandbox)
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
    fn subscriptions_match_prefixes_at_dots() {
        assert!(subscribes("product", "product.modified.on-hand-modified"));
        assert!(subscribes("product.modified.on-hand-modified", "product.modified.on-hand-modified"));
        assert!(!subscribes("prod", "product.modified"));
        assert!(!subscribes("goods-in-note.created", "goods-out-note.modified.shipped"));
    }

    #[test]
    fn queries_decode() {
        let q = parse_query("primaryEmail=a%2Bb%40x.com&updatedOn=2026-01-01T00:00:00Z/");
        assert_eq!(q["primaryEmail"], "a+b@x.com");
        assert_eq!(q["updatedOn"], "2026-01-01T00:00:00Z/");
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
