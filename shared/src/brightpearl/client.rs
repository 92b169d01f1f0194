//! The HTTP client: auth headers, the `response`/`errors` envelope, pacing and retries, and
//! the typed calls behind [`BrightpearlApi`].

use super::budget::{Budget, BudgetSettings, ClientStats, Decision, Priority, backoff};
use super::config::{AuthKind, BrightpearlConfig};
use super::multimessage::{MAX_MESSAGES, Message, MessageResult};
use super::search::{
    ContactSearchRow, OrderSearchRow, PAGE_SIZE, Period, ProductSearchRow, SalesOrderSearchRow, SearchPage,
};
use super::types::*;
use super::{BrightpearlApi, idset};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SERVICE: &str = "brightpearl";
/// Goods-out note GETs take up to 500 ids per set.
const GOODS_OUT_CHUNK: usize = 500;
/// A full SKU-map rebuild at least this often, to drop deleted products.
const SKU_MAP_REBUILD: Duration = Duration::from_secs(24 * 3600);
/// Up to this many unknown SKUs are looked up one search each instead of loading the catalogue.
const SKU_LOOKUP_ONE_BY_ONE: usize = 3;
use super::purchasing::{self, ORDER_TYPE_PURCHASE};

/// May the request be sent again when we cannot tell whether it was processed?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Reads, and writes Brightpearl de-duplicates (the externalRef pair, status PUT).
    Safe,
    /// Writes that would duplicate: retried only when the server surely did not process them
    /// (503, refused connection).
    Unsafe,
}

#[derive(Default)]
struct Cache {
    warehouses: Option<(Instant, Vec<Warehouse>)>,
    statuses: Option<(Instant, Vec<OrderStatus>)>,
    sku_map: HashMap<String, u64>,
    /// When the whole catalogue was last paged in.
    sku_map_rebuilt: Option<Instant>,
    /// Local time of the last sweep; the next incremental sweep asks for `updatedOn` since then.
    sku_map_swept_at: Option<(Instant, DateTime<Utc>)>,
}

struct OauthTokens {
    access: String,
    refresh: String,
}

struct Inner {
    http: reqwest::Client,
    prefix: String,
    config: BrightpearlConfig,
    tokens: Mutex<OauthTokens>,
    /// Serialises refreshes so concurrent 401s make one grant.
    refresh_lock: tokio::sync::Mutex<u64>,
    budget: Mutex<Budget>,
    rng: Mutex<fastrand::Rng>,
    cache: Mutex<Cache>,
    requests: AtomicU64,
    throttled: AtomicU64,
    retried: AtomicU64,
}

/// The Brightpearl client. Cheap to clone; clones and priority handles share one budget.
#[derive(Clone)]
pub struct BrightpearlClient {
    inner: Arc<Inner>,
    priority: Priority,
}

impl std::fmt::Debug for BrightpearlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrightpearlClient")
            .field("prefix", &self.inner.prefix)
            .field("priority", &self.priority)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

fn query_string(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", encode_query_value(v))).collect();
    format!("?{}", joined.join("&"))
}

fn header_u64(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn bad_shape(what: &str, e: impl std::fmt::Display) -> Error {
    Error::BadInput(format!("unexpected Brightpearl {what} shape: {e}"))
}

fn from_value<T: DeserializeOwned>(what: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| bad_shape(what, e))
}

/// Numbers Brightpearl sometimes sends as strings (`"5.0000"`).
fn loose_i64(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|f| f.round() as i64),
        _ => None,
    }
}

fn loose_u64(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl BrightpearlClient {
    pub fn new(config: BrightpearlConfig) -> Result<Self> {
        config.validate()?;
        let prefix = config.prefix()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms.max(1)))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::config("brightpearl", format!("cannot build the HTTP client: {e}")))?;
        let budget = Budget::new(BudgetSettings {
            limit: config.rate_limit_requests.max(1),
            window: Duration::from_millis(config.rate_limit_window_ms.max(1)),
            background_reserve: config.background_reserve,
        });
        let tokens = OauthTokens {
            access: config.auth.access_token.expose().to_string(),
            refresh: config.auth.refresh_token.expose().to_string(),
        };
        Ok(BrightpearlClient {
            inner: Arc::new(Inner {
                http,
                prefix,
                tokens: Mutex::new(tokens),
                refresh_lock: tokio::sync::Mutex::new(0),
                budget: Mutex::new(budget),
                rng: Mutex::new(fastrand::Rng::new()),
                cache: Mutex::new(Cache::default()),
                requests: AtomicU64::new(0),
                throttled: AtomicU64::new(0),
                retried: AtomicU64::new(0),
                config,
            }),
            priority: Priority::Orders,
        })
    }

    /// Another handle over the same budget, cache and counters, with a different priority.
    pub fn with_priority(&self, priority: Priority) -> BrightpearlClient {
        BrightpearlClient { inner: Arc::clone(&self.inner), priority }
    }

    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The URI prefix, `{host}/public-api/{account}`.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub fn client_stats(&self) -> ClientStats {
        ClientStats {
            requests: self.inner.requests.load(Ordering::Relaxed),
            throttled: self.inner.throttled.load(Ordering::Relaxed),
            retried: self.inner.retried.load(Ordering::Relaxed),
        }
    }

    /// Drops cached reference data (warehouses, statuses, the SKU map).
    pub fn clear_cache(&self) {
        *lock(&self.inner.cache) = Cache::default();
    }

    fn chunk(&self) -> usize {
        self.inner.config.id_set_chunk.max(1)
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.inner.config.cache_ttl_secs)
    }

    async fn wait_for_budget(&self) {
        loop {
            let decision = lock(&self.inner.budget).try_acquire(Instant::now(), self.priority);
            match decision {
                Decision::Go => return,
                Decision::Wait(d) => {
                    tracing::debug!(wait_ms = d.as_millis() as u64, priority = ?self.priority, "brightpearl budget low, waiting");
                    tokio::time::sleep(d).await;
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

    /// One refresh-token grant. `seen_generation` avoids a second grant when another task
    /// already refreshed while we waited.
    async fn refresh_oauth(&self, seen_generation: u64) -> Result<()> {
        let mut generation = self.inner.refresh_lock.lock().await;
        if *generation != seen_generation {
            return Ok(());
        }
        let c = &self.inner.config;
        let url = c
            .auth
            .token_url
            .clone()
            .unwrap_or_else(|| format!("https://oauth.brightpearlapp.com/token/{}", c.account));
        let refresh = lock(&self.inner.tokens).refresh.clone();
        if refresh.is_empty() {
            return Err(Error::Unauthorized {
                service: SERVICE,
                message: "access token refused and no refresh token".into(),
            });
        }
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh),
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
        if status != 200 {
            return Err(Error::Unauthorized {
                service: SERVICE,
                message: format!("token refresh failed with HTTP {status}"),
            });
        }
        let access = v.get("access_token").and_then(Value::as_str).unwrap_or_default().to_string();
        if access.is_empty() {
            return Err(Error::Unauthorized {
                service: SERVICE,
                message: "token refresh returned no access_token".into(),
            });
        }
        let mut tokens = lock(&self.inner.tokens);
        tokens.access = access;
        if let Some(r) = v.get("refresh_token").and_then(Value::as_str) {
            tokens.refresh = r.to_string();
        }
        *generation += 1;
        tracing::info!("brightpearl OAuth access token refreshed");
        Ok(())
    }

    /// Sends one call with pacing and retries. `Ok(None)` is a 404 on a call where 404 means
    /// "no results" (multi-id GETs); otherwise the envelope's `response` (`Null` when empty).
    async fn call(
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
        loop {
            attempt += 1;
            let may_retry = attempt < max_attempts;
            self.wait_for_budget().await;
            let generation = *self.inner.refresh_lock.lock().await;
            let mut req = self.auth_headers(self.inner.http.request(method.clone(), &url));
            if let Some(b) = body {
                req = req.json(b);
            }
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let sent = req.send().await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    lock(&self.inner.budget).on_no_response();
                    // A refused connection surely never reached Brightpearl.
                    if may_retry && (replay == Replay::Safe || e.is_connect()) {
                        tracing::warn!(%method, path, error = %e, "brightpearl request failed, retrying");
                        self.inner.retried.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(self.backoff(attempt)).await;
                        continue;
                    }
                    // Refused connections never reached Brightpearl; anything else may have.
                    let detail = format!("{method} {path}: {e}");
                    return Err(if e.is_connect() {
                        Error::Unavailable { service: SERVICE, detail }
                    } else {
                        Error::OutcomeUnknown { service: SERVICE, detail }
                    });
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let remaining = header_u64(&headers, "brightpearl-requests-remaining").map(|r| r as u32);
            let period = header_u64(&headers, "brightpearl-next-throttle-period").map(Duration::from_millis);
            lock(&self.inner.budget).on_response(Instant::now(), remaining, period);
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    // The answer was lost on the way: the request may well have been processed.
                    if may_retry && replay == Replay::Safe {
                        tracing::warn!(%method, path, error = %e, "brightpearl answer lost, retrying");
                        self.inner.retried.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(self.backoff(attempt)).await;
                        continue;
                    }
                    return Err(Error::OutcomeUnknown {
                        service: SERVICE,
                        detail: format!("{method} {path}: {e}"),
                    });
                }
            };
            let parsed: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
            };
            let errors = parse_errors(&parsed);
            let first_error = || {
                let code = errors.first().map(|e| e.0.clone()).unwrap_or_default();
                let message = if errors.is_empty() {
                    parsed.as_str().map(str::to_string).unwrap_or_default()
                } else {
                    errors.iter().map(|e| e.1.as_str()).collect::<Vec<_>>().join("; ")
                };
                (code, message)
            };
            match status {
                200..=299 => return Ok(Some(parsed.get("response").cloned().unwrap_or(Value::Null))),
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
                503 => {
                    self.inner.throttled.fetch_add(1, Ordering::Relaxed);
                    let cap = Duration::from_millis(self.inner.config.rate_limit_window_ms.max(1)) * 2;
                    let wait =
                        period.filter(|p| !p.is_zero()).unwrap_or_else(|| self.backoff(attempt)).min(cap);
                    if may_retry {
                        tracing::info!(%method, path, wait_ms = wait.as_millis() as u64, "brightpearl throttled (503), waiting out the period");
                        lock(&self.inner.budget).on_throttled(Instant::now(), wait);
                        self.inner.retried.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    return Err(Error::Throttled { service: SERVICE, retry_after: Some(wait) });
                }
                500..=599 => {
                    if may_retry && replay == Replay::Safe {
                        tracing::warn!(%method, path, status, "brightpearl server error, retrying");
                        self.inner.retried.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(self.backoff(attempt)).await;
                        continue;
                    }
                    let (code, message) = first_error();
                    return Err(Error::Unavailable {
                        service: SERVICE,
                        detail: format!("HTTP {status} {code} {message}"),
                    });
                }
                _ => {
                    let (code, message) = first_error();
                    return Err(Error::Rejected { service: SERVICE, status, code, message });
                }
            }
        }
    }

    /// A GET where 404 means "none of those exist".
    pub(super) async fn get_many(&self, path: &str, query: &[(&str, String)]) -> Result<Option<Value>> {
        self.call(Method::GET, path, query, None, Replay::Safe, true).await
    }

    async fn write(&self, method: Method, path: &str, body: &Value, replay: Replay) -> Result<Value> {
        Ok(self.call(method, path, &[], Some(body), replay, false).await?.unwrap_or(Value::Null))
    }

    fn created_id(what: &str, v: &Value) -> Result<u64> {
        loose_u64(Some(v)).ok_or_else(|| bad_shape(what, format!("expected a created id, got {v}")))
    }

    /// Every page of a search, rows mapped onto `T`.
    pub async fn search_all<T: DeserializeOwned>(
        &self,
        path: &str,
        filters: &[(&str, String)],
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut first = 1u64;
        loop {
            let mut query: Vec<(&str, String)> = filters.to_vec();
            query.push(("pageSize", PAGE_SIZE.to_string()));
            query.push(("firstResult", first.to_string()));
            let Some(v) = self.get_many(path, &query).await? else { break };
            let page: SearchPage = from_value("search", v)?;
            out.extend(page.rows::<T>()?);
            match page.next_first_result() {
                Some(n) if n > first => first = n,
                _ => break,
            }
        }
        Ok(out)
    }

    /// Runs `per_set` for each ID-set chunk and concatenates the array answers.
    async fn get_by_id_sets(
        &self,
        ids: &[u64],
        chunk: usize,
        path: impl Fn(&str) -> String,
    ) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for set in idset::chunks(ids, chunk) {
            match self.get_many(&path(&set), &[]).await? {
                Some(Value::Array(items)) => out.extend(items),
                Some(Value::Object(map)) => out.extend(map.into_iter().map(|(k, mut v)| {
                    // Maps keyed by id: keep the key beside the value.
                    if let Value::Object(o) = &mut v {
                        o.entry("__key").or_insert(Value::String(k));
                    }
                    v
                })),
                Some(Value::Null) | None => {}
                Some(other) => return Err(bad_shape("ID-set GET", other)),
            }
        }
        Ok(out)
    }

    async fn sweep_skus(&self, since: Option<DateTime<Utc>>) -> Result<Vec<(u64, String)>> {
        let started = (Instant::now(), Utc::now());
        let mut filters = vec![("columns", "productId,SKU,updatedOn".to_string())];
        if let Some(since) = since {
            filters.push(("updatedOn", Period::since(since).encode()));
        }
        let rows: Vec<ProductSearchRow> =
            self.search_all("/product-service/product-search", &filters).await?;
        let rows: Vec<(u64, String)> = rows
            .into_iter()
            .filter_map(|row| row.sku.filter(|s| !s.is_empty()).map(|sku| (row.product_id, sku)))
            .collect();
        let mut cache = lock(&self.inner.cache);
        if since.is_none() {
            cache.sku_map.clear();
            cache.sku_map_rebuilt = Some(started.0);
        }
        for (id, sku) in &rows {
            cache.sku_map.insert(sku.clone(), *id);
        }
        cache.sku_map_swept_at = Some(started);
        Ok(rows)
    }

    /// Goods-in notes from ID-set GETs built by `path` (note ids, or order ids).
    async fn goods_in_by(&self, ids: &[u64], path: impl Fn(&str) -> String) -> Result<Vec<GoodsInNote>> {
        let items = self.get_by_id_sets(ids, self.chunk(), path).await?;
        let mut notes: Vec<GoodsInNote> = items
            .iter()
            .filter_map(|v| {
                let id = loose_u64(v.get("goodsNoteId")).or_else(|| loose_u64(v.get("__key")))?;
                let moved: Vec<&Value> =
                    v.get("goodsMoved").and_then(Value::as_array).into_iter().flatten().collect();
                Some(GoodsInNote {
                    id,
                    purchase_order_id: loose_u64(v.get("orderId"))?,
                    warehouse_id: loose_u64(v.get("warehouseId"))
                        .or_else(|| moved.first().and_then(|m| loose_u64(m.get("warehouseId")))),
                    received_on: v.get("receivedOn").and_then(Value::as_str).map(str::to_string),
                    rows: moved
                        .iter()
                        .map(|m| GoodsNoteRow {
                            order_row_id: loose_u64(m.get("purchaseOrderRowId")),
                            product_id: loose_u64(m.get("productId")).unwrap_or_default(),
                            quantity: loose_i64(m.get("quantity")).unwrap_or_default(),
                        })
                        .collect(),
                })
            })
            .collect();
        notes.sort_by_key(|n| n.id);
        Ok(notes)
    }

    fn goods_rows(rows: Option<&Value>) -> Vec<GoodsNoteRow> {
        // `orderRows`: {"rowId": [{productId, quantity}, …]}
        let mut out = Vec::new();
        if let Some(Value::Object(map)) = rows {
            for (row_id, lines) in map {
                for line in lines.as_array().into_iter().flatten() {
                    out.push(GoodsNoteRow {
                        order_row_id: row_id.parse().ok(),
                        product_id: loose_u64(line.get("productId")).unwrap_or_default(),
                        quantity: loose_i64(line.get("quantity")).unwrap_or_default(),
                    });
                }
            }
        }
        out
    }

    fn order_rows(v: &Value) -> Vec<OrderRow> {
        // Sales-order GET: `rows: [{id, productId, quantity, externalRef}]`;
        // Order GET: `orderRows: {"rowId": {productId, quantity:{magnitude}, externalRef}}`.
        let mut rows = Vec::new();
        if let Some(list) = v.get("rows").and_then(Value::as_array) {
            for r in list {
                if let Some(id) = loose_u64(r.get("id")) {
                    rows.push(OrderRow {
                        id,
                        product_id: loose_u64(r.get("productId")),
                        quantity: loose_i64(r.get("quantity").map(|q| q.get("magnitude").unwrap_or(q)))
                            .unwrap_or(0),
                        external_ref: r.get("externalRef").and_then(Value::as_str).map(str::to_string),
                    });
                }
            }
        } else if let Some(map) = v.get("orderRows").and_then(Value::as_object) {
            for (id, r) in map {
                if let Ok(id) = id.parse() {
                    rows.push(OrderRow {
                        id,
                        product_id: loose_u64(r.get("productId")),
                        quantity: loose_i64(r.get("quantity").map(|q| q.get("magnitude").unwrap_or(q)))
                            .unwrap_or(0),
                        external_ref: r.get("externalRef").and_then(Value::as_str).map(str::to_string),
                    });
                }
            }
        }
        rows.sort_by_key(|r| r.id);
        rows
    }

    fn sales_order_body(&self, o: &NewSalesOrder) -> Value {
        sales_order_body(o, self.inner.config.installed_integration_instance_id)
    }

    fn purchase_row_message(order_id: u64, label: String, r: &NewPurchaseOrderRow) -> Message {
        Message::post(
            label,
            format!("/order-service/order/{order_id}/row"),
            json!({
                "productId": r.product_id,
                "quantity": {"magnitude": r.quantity},
                "rowValue": {"taxCode": r.tax_code, "rowNet": {"value": r.net}, "rowTax": {"value": r.tax}},
            }),
        )
    }

    /// One chunk of ≤10 messages. A single message goes as a plain request (the 2-message
    /// minimum is UNCONFIRMED, and a plain request costs the same).
    async fn multi_message_chunk(&self, chunk: Vec<Message>) -> Result<Vec<MessageResult>> {
        if let [only] = chunk.as_slice() {
            let method = Method::from_bytes(only.http_method.as_bytes())
                .map_err(|e| Error::BadInput(e.to_string()))?;
            let res = self.call(method, &only.uri, &[], Some(&only.body), Replay::Unsafe, false).await;
            return match res {
                Ok(v) => Ok(vec![MessageResult {
                    label: only.label.clone(),
                    status: 200,
                    response: v,
                    errors: vec![],
                }]),
                Err(Error::Rejected { status, code, message, .. }) => Ok(vec![MessageResult {
                    label: only.label.clone(),
                    status,
                    response: None,
                    errors: vec![(code, message)],
                }]),
                Err(e) => Err(e),
            };
        }
        let body = json!({"processingMode": "SEQUENTIAL", "onFail": "CONTINUE", "messages": chunk});
        let v = self.write(Method::POST, "/multi-message", &body, Replay::Unsafe).await?;
        let mut by_label: HashMap<String, MessageResult> = v
            .get("processedMessages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(MessageResult::from_processed)
            .map(|r| (r.label.clone(), r))
            .collect();
        Ok(chunk
            .into_iter()
            .map(|m| {
                by_label.remove(&m.label).unwrap_or(MessageResult {
                    label: m.label,
                    status: 0,
                    response: None,
                    errors: vec![("UNPROCESSED".into(), "Brightpearl did not process this message".into())],
                })
            })
            .collect())
    }
}

/// The Sales Order POST body (also sent inside multi-messages by the order writer).
/// `default_instance` applies when the order names no installed integration instance.
/// A row with `product_id` 0 is a named row without a product (e.g. shipping).
pub fn sales_order_body(o: &NewSalesOrder, default_instance: Option<u64>) -> Value {
    let instance = o.installed_integration_instance_id.or(default_instance);
    let rows: Vec<Value> = o
        .rows
        .iter()
        .map(|r| {
            let mut row = json!({
                "quantity": r.quantity,
                "net": r.net,
                "tax": r.tax,
            });
            if r.product_id != 0 {
                row["productId"] = json!(r.product_id);
            }
            if let Some(n) = &r.name {
                row["name"] = json!(n);
            }
            if let Some(t) = &r.tax_code {
                row["taxCode"] = json!(t);
            }
            if let Some(e) = &r.external_ref {
                row["externalRef"] = json!(e);
            }
            row
        })
        .collect();
    let mut body = json!({
        "customer": {"id": o.customer_id},
        "externalRef": o.external_ref,
        "currency": {"code": o.currency_code},
        "rows": rows,
    });
    let opt = |body: &mut Value, key: &str, v: Option<Value>| {
        if let Some(v) = v {
            body[key] = v;
        }
    };
    opt(&mut body, "installedIntegrationInstanceId", instance.map(|i| json!(i)));
    opt(&mut body, "ref", o.reference.as_ref().map(|r| json!(r)));
    opt(&mut body, "channelId", o.channel_id.map(|c| json!(c)));
    opt(&mut body, "priceListId", o.price_list_id.map(|c| json!(c)));
    opt(&mut body, "warehouseId", o.warehouse_id.map(|c| json!(c)));
    opt(&mut body, "statusId", o.status_id.map(|c| json!(c)));
    opt(&mut body, "placedOn", o.placed_on.map(|d| json!(d.to_rfc3339())));
    if o.delivery_address.is_some() || o.shipping_method_id.is_some() {
        let mut delivery = json!({});
        opt(&mut delivery, "address", o.delivery_address.as_ref().map(|a| json!(a)));
        opt(&mut delivery, "shippingMethodId", o.shipping_method_id.map(|s| json!(s)));
        body["delivery"] = delivery;
    }
    body
}

/// The Customer Payment POST body (also sent inside multi-messages by the order writer).
pub fn customer_payment_body(p: &NewCustomerPayment) -> Value {
    let mut body = json!({
        "paymentMethodCode": p.payment_method_code,
        "paymentType": "RECEIPT",
        "orderId": p.order_id,
        "currencyIsoCode": p.currency_code,
        "exchangeRate": 1,
        "amountPaid": p.amount,
        "paymentDate": p.payment_date.to_rfc3339(),
    });
    if let Some(j) = &p.journal_ref {
        body["journalRef"] = json!(j);
    }
    body
}

/// The Reservation POST body (also sent inside multi-messages by the order writer).
pub fn reservation_body(rows: &[ReservationRow]) -> Value {
    // One entry per row with the total: two entries for one row can double-reserve.
    let mut per_row: BTreeMap<u64, (u64, i64)> = BTreeMap::new();
    for r in rows {
        let e = per_row.entry(r.row_id).or_insert((r.product_id, 0));
        e.1 += r.quantity;
    }
    let products: Vec<Value> = per_row
        .iter()
        .map(|(row, (product, qty))| json!({"productId": product, "salesOrderRowId": row, "quantity": qty}))
        .collect();
    json!({"products": products})
}

#[async_trait::async_trait]
impl BrightpearlApi for BrightpearlClient {
    async fn products_by_sku(&self, skus: &[String]) -> Result<HashMap<String, u64>> {
        let now = Instant::now();
        let (missing, rebuilt, swept) = {
            let cache = lock(&self.inner.cache);
            let missing: Vec<String> =
                skus.iter().filter(|s| !cache.sku_map.contains_key(*s)).cloned().collect();
            (missing, cache.sku_map_rebuilt, cache.sku_map_swept_at)
        };
        let stale = swept.is_none_or(|(at, _)| now.duration_since(at) >= self.ttl());
        match (rebuilt, swept) {
            (Some(r), Some((_, since))) if now.duration_since(r) < SKU_MAP_REBUILD => {
                if stale || !missing.is_empty() {
                    // Incremental: what changed since the last sweep, with slack for clock skew.
                    self.sweep_skus(Some(since - chrono::Duration::minutes(5))).await?;
                }
            }
            (Some(_), _) => {
                self.sweep_skus(None).await?;
            }
            // No catalogue loaded yet; earlier single lookups already cover this request.
            (None, _) if missing.is_empty() => {}
            (None, _) if missing.len() <= SKU_LOOKUP_ONE_BY_ONE => {
                // A few SKUs and no map yet: cheaper to ask for each than to load the catalogue.
                for sku in &missing {
                    let rows: Vec<ProductSearchRow> =
                        self.search_all("/product-service/product-search", &[("SKU", sku.clone())]).await?;
                    let mut cache = lock(&self.inner.cache);
                    for row in rows {
                        if row.sku.as_deref() == Some(sku.as_str()) {
                            cache.sku_map.insert(sku.clone(), row.product_id);
                        }
                    }
                }
            }
            (None, _) => {
                self.sweep_skus(None).await?;
            }
        }
        let cache = lock(&self.inner.cache);
        Ok(skus.iter().filter_map(|s| cache.sku_map.get(s).map(|id| (s.clone(), *id))).collect())
    }

    async fn catalogue_product_ids(&self) -> Result<Vec<u64>> {
        let now = Instant::now();
        let (rebuilt, swept) = {
            let cache = lock(&self.inner.cache);
            (cache.sku_map_rebuilt, cache.sku_map_swept_at)
        };
        match (rebuilt, swept) {
            (Some(r), Some((at, since))) if now.duration_since(r) < SKU_MAP_REBUILD => {
                if now.duration_since(at) >= self.ttl() {
                    self.sweep_skus(Some(since - chrono::Duration::minutes(5))).await?;
                }
            }
            _ => {
                self.sweep_skus(None).await?;
            }
        }
        let mut ids: Vec<u64> = lock(&self.inner.cache).sku_map.values().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    async fn product_skus_since(&self, since: Option<DateTime<Utc>>) -> Result<Vec<(u64, String)>> {
        self.sweep_skus(since).await
    }

    async fn products(&self, ids: &[u64]) -> Result<Vec<Product>> {
        let items =
            self.get_by_id_sets(ids, self.chunk(), |set| format!("/product-service/product/{set}")).await?;
        Ok(items.iter().filter_map(Product::from_wire).collect())
    }

    async fn availability(&self, ids: &[u64]) -> Result<HashMap<u64, Availability>> {
        let mut out = HashMap::new();
        for set in idset::chunks(ids, self.chunk()) {
            if let Some(v) =
                self.get_many(&format!("/warehouse-service/product-availability/{set}"), &[]).await?
            {
                let map: BTreeMap<String, Availability> = from_value("availability", v)?;
                for (id, a) in map {
                    if let Ok(id) = id.parse() {
                        out.insert(id, a);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn warehouse_defaults(
        &self,
        warehouse_id: u64,
        product_ids: &[u64],
    ) -> Result<Vec<WarehouseDefaults>> {
        let items = self
            .get_by_id_sets(product_ids, self.chunk(), |set| {
                format!("/warehouse-service/warehouse/{warehouse_id}/product/{set}")
            })
            .await?;
        items.into_iter().map(|v| from_value("warehouse defaults", v)).collect()
    }

    async fn warehouses(&self) -> Result<Vec<Warehouse>> {
        if let Some((at, w)) = &lock(&self.inner.cache).warehouses
            && at.elapsed() < self.ttl()
        {
            return Ok(w.clone());
        }
        let v = self.get_many("/warehouse-service/warehouse", &[]).await?.unwrap_or(Value::Array(vec![]));
        let list: Vec<Warehouse> = from_value("warehouse", v)?;
        lock(&self.inner.cache).warehouses = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    async fn order_statuses(&self) -> Result<Vec<OrderStatus>> {
        if let Some((at, s)) = &lock(&self.inner.cache).statuses
            && at.elapsed() < self.ttl()
        {
            return Ok(s.clone());
        }
        let v = self.get_many("/order-service/order-status", &[]).await?.unwrap_or(Value::Array(vec![]));
        let list: Vec<OrderStatus> = from_value("order status", v)?;
        lock(&self.inner.cache).statuses = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    async fn find_contact_by_email(&self, email: &str) -> Result<Option<Contact>> {
        let wanted = email.trim();
        if wanted.is_empty() {
            return Ok(None);
        }
        let rows: Vec<ContactSearchRow> = self
            .search_all("/contact-service/contact-search", &[("primaryEmail", wanted.to_string())])
            .await?;
        // primaryEmail is a text-search column: keep only exact matches.
        Ok(rows
            .into_iter()
            .filter(|r| r.primary_email.as_deref().is_some_and(|e| e.trim().eq_ignore_ascii_case(wanted)))
            .min_by_key(|r| r.contact_id)
            .map(|r| Contact {
                id: r.contact_id,
                primary_email: r.primary_email,
                first_name: r.first_name,
                last_name: r.last_name,
            }))
    }

    async fn create_postal_address(&self, address: &PostalAddress) -> Result<u64> {
        let v = self
            .write(Method::POST, "/contact-service/postal-address", &json!(address), Replay::Unsafe)
            .await?;
        Self::created_id("postal address", &v)
    }

    async fn create_contact(&self, c: &NewContact) -> Result<u64> {
        let mut body = json!({
            "firstName": c.first_name,
            "lastName": c.last_name,
            "relationshipToAccount": {"isSupplier": c.is_supplier, "isStaff": false},
        });
        if let Some(a) = c.postal_address_id {
            body["postAddressIds"] = json!({"DEF": a, "BIL": a, "DEL": a});
        }
        let mut communication = json!({});
        if let Some(e) = &c.email {
            communication["emails"] = json!({"PRI": {"email": e}});
        }
        if let Some(t) = &c.telephone {
            communication["telephones"] = json!({"PRI": t});
        }
        body["communication"] = communication;
        let v = self.write(Method::POST, "/contact-service/contact", &body, Replay::Unsafe).await?;
        Self::created_id("contact", &v)
    }

    async fn create_sales_order(&self, order: &NewSalesOrder) -> Result<u64> {
        let body = self.sales_order_body(order);
        match self.write(Method::POST, "/order-service/sales-order", &body, Replay::Safe).await {
            Ok(v) => Self::created_id("sales order", &v),
            // Brightpearl may refuse a duplicate externalRef pair rather than return the
            // existing order (UNCONFIRMED): then the existing order is the answer.
            Err(Error::Rejected { status, code, message, .. }) => {
                let instance = order
                    .installed_integration_instance_id
                    .or(self.inner.config.installed_integration_instance_id);
                let existing = self.find_sales_orders_by_external_ref(&order.external_ref).await?;
                existing
                    .into_iter()
                    .find(|o| instance.is_none() || o.installed_integration_instance_id == instance)
                    .map(|o| o.sales_order_id)
                    .ok_or(Error::Rejected { service: SERVICE, status, code, message })
            }
            Err(e) => Err(e),
        }
    }

    async fn sales_orders(&self, ids: &[u64]) -> Result<Vec<SalesOrder>> {
        let items =
            self.get_by_id_sets(ids, self.chunk(), |set| format!("/order-service/sales-order/{set}")).await?;
        Ok(items
            .iter()
            .filter_map(|v| {
                Some(SalesOrder {
                    id: loose_u64(v.get("id"))?,
                    customer_id: loose_u64(v.pointer("/customer/id")),
                    external_ref: v.get("externalRef").and_then(Value::as_str).map(str::to_string),
                    installed_integration_instance_id: loose_u64(v.get("installedIntegrationInstanceId")),
                    channel_id: loose_u64(v.get("channelId")),
                    status_id: loose_u64(v.get("statusId")),
                    warehouse_id: loose_u64(v.get("warehouseId")),
                    rows: Self::order_rows(v),
                })
            })
            .collect())
    }

    async fn find_sales_orders_by_external_ref(
        &self,
        external_ref: &str,
    ) -> Result<Vec<SalesOrderSearchRow>> {
        let rows: Vec<SalesOrderSearchRow> = self
            .search_all("/order-service/sales-order-search", &[("externalRef", external_ref.to_string())])
            .await?;
        Ok(rows.into_iter().filter(|r| r.external_ref.as_deref() == Some(external_ref)).collect())
    }

    async fn reserve(&self, order_id: u64, warehouse_id: u64, rows: &[ReservationRow]) -> Result<()> {
        let path = format!("/warehouse-service/order/{order_id}/reservation/warehouse/{warehouse_id}");
        match self.write(Method::POST, &path, &reservation_body(rows), Replay::Safe).await {
            Ok(_) => Ok(()),
            // A repeat after a lost answer is refused; the reservation we made is what counts.
            Err(e @ Error::Rejected { .. }) => match self.reservation(order_id).await? {
                Some(existing) if existing.warehouse_id == warehouse_id => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn reservation(&self, order_id: u64) -> Result<Option<Reservation>> {
        let Some(v) = self.get_many(&format!("/warehouse-service/order/{order_id}/reservation"), &[]).await?
        else {
            return Ok(None);
        };
        let first = match &v {
            Value::Array(list) => list.first().cloned(),
            Value::Object(_) => Some(v.clone()),
            _ => None,
        };
        Ok(first.map(|r| {
            let mut rows: Vec<ReservationRow> = r
                .get("orderRows")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(row, line)| {
                    Some(ReservationRow {
                        row_id: row.parse().ok()?,
                        product_id: loose_u64(line.get("productId"))?,
                        quantity: loose_i64(line.get("quantity")).unwrap_or(0),
                    })
                })
                .collect();
            rows.sort_by_key(|r| r.row_id);
            Reservation {
                order_id: loose_u64(r.get("orderId")).unwrap_or(order_id),
                warehouse_id: loose_u64(r.get("warehouseId")).unwrap_or_default(),
                rows,
            }
        }))
    }

    async fn create_customer_payment(&self, p: &NewCustomerPayment) -> Result<u64> {
        let body = customer_payment_body(p);
        let v =
            self.write(Method::POST, "/accounting-service/customer-payment", &body, Replay::Unsafe).await?;
        Self::created_id("customer payment", &v)
    }

    async fn update_order_status(&self, order_id: u64, status_id: u64, note: Option<&str>) -> Result<()> {
        let mut body = json!({"orderStatusId": status_id});
        if let Some(text) = note {
            body["orderNote"] = json!({"text": text, "isPublic": false});
        }
        self.write(Method::PUT, &format!("/order-service/order/{order_id}/status"), &body, Replay::Safe)
            .await?;
        Ok(())
    }

    async fn add_order_note(&self, order_id: u64, text: &str) -> Result<u64> {
        let body = json!({"text": text, "isPublic": false});
        let v = self
            .write(Method::POST, &format!("/order-service/order/{order_id}/note"), &body, Replay::Unsafe)
            .await?;
        Self::created_id("order note", &v)
    }

    async fn goods_out_notes(&self, note_ids: &[u64]) -> Result<Vec<GoodsOutNote>> {
        let items = self
            .get_by_id_sets(note_ids, GOODS_OUT_CHUNK, |set| {
                format!("/warehouse-service/order/*/goods-note/goods-out/{set}")
            })
            .await?;
        let mut notes: Vec<GoodsOutNote> = items
            .iter()
            .filter_map(|v| {
                let id = loose_u64(v.get("__key")).or_else(|| loose_u64(v.get("goodsNoteId")))?;
                let shipped = v
                    .pointer("/status/shipped")
                    .or_else(|| v.get("shipped"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                Some(GoodsOutNote {
                    id,
                    order_id: loose_u64(v.get("orderId"))?,
                    warehouse_id: loose_u64(v.get("warehouseId")),
                    shipped,
                    tracking_reference: v
                        .pointer("/shipping/reference")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                    shipping_method_id: loose_u64(v.pointer("/shipping/shippingMethodId")),
                    carrier: v.pointer("/shipping/carrier").and_then(Value::as_str).map(str::to_string),
                    rows: Self::goods_rows(v.get("orderRows")),
                })
            })
            .collect();
        notes.sort_by_key(|n| n.id);
        Ok(notes)
    }

    async fn goods_in_notes(&self, note_ids: &[u64]) -> Result<Vec<GoodsInNote>> {
        self.goods_in_by(note_ids, |set| format!("/warehouse-service/order/*/goods-note/goods-in/{set}"))
            .await
    }

    async fn goods_in_notes_for_orders(&self, order_ids: &[u64]) -> Result<Vec<GoodsInNote>> {
        self.goods_in_by(order_ids, |set| format!("/warehouse-service/order/{set}/goods-note/goods-in")).await
    }

    async fn create_purchase_order(&self, order: &NewPurchaseOrder) -> Result<CreatedPurchaseOrder> {
        let order_id = self.create_purchase_order_header(order).await?;
        let row_ids = self.add_purchase_order_rows(order_id, &order.rows).await?;
        Ok(CreatedPurchaseOrder { order_id, row_ids })
    }

    async fn create_purchase_order_header(&self, o: &NewPurchaseOrder) -> Result<u64> {
        let mut body = json!({
            "orderTypeCode": "PO",
            "parties": {"supplier": {"contactId": o.supplier_id}},
            "currency": {"orderCurrencyCode": o.currency_code},
        });
        if let Some(r) = &o.reference {
            body["reference"] = json!(r);
        }
        if let Some(w) = o.warehouse_id {
            body["warehouseId"] = json!(w);
        }
        if let Some(s) = o.status_id {
            body["orderStatus"] = json!({"orderStatusId": s});
        }
        if let Some(d) = o.delivery_date {
            body["delivery"] = json!({"deliveryDate": d.to_rfc3339()});
        }
        let v = self.write(Method::POST, "/order-service/order", &body, Replay::Unsafe).await?;
        Self::created_id("purchase order", &v)
    }

    async fn add_purchase_order_rows(&self, order_id: u64, rows: &[NewPurchaseOrderRow]) -> Result<Vec<u64>> {
        let messages: Vec<Message> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| Self::purchase_row_message(order_id, format!("row-{i}"), r))
            .collect();
        let results = self.multi_message(messages).await?;
        let mut ids = Vec::with_capacity(results.len());
        for r in results {
            match r.created_id() {
                Some(id) if r.is_success() => ids.push(id),
                _ => {
                    let (code, message) = r.errors.first().cloned().unwrap_or_default();
                    return Err(Error::Rejected {
                        service: SERVICE,
                        status: r.status,
                        code,
                        message: format!(
                            "PO {order_id} {}: {message} ({} rows added before it)",
                            r.label,
                            ids.len()
                        ),
                    });
                }
            }
        }
        Ok(ids)
    }

    async fn open_purchase_orders(&self, supplier_id: u64) -> Result<Vec<OrderSearchRow>> {
        let closed: Vec<u64> = self
            .order_statuses()
            .await?
            .into_iter()
            .filter(|s| {
                let n = s.name.to_ascii_lowercase();
                ["received", "complete", "closed", "cancel"].iter().any(|w| n.contains(w))
            })
            .map(|s| s.id)
            .collect();
        let rows: Vec<OrderSearchRow> = self
            .search_all(
                "/order-service/order-search",
                &[("orderTypeId", ORDER_TYPE_PURCHASE.to_string()), ("contactId", supplier_id.to_string())],
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.contact_id.is_none_or(|c| c == supplier_id))
            .filter(|r| r.order_status_id.is_none_or(|s| !closed.contains(&s)))
            .collect())
    }

    async fn purchase_orders(&self, ids: &[u64]) -> Result<Vec<PurchaseOrder>> {
        let items =
            self.get_by_id_sets(ids, self.chunk(), |set| format!("/order-service/order/{set}")).await?;
        Ok(items
            .iter()
            .filter_map(|v| {
                Some(PurchaseOrder {
                    id: loose_u64(v.get("id"))?,
                    supplier_id: loose_u64(v.pointer("/parties/supplier/contactId")),
                    status_id: loose_u64(v.pointer("/orderStatus/orderStatusId")),
                    warehouse_id: loose_u64(v.get("warehouseId")),
                    reference: v.get("reference").and_then(Value::as_str).map(str::to_string),
                    rows: Self::order_rows(v),
                })
            })
            .collect())
    }

    async fn primary_suppliers_page(&self, first_result: u64) -> Result<purchasing::PrimarySupplierPage> {
        purchasing::primary_suppliers_page(self, first_result).await
    }

    async fn product_suppliers(&self, ids: &[u64]) -> Result<purchasing::ProductSuppliers> {
        purchasing::product_suppliers(self, ids).await
    }

    async fn purchase_order_statuses(&self) -> Result<Vec<purchasing::PurchaseOrderStatus>> {
        purchasing::purchase_order_statuses(self).await
    }

    async fn purchase_orders_in_statuses(
        &self,
        status_ids: &[u64],
    ) -> Result<Vec<purchasing::PurchaseOrderSearchRow>> {
        purchasing::purchase_orders_in_statuses(self, status_ids).await
    }

    async fn subscribe_webhook(&self, s: &WebhookSubscription) -> Result<u64> {
        let v = self.write(Method::POST, "/integration-service/webhook", &json!(s), Replay::Unsafe).await?;
        Self::created_id("webhook", &v)
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookSubscription>> {
        let v = self.get_many("/integration-service/webhook", &[]).await?.unwrap_or(Value::Array(vec![]));
        from_value("webhook", v)
    }

    async fn multi_message(&self, messages: Vec<Message>) -> Result<Vec<MessageResult>> {
        let mut out = Vec::with_capacity(messages.len());
        let mut rest = messages.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Message> = rest.by_ref().take(MAX_MESSAGES).collect();
            out.extend(self.multi_message_chunk(chunk).await?);
        }
        Ok(out)
    }

    fn stats(&self) -> ClientStats {
        self.client_stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn order_rows_read_both_shapes() {
        let so = json!({"rows": [{"id": 68, "productId": 1010, "quantity": 5, "externalRef": "li-1"}]});
        let rows = BrightpearlClient::order_rows(&so);
        assert_eq!(rows[0].id, 68);
        assert_eq!(rows[0].quantity, 5);
        let po = json!({"orderRows": {"9": {"productId": "1008", "quantity": {"magnitude": "5.0000"}}}});
        let rows = BrightpearlClient::order_rows(&po);
        assert_eq!((rows[0].id, rows[0].product_id, rows[0].quantity), (9, Some(1008), 5));
    }

    #[test]
    fn errors_keep_code_and_message() {
        let body = json!({"errors": [{"code": "CMNC-404", "message": "not found"}]});
        assert_eq!(parse_errors(&body), vec![("CMNC-404".to_string(), "not found".to_string())]);
        assert!(parse_errors(&json!({"response": 1})).is_empty());
    }
}
