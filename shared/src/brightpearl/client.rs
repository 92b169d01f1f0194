//! The client and the typed calls behind [`BrightpearlApi`]. The wire (pacing, retries, the
//! write-outcome rule) is in `transport`; the typed writes of orders, reservations and
//! payments in `writes`.

use super::budget::{Budget, BudgetSettings, ClientStats, Priority};
use super::config::BrightpearlConfig;
use super::outcome::WriteOutcome;
use super::search::{
    ContactSearchRow, OrderSearchRow, PAGE_SIZE, Period, ProductSearchRow, SalesOrderSearchRow, SearchPage,
};
use super::transport::{Replay, SERVICE};
use super::types::*;
use super::writes::ReservationRequest;
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

/// Goods-out note GETs take up to 500 ids per set.
const GOODS_OUT_CHUNK: usize = 500;
/// A full SKU-map rebuild at least this often, to drop deleted products.
const SKU_MAP_REBUILD: Duration = Duration::from_secs(24 * 3600);
/// Up to this many unknown SKUs are looked up one search each instead of loading the catalogue.
const SKU_LOOKUP_ONE_BY_ONE: usize = 3;
use super::purchasing::{self, ORDER_TYPE_PURCHASE};

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

pub(super) struct OauthTokens {
    pub(super) access: String,
    pub(super) refresh: String,
    /// Epoch ms the access token expires (from `expires_in`); 0 when unknown.
    pub(super) expires_at_ms: i64,
    /// The shared token record has been read once (see `oauth`).
    pub(super) synced: bool,
}

/// The installed integration instance: configured, learned from OAuth, or seen on answers.
#[derive(Default)]
pub(super) struct Instance {
    pub(super) configured: Option<u64>,
    pub(super) oauth: Option<u64>,
    /// Seen on an answer while none was configured (logged for the operator).
    pub(super) learned: Option<u64>,
    /// Seen on an answer and different from the configured one: writes stop.
    pub(super) mismatch: Option<u64>,
}

pub(super) struct Inner {
    pub(super) http: reqwest::Client,
    pub(super) prefix: String,
    pub(super) config: BrightpearlConfig,
    pub(super) tokens: Mutex<OauthTokens>,
    /// Where the OAuth pair is shared between processes; None keeps it in memory only.
    pub(super) token_store: Option<Arc<dyn crate::state::StateStore>>,
    /// Serialises refreshes so concurrent 401s make one grant.
    pub(super) refresh_lock: tokio::sync::Mutex<u64>,
    pub(super) budget: Mutex<Budget>,
    pub(super) rng: Mutex<fastrand::Rng>,
    cache: Mutex<Cache>,
    pub(super) instance: Mutex<Instance>,
    /// Ids Brightpearl refused inside an ID set (deleted or invalid), with its reason.
    refused_ids: Mutex<BTreeMap<u64, String>>,
    /// The running invocation's deadline; no wait goes past it.
    pub(super) deadline: Mutex<Option<Instant>>,
    pub(super) requests: AtomicU64,
    pub(super) throttled: AtomicU64,
    pub(super) retried: AtomicU64,
}

/// The Brightpearl client. Cheap to clone; clones and priority handles share one budget.
#[derive(Clone)]
pub struct BrightpearlClient {
    pub(super) inner: Arc<Inner>,
    pub(super) priority: Priority,
}

impl std::fmt::Debug for BrightpearlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrightpearlClient")
            .field("prefix", &self.inner.prefix)
            .field("priority", &self.priority)
            .finish()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An answer of a shape we did not expect is Brightpearl's (or our reading's) fault, never
/// the job's: retryable, so it does not park the orders that asked.
pub(super) fn bad_shape(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable { service: SERVICE, detail: format!("unexpected Brightpearl {what} shape: {e}") }
}

fn from_value<T: DeserializeOwned>(what: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| bad_shape(what, e))
}

/// Numbers Brightpearl sometimes sends as strings (`"5.0000"`).
pub(super) fn loose_i64(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|f| f.round() as i64),
        _ => None,
    }
}

pub(super) fn loose_u64(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl BrightpearlClient {
    pub fn new(config: BrightpearlConfig) -> Result<Self> {
        Self::with_token_store(config, None)
    }

    /// As `new`, sharing OAuth tokens through `store` (the deployment's state table), so the
    /// functions never present a refresh token another one already spent.
    pub fn with_token_store(
        config: BrightpearlConfig,
        store: Option<Arc<dyn crate::state::StateStore>>,
    ) -> Result<Self> {
        config.validate()?;
        let prefix = config.prefix()?;
        let http = crate::tls::http_client_builder()
            // Per request: `request_timeout_ms`, cut to the invocation's deadline (transport).
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms.max(1)))
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
            expires_at_ms: 0,
            synced: false,
        };
        Ok(BrightpearlClient {
            inner: Arc::new(Inner {
                http,
                prefix,
                tokens: Mutex::new(tokens),
                token_store: store,
                refresh_lock: tokio::sync::Mutex::new(0),
                budget: Mutex::new(budget),
                rng: Mutex::new(fastrand::Rng::new()),
                cache: Mutex::new(Cache::default()),
                instance: Mutex::new(Instance {
                    configured: config.installed_integration_instance_id,
                    ..Instance::default()
                }),
                deadline: Mutex::new(None),
                refused_ids: Mutex::new(BTreeMap::new()),
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

    pub(super) fn created_id(what: &str, v: &Value) -> Result<u64> {
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

    /// ID-set GETs of `chunk` ids each, the array answers concatenated (maps keyed by id keep
    /// the key as `__key`). One invalid or deleted id makes Brightpearl refuse the whole set
    /// with a 400 (apis.md §8.1): such a set is split in halves until the refused ids stand
    /// alone; those are skipped, logged and listed by [`BrightpearlApi::refused_ids`], and the
    /// rest is read.
    async fn get_by_id_sets(
        &self,
        ids: &[u64],
        chunk: usize,
        path: impl Fn(&str) -> String,
    ) -> Result<Vec<Value>> {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut sets: Vec<Vec<u64>> = sorted.chunks(chunk.max(1)).rev().map(<[u64]>::to_vec).collect();
        let mut out = Vec::new();
        while let Some(set) = sets.pop() {
            let answer = match self.get_many(&path(&idset::encode(&set)), &[]).await {
                Ok(answer) => answer,
                Err(Error::Rejected { status: 400, .. }) if set.len() > 1 => {
                    let (head, tail) = set.split_at(set.len() / 2);
                    sets.push(tail.to_vec());
                    sets.push(head.to_vec());
                    continue;
                }
                Err(Error::Rejected { status: 400, code, message, .. }) => {
                    tracing::warn!(
                        id = set[0],
                        code,
                        message,
                        "Brightpearl refuses this id (deleted or invalid); skipped"
                    );
                    lock(&self.inner.refused_ids).insert(set[0], format!("HTTP 400 {code} {message}"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            match answer {
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

    /// A sales order or credit (the credit GET answers the sales-order shape plus `parentId`).
    fn sales_order_of(v: &Value) -> Option<SalesOrder> {
        Some(SalesOrder {
            id: loose_u64(v.get("id"))?,
            customer_id: loose_u64(v.pointer("/customer/id")),
            external_ref: v.get("externalRef").and_then(Value::as_str).map(str::to_string),
            installed_integration_instance_id: loose_u64(v.get("installedIntegrationInstanceId")),
            channel_id: loose_u64(v.get("channelId")),
            status_id: loose_u64(v.get("statusId")),
            warehouse_id: loose_u64(v.get("warehouseId")),
            rows: Self::order_rows(v),
            total_value: v.pointer("/totalValue/total").and_then(|t| crate::money::parse(Some(t)).ok()),
        })
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
        let items = self
            .get_by_id_sets(ids, self.chunk(), |set| format!("/warehouse-service/product-availability/{set}"))
            .await?;
        let mut out = HashMap::new();
        for v in items {
            let Some(id) = loose_u64(v.get("__key")) else { continue };
            out.insert(id, from_value("availability", v)?);
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

    async fn create_sales_orders(&self, orders: &[NewSalesOrder]) -> Vec<WriteOutcome<u64>> {
        self.write_sales_orders(orders).await
    }

    async fn sales_orders(&self, ids: &[u64]) -> Result<Vec<SalesOrder>> {
        let items =
            self.get_by_id_sets(ids, self.chunk(), |set| format!("/order-service/sales-order/{set}")).await?;
        Ok(items.iter().filter_map(Self::sales_order_of).collect())
    }

    async fn sales_credits(&self, ids: &[u64]) -> Result<Vec<SalesOrder>> {
        let items = self
            .get_by_id_sets(ids, self.chunk(), |set| format!("/order-service/sales-credit/{set}"))
            .await?;
        Ok(items.iter().filter_map(Self::sales_order_of).collect())
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

    async fn find_sales_order_id(&self, external_ref: &str) -> Result<Option<u64>> {
        self.sales_order_by_ref(external_ref, self.inner.config.search_lag_retries).await
    }

    async fn reserve_orders(&self, requests: &[ReservationRequest]) -> Vec<WriteOutcome<()>> {
        self.write_reservations(requests).await
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

    async fn create_customer_payments(&self, payments: &[NewCustomerPayment]) -> Vec<WriteOutcome<u64>> {
        self.write_payments(payments).await
    }

    async fn find_customer_payment(&self, order_id: u64, transaction_ref: &str) -> Result<Option<u64>> {
        self.payment_by_ref(order_id, transaction_ref).await
    }

    async fn create_sales_credit(&self, credit: &NewSalesCredit) -> WriteOutcome<u64> {
        self.write_sales_credit(credit).await
    }

    async fn find_sales_credit_id(&self, external_ref: &str) -> Result<Option<u64>> {
        self.sales_credit_by_ref(external_ref, self.inner.config.search_lag_retries).await
    }

    async fn close_sales_credit(&self, credit_id: u64) -> WriteOutcome<()> {
        self.write_close_sales_credit(credit_id).await
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

    async fn goods_out_notes_shipped_since(&self, since: DateTime<Utc>) -> Result<Vec<u64>> {
        let rows: Vec<super::search::GoodsOutSearchRow> = self
            .search_all(
                "/warehouse-service/goods-note/goods-out-search",
                &[("shippedOn", Period::since(since).encode())],
            )
            .await?;
        let mut ids: Vec<u64> = rows.into_iter().map(|r| r.goods_note_id).collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    async fn goods_movements_since(&self, since: DateTime<Utc>) -> Result<Vec<super::GoodsMovement>> {
        self.movements_since(since).await
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
        self.write_purchase_order_rows(order_id, rows).await
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

    fn stats(&self) -> ClientStats {
        self.client_stats()
    }

    fn set_deadline(&self, deadline: Option<Instant>) {
        BrightpearlClient::set_deadline(self, deadline)
    }

    fn budget_view(&self) -> Option<super::BudgetView> {
        Some(lock(&self.inner.budget).view(std::time::Instant::now()))
    }

    fn refused_ids(&self) -> Vec<(u64, String)> {
        lock(&self.inner.refused_ids).iter().map(|(id, why)| (*id, why.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
