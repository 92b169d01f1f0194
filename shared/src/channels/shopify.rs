//! Shopify: webhooks signed with the app's client secret, orders in the REST order shape,
//! inventory and fulfilment through the GraphQL Admin API.
//!
//! Decisions on points apis.md marks UNCONFIRMED or version-sensitive:
//! - API version 2026-04: every quantity carries `changeFromQuantity` (explicit `null` to skip
//!   the check) and `inventorySetQuantities` always carries `@idempotent(key:)`, one key per
//!   logical batch, reused by every retry of that batch.
//! - A stale `changeFromQuantity` rejects the whole mutation, and its user errors name the
//!   stale entries by index (`field: ["input","quantities","3","changeFromQuantity"]`). We
//!   re-read those SKUs, report them as conflicts and send the rest again under a new key.
//! - Orders are read through the REST order resource (`orders/{id}.json`), the same shape the
//!   `orders/*` webhooks carry, so one normaliser serves both. REST is legacy but still served
//!   for custom apps; moving `fetch_order` to GraphQL needs a second normaliser.
//! - Throttling: a GraphQL answer whose errors carry `THROTTLED` is retried after
//!   (requested cost − currently available) / restore rate; between calls we pause when the
//!   bucket falls below `LOW_WATER` points.

use super::http::{Http, Reply, Retry, join, with_query};
use super::{
    Address, ChannelOrder, ChannelStats, Fulfilment, InventoryTarget, OrderLine, PushReport, QuantityUpdate,
    SalesChannel, ShippingLine, StoreConfig, WebhookDelivery, header, id_of, join_name, money,
    non_empty_address, parse_json, parse_time, quantity_of, required_id, round4, signature, sku_cache, text,
};
use crate::error::{Error, Result};
use crate::queue::{ChannelKind, OrderEvent};
use crate::state::StateStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_API_VERSION: &str = "2026-04";
/// Shopify rejects any input array longer than 250 items.
pub const MAX_QUANTITIES_PER_CALL: usize = 250;
/// SKUs per `productVariants` search; keeps the query string short.
const SKUS_PER_LOOKUP: usize = 50;
/// Pause between calls when the cost bucket holds fewer points than this.
const LOW_WATER: f64 = 100.0;
const SERVICE: &str = "shopify";

const Q_VARIANTS: &str = "query PearlsyncVariantsBySku($query: String!, $first: Int!) { productVariants(first: $first, query: $query) { nodes { id sku product { id } inventoryItem { id } } } }";
const Q_LEVELS: &str = "query PearlsyncInventoryLevels($ids: [ID!]!, $locationId: ID!) { nodes(ids: $ids) { ... on InventoryItem { id inventoryLevel(locationId: $locationId) { quantities(names: [\"available\"]) { name quantity } } } } }";
const M_SET: &str = "mutation PearlsyncSetQuantities($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) { inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) { inventoryAdjustmentGroup { id } userErrors { code field message } } }";
const Q_FULFILMENT_ORDERS: &str = "query PearlsyncFulfillmentOrders($id: ID!) { order(id: $id) { id fulfillments(first: 50) { id trackingInfo { number } } fulfillmentOrders(first: 50) { nodes { id status lineItems(first: 250) { nodes { id remainingQuantity lineItem { id sku } } } } } } }";
const M_FULFIL: &str = "mutation PearlsyncFulfillmentCreate($fulfillment: FulfillmentInput!) { fulfillmentCreate(fulfillment: $fulfillment) { fulfillment { id status } userErrors { field message } } }";
const Q_WEBHOOKS: &str =
    "query PearlsyncWebhookSubscriptions { webhookSubscriptions(first: 100) { nodes { id topic uri } } }";
const M_WEBHOOK: &str = "mutation PearlsyncWebhookCreate($topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!) { webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) { webhookSubscription { id } userErrors { field message } } }";
const WEBHOOK_TOPICS: [&str; 3] = ["ORDERS_CREATE", "ORDERS_UPDATED", "ORDERS_CANCELLED"];

pub struct ShopifyChannel {
    store: StoreConfig,
    state: Arc<dyn StateStore>,
    http: Http,
}

/// `gid://shopify/{kind}/{id}` unless `id` already is a gid.
pub fn gid(kind: &str, id: &str) -> String {
    if id.starts_with("gid://") { id.to_string() } else { format!("gid://shopify/{kind}/{id}") }
}

/// The numeric tail of a gid (or the id itself).
pub fn gid_tail(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

impl ShopifyChannel {
    pub fn new(store: StoreConfig, state: Arc<dyn StateStore>) -> Self {
        let http = Http::new(SERVICE, store.max_retries);
        ShopifyChannel { store, state, http }
    }

    fn api_base(&self) -> String {
        let version = self.store.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
        join(&self.store.base_url, &format!("admin/api/{version}"))
    }

    fn location_gid(&self) -> Result<String> {
        self.store
            .location_id
            .as_deref()
            .filter(|l| !l.trim().is_empty())
            .map(|l| gid("Location", l.trim()))
            .ok_or_else(|| {
                Error::config(
                    "stores.location_id",
                    format!("Shopify store {} needs a location", self.store.name),
                )
            })
    }

    async fn rest_get(&self, url: reqwest::Url) -> Result<Reply> {
        let token = self.store.access_token.expose().to_string();
        let client = self.http.client.clone();
        let build = move || client.get(url.clone()).header("X-Shopify-Access-Token", token.as_str());
        self.http.send(&build, Retry::Idempotent, &|_| None).await?.ok(SERVICE)
    }

    /// One GraphQL call; returns `data`. Throttles are waited out; other errors are rejections.
    async fn graphql(&self, query: &'static str, variables: Value, retry: Retry) -> Result<Value> {
        let url = join(&self.api_base(), "graphql.json");
        let token = self.store.access_token.expose().to_string();
        let body = json!({ "query": query, "variables": variables });
        let client = self.http.client.clone();
        let build =
            move || client.post(url.as_str()).header("X-Shopify-Access-Token", token.as_str()).json(&body);
        let reply = self.http.send(&build, retry, &throttle_wait).await?.ok(SERVICE)?;
        let answer = reply.json(SERVICE)?;
        if let Some(status) = answer.pointer("/extensions/cost/throttleStatus") {
            let available = status.get("currentlyAvailable").and_then(Value::as_f64).unwrap_or(f64::MAX);
            let restore = status.get("restoreRate").and_then(Value::as_f64).unwrap_or(50.0).max(1.0);
            if available < LOW_WATER {
                self.http.pause_for(Duration::from_secs_f64((LOW_WATER - available) / restore));
            }
        }
        if let Some(errors) = answer.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            let first = &errors[0];
            let code =
                first.pointer("/extensions/code").and_then(Value::as_str).unwrap_or("GRAPHQL").to_string();
            let message = first.get("message").and_then(Value::as_str).unwrap_or("GraphQL error").to_string();
            return Err(Error::Rejected { service: SERVICE, status: 200, code, message });
        }
        Ok(answer.get("data").cloned().unwrap_or(Value::Null))
    }

    async fn lookup_skus(&self, skus: Vec<String>) -> Result<HashMap<String, InventoryTarget>> {
        let location = self.location_gid()?;
        let mut found = HashMap::new();
        for chunk in skus.chunks(SKUS_PER_LOOKUP) {
            let query = chunk
                .iter()
                .map(|sku| format!("sku:\"{}\"", sku.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect::<Vec<_>>()
                .join(" OR ");
            let data =
                self.graphql(Q_VARIANTS, json!({"query": query, "first": 250}), Retry::Idempotent).await?;
            for node in data.pointer("/productVariants/nodes").and_then(Value::as_array).into_iter().flatten()
            {
                let (Some(sku), Some(item)) = (
                    node.get("sku").and_then(Value::as_str),
                    node.pointer("/inventoryItem/id").and_then(Value::as_str),
                ) else {
                    continue;
                };
                // The search is fuzzy; keep exact matches of what we asked for only.
                if chunk.iter().any(|s| s == sku) {
                    found.insert(
                        sku.to_string(),
                        InventoryTarget {
                            item_id: item.to_string(),
                            location_id: location.clone(),
                            parent_id: node
                                .pointer("/product/id")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                        },
                    );
                }
            }
        }
        Ok(found)
    }

    async fn read_levels(&self, targets: &HashMap<String, InventoryTarget>) -> Result<HashMap<String, i64>> {
        let location = self.location_gid()?;
        let by_item: HashMap<&str, &str> =
            targets.iter().map(|(sku, t)| (t.item_id.as_str(), sku.as_str())).collect();
        let ids: Vec<&str> = by_item.keys().copied().collect();
        let mut levels = HashMap::new();
        for chunk in ids.chunks(MAX_QUANTITIES_PER_CALL) {
            let data = self
                .graphql(Q_LEVELS, json!({"ids": chunk, "locationId": location}), Retry::Idempotent)
                .await?;
            for node in data.get("nodes").and_then(Value::as_array).into_iter().flatten() {
                let Some(id) = node.get("id").and_then(Value::as_str) else { continue };
                let quantity = node
                    .pointer("/inventoryLevel/quantities")
                    .and_then(Value::as_array)
                    .and_then(|qs| {
                        qs.iter().find(|q| q.get("name").and_then(Value::as_str) == Some("available"))
                    })
                    .and_then(|q| q.get("quantity").and_then(Value::as_i64));
                if let (Some(sku), Some(quantity)) = (by_item.get(id), quantity) {
                    levels.insert(sku.to_string(), quantity);
                }
            }
        }
        Ok(levels)
    }

    /// One `inventorySetQuantities` call for up to 250 entries; re-sends the non-stale rest once.
    async fn push_batch(
        &self,
        batch: Vec<(QuantityUpdate, InventoryTarget)>,
        report: &mut PushReport,
    ) -> Result<()> {
        let mut pending = batch;
        // Each round removes at least one entry or ends; two rounds cover a stale set plus a resend.
        for _round in 0..3 {
            if pending.is_empty() {
                return Ok(());
            }
            let key = uuid::Uuid::new_v4().to_string();
            let quantities: Vec<Value> = pending
                .iter()
                .map(|(u, t)| {
                    json!({
                        "inventoryItemId": t.item_id,
                        "locationId": t.location_id,
                        "quantity": u.quantity,
                        "changeFromQuantity": u.last_pushed,
                    })
                })
                .collect();
            let variables = json!({
                "input": {
                    "name": "available",
                    "reason": "correction",
                    "referenceDocumentUri": format!("gid://pearlsync/InventorySync/{key}"),
                    "quantities": quantities,
                },
                "idempotencyKey": key,
            });
            let data = self.graphql(M_SET, variables, Retry::Idempotent).await?;
            let errors: Vec<Value> = data
                .pointer("/inventorySetQuantities/userErrors")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if errors.is_empty() {
                report.pushed.extend(pending.into_iter().map(|(u, _)| u.sku));
                return Ok(());
            }
            let mut stale = Vec::new();
            let mut rejected: HashMap<usize, String> = HashMap::new();
            for error in &errors {
                let code = error.get("code").and_then(Value::as_str).unwrap_or("");
                let message = error.get("message").and_then(Value::as_str).unwrap_or(code).to_string();
                match error_index(error) {
                    Some(i) if i < pending.len() => {
                        if code == "CHANGE_FROM_QUANTITY_STALE" || code == "COMPARE_QUANTITY_STALE" {
                            stale.push(i);
                        } else {
                            rejected.insert(i, format!("{code}: {message}"));
                        }
                    }
                    _ => {
                        // Not tied to one entry: the whole batch failed for this reason.
                        report
                            .failed
                            .extend(pending.drain(..).map(|(u, _)| (u.sku, format!("{code}: {message}"))));
                        return Ok(());
                    }
                }
            }
            let mut rest = Vec::new();
            let mut stale_targets = HashMap::new();
            for (i, entry) in pending.into_iter().enumerate() {
                if stale.contains(&i) {
                    stale_targets.insert(entry.0.sku.clone(), entry.1);
                } else if let Some(reason) = rejected.remove(&i) {
                    report.failed.push((entry.0.sku, reason));
                } else {
                    rest.push(entry);
                }
            }
            if !stale_targets.is_empty() {
                let current = self.read_levels(&stale_targets).await?;
                for sku in stale_targets.into_keys() {
                    match current.get(&sku) {
                        Some(q) => report.conflicts.push((sku, *q)),
                        None => report.failed.push((sku, "stale, and the re-read found no level".into())),
                    }
                }
            }
            pending = rest;
        }
        report
            .failed
            .extend(pending.into_iter().map(|(u, _)| (u.sku, "kept failing compare-and-set".to_string())));
        Ok(())
    }
}

/// `["input","quantities","3","changeFromQuantity"]` → 3.
fn error_index(error: &Value) -> Option<usize> {
    let field = error.get("field")?.as_array()?;
    let pos = field.iter().position(|f| f.as_str() == Some("quantities"))?;
    field.get(pos + 1)?.as_str()?.parse().ok()
}

/// How long to wait when a GraphQL answer says THROTTLED.
fn throttle_wait(reply: &Reply) -> Option<Duration> {
    if reply.status != 200 {
        return None;
    }
    let answer: Value = serde_json::from_slice(&reply.body).ok()?;
    let throttled = answer
        .get("errors")?
        .as_array()?
        .iter()
        .any(|e| e.pointer("/extensions/code").and_then(Value::as_str) == Some("THROTTLED"));
    if !throttled {
        return None;
    }
    let cost = answer.pointer("/extensions/cost");
    let requested = cost.and_then(|c| c.get("requestedQueryCost")).and_then(Value::as_f64).unwrap_or(10.0);
    let status = cost.and_then(|c| c.get("throttleStatus"));
    let available = status.and_then(|s| s.get("currentlyAvailable")).and_then(Value::as_f64).unwrap_or(0.0);
    let restore = status.and_then(|s| s.get("restoreRate")).and_then(Value::as_f64).unwrap_or(50.0).max(1.0);
    Some(Duration::from_secs_f64(((requested - available).max(1.0)) / restore))
}

fn address(value: Option<&Value>, email: Option<&String>) -> Option<Address> {
    let a = value.filter(|v| v.is_object())?;
    non_empty_address(Address {
        full_name: text(a, "name").or_else(|| join_name(text(a, "first_name"), text(a, "last_name"))),
        company: text(a, "company"),
        line1: text(a, "address1"),
        line2: text(a, "address2"),
        line3: text(a, "city"),
        line4: text(a, "province").or_else(|| text(a, "province_code")),
        postcode: text(a, "zip"),
        country_code: text(a, "country_code"),
        phone: text(a, "phone"),
        email: email.cloned(),
    })
}

fn sum_of(items: Option<&Value>, key: &str) -> Result<f64> {
    let mut total = 0.0;
    for item in items.and_then(Value::as_array).into_iter().flatten() {
        total += money(item.get(key))?;
    }
    Ok(round4(total))
}

/// The REST order resource (webhook body or `orders/{id}.json`) as a `ChannelOrder`.
pub fn normalise(store: &str, order: &Value) -> Result<ChannelOrder> {
    if !order.is_object() {
        return Err(Error::BadInput("Shopify order is not a JSON object".into()));
    }
    let id = required_id(order, "id", "Shopify order")?;
    let currency = text(order, "currency")
        .or_else(|| text(order, "presentment_currency"))
        .ok_or_else(|| Error::BadInput(format!("Shopify order {id} has no currency")))?;
    let customer = order.get("customer").filter(|c| c.is_object());
    let email = text(order, "email")
        .or_else(|| text(order, "contact_email"))
        .or_else(|| customer.and_then(|c| text(c, "email")));
    let billing = address(order.get("billing_address"), email.as_ref());
    let delivery = address(order.get("shipping_address"), email.as_ref());
    let customer_name = customer
        .and_then(|c| join_name(text(c, "first_name"), text(c, "last_name")))
        .or_else(|| billing.as_ref().and_then(|a| a.full_name.clone()))
        .or_else(|| delivery.as_ref().and_then(|a| a.full_name.clone()));
    let items = order
        .get("line_items")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::BadInput(format!("Shopify order {id} has no line_items")))?;
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let what = format!("Shopify order {id} line {}", i + 1);
        let line_id = required_id(item, "id", &what)?;
        let discount = match item.get("discount_allocations").and_then(Value::as_array) {
            Some(_) => sum_of(item.get("discount_allocations"), "amount")?,
            None => money(item.get("total_discount"))?,
        };
        lines.push(OrderLine {
            line_id,
            sku: text(item, "sku"),
            name: text(item, "title").or_else(|| text(item, "name")).unwrap_or_default(),
            quantity: quantity_of(item, &what)?,
            unit_price: money(item.get("price"))?,
            tax: sum_of(item.get("tax_lines"), "price")?,
            discount,
        });
    }
    let mut shipping_lines = Vec::new();
    for line in order.get("shipping_lines").and_then(Value::as_array).into_iter().flatten() {
        shipping_lines.push(ShippingLine {
            title: text(line, "title").unwrap_or_else(|| "Shipping".into()),
            price: money(line.get("price"))?,
            tax: sum_of(line.get("tax_lines"), "price")?,
        });
    }
    let financial = text(order, "financial_status").unwrap_or_default();
    Ok(ChannelOrder {
        channel: ChannelKind::Shopify,
        store: store.to_string(),
        number: text(order, "name").or_else(|| text(order, "order_number")).unwrap_or_else(|| id.clone()),
        id,
        email,
        customer_name,
        phone: text(order, "phone").or_else(|| customer.and_then(|c| text(c, "phone"))),
        billing_address: billing,
        delivery_address: delivery,
        currency,
        prices_include_tax: order.get("taxes_included").and_then(Value::as_bool).unwrap_or(false),
        lines,
        shipping_lines,
        total: money(order.get("total_price"))?,
        total_tax: money(order.get("total_tax"))?,
        paid: matches!(financial.as_str(), "paid" | "partially_refunded"),
        cancelled: order.get("cancelled_at").is_some_and(|c| !c.is_null()),
        created_at: parse_time(order.get("created_at")),
        updated_at: parse_time(order.get("updated_at")),
    })
}

/// The `rel="next"` URL of a REST `Link` header.
fn next_link(reply: &Reply) -> Option<String> {
    let link = reply.header("link")?;
    link.split(',').find(|part| part.contains("rel=\"next\"")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        part.get(start..end).map(str::to_string)
    })
}

#[async_trait]
impl SalesChannel for ShopifyChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Shopify
    }

    fn store(&self) -> &StoreConfig {
        &self.store
    }

    fn verify_webhook(&self, headers: &[(String, String)], body: &[u8]) -> Result<WebhookDelivery> {
        let signature = header(headers, "X-Shopify-Hmac-Sha256").ok_or_else(|| Error::Unauthorized {
            service: SERVICE,
            message: "webhook has no X-Shopify-Hmac-Sha256 header".into(),
        })?;
        if !signature::verify_hmac_sha256_base64(&self.store.webhook_secrets(), body, signature) {
            return Err(Error::Unauthorized {
                service: SERVICE,
                message: "webhook signature does not match".into(),
            });
        }
        let topic = header(headers, "X-Shopify-Topic").unwrap_or_default().to_string();
        let event_id = header(headers, "X-Shopify-Event-Id")
            .or_else(|| header(headers, "X-Shopify-Webhook-Id"))
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                Error::BadInput(
                    "Shopify webhook has neither X-Shopify-Event-Id nor X-Shopify-Webhook-Id".into(),
                )
            })?;
        let payload = parse_json(body, "Shopify webhook body")?;
        let order_id =
            id_of(&payload, "id").ok_or_else(|| Error::BadInput("Shopify webhook order has no id".into()))?;
        let cancelled = payload.get("cancelled_at").is_some_and(|c| !c.is_null());
        let event = match topic.as_str() {
            "orders/create" => OrderEvent::Created,
            "orders/cancelled" => OrderEvent::Cancelled,
            t if t.starts_with("orders/") => {
                if cancelled {
                    OrderEvent::Cancelled
                } else {
                    OrderEvent::Updated
                }
            }
            other => return Err(Error::BadInput(format!("Shopify topic {other:?} is not an order topic"))),
        };
        Ok(WebhookDelivery {
            dedup_key: format!("shopify:{}:{}", self.store.name, event_id.trim()),
            topic,
            order_id: Some(order_id),
            event,
            payload: Some(payload),
            ping: false,
        })
    }

    fn normalise_order(&self, payload: &Value) -> Result<ChannelOrder> {
        normalise(&self.store.name, payload)
    }

    async fn fetch_order(&self, order_id: &str) -> Result<Value> {
        let url = with_query(&join(&self.api_base(), &format!("orders/{}.json", gid_tail(order_id))), &[])?;
        let reply = self.rest_get(url).await?;
        reply.json(SERVICE)?.get("order").cloned().ok_or_else(|| Error::Unavailable {
            service: SERVICE,
            detail: "order answer has no order".into(),
        })
    }

    async fn list_orders_since(&self, since: DateTime<Utc>) -> Result<Vec<(String, DateTime<Utc>)>> {
        let mut url = with_query(
            &join(&self.api_base(), "orders.json"),
            &[
                ("status", "any".into()),
                ("updated_at_min", since.to_rfc3339()),
                ("fields", "id,updated_at".into()),
                ("limit", "250".into()),
            ],
        )?;
        let mut found = Vec::new();
        loop {
            let reply = self.rest_get(url).await?;
            let next = next_link(&reply);
            for order in reply.json(SERVICE)?.get("orders").and_then(Value::as_array).into_iter().flatten() {
                if let (Some(id), Some(at)) = (id_of(order, "id"), parse_time(order.get("updated_at"))) {
                    found.push((id, at));
                }
            }
            match next {
                Some(next) => url = with_query(&next, &[])?,
                None => return Ok(found),
            }
        }
    }

    async fn resolve_skus(&self, skus: &[String]) -> Result<HashMap<String, InventoryTarget>> {
        sku_cache::resolve(self.state.as_ref(), "shopify", &self.store.name, skus, |missing| {
            self.lookup_skus(missing)
        })
        .await
    }

    async fn read_quantities(&self, skus: &[String]) -> Result<HashMap<String, i64>> {
        let targets = self.resolve_skus(skus).await?;
        self.read_levels(&targets).await
    }

    async fn set_quantities(&self, updates: &[QuantityUpdate]) -> Result<PushReport> {
        let before = self.http.requests();
        let skus: Vec<String> = updates.iter().map(|u| u.sku.clone()).collect();
        let targets = self.resolve_skus(&skus).await?;
        let mut report = PushReport::default();
        let mut entries = Vec::with_capacity(updates.len());
        for update in updates {
            match targets.get(&update.sku) {
                Some(target) => entries.push((update.clone(), target.clone())),
                None => report.failed.push((update.sku.clone(), "SKU not found on Shopify".into())),
            }
        }
        for batch in entries.chunks(MAX_QUANTITIES_PER_CALL) {
            self.push_batch(batch.to_vec(), &mut report).await?;
        }
        report.requests = self.http.requests() - before;
        tracing::info!(
            store = %self.store.name,
            pushed = report.pushed.len(),
            conflicts = report.conflicts.len(),
            failed = report.failed.len(),
            requests = report.requests,
            "shopify quantities set"
        );
        Ok(report)
    }

    async fn post_fulfilment(&self, order_id: &str, fulfilment: &Fulfilment) -> Result<()> {
        let order_gid = gid("Order", order_id);
        let data = self.graphql(Q_FULFILMENT_ORDERS, json!({"id": order_gid}), Retry::Idempotent).await?;
        let order = data
            .get("order")
            .filter(|o| o.is_object())
            .ok_or_else(|| Error::BadInput(format!("Shopify order {order_id} not found")))?;
        let already =
            order.get("fulfillments").and_then(Value::as_array).into_iter().flatten().any(|f| {
                f.get("trackingInfo").and_then(Value::as_array).into_iter().flatten().any(|t| {
                    t.get("number").and_then(Value::as_str) == Some(fulfilment.tracking_number.as_str())
                })
            });
        if already {
            tracing::info!(store = %self.store.name, order_id, "fulfilment with this tracking number exists; skipped");
            return Ok(());
        }
        // (fulfillment order id, line item id, sku, channel line id, remaining)
        let mut open = Vec::new();
        for fo in order.pointer("/fulfillmentOrders/nodes").and_then(Value::as_array).into_iter().flatten() {
            let status = fo.get("status").and_then(Value::as_str).unwrap_or("");
            if !matches!(status, "OPEN" | "IN_PROGRESS") {
                continue;
            }
            let Some(fo_id) = fo.get("id").and_then(Value::as_str) else { continue };
            for li in fo.pointer("/lineItems/nodes").and_then(Value::as_array).into_iter().flatten() {
                let remaining = li.get("remainingQuantity").and_then(Value::as_u64).unwrap_or(0);
                let (Some(li_id), true) = (li.get("id").and_then(Value::as_str), remaining > 0) else {
                    continue;
                };
                let sku = li.pointer("/lineItem/sku").and_then(Value::as_str).unwrap_or("").to_string();
                let line = li.pointer("/lineItem/id").and_then(Value::as_str).unwrap_or("").to_string();
                open.push((fo_id.to_string(), li_id.to_string(), sku, line, remaining));
            }
        }
        let mut picked: Vec<(String, String, u64)> = Vec::new();
        if fulfilment.lines.is_empty() {
            picked = open.iter().map(|(fo, li, _, _, r)| (fo.clone(), li.clone(), *r)).collect();
        }
        for (key, quantity) in &fulfilment.lines {
            let mut needed = u64::from(*quantity);
            for (fo, li, sku, line, remaining) in open.iter_mut() {
                let matches = sku == key || line == key || gid_tail(line) == key.as_str();
                if needed == 0 || !matches || *remaining == 0 {
                    continue;
                }
                let take = needed.min(*remaining);
                *remaining -= take;
                needed -= take;
                picked.push((fo.clone(), li.clone(), take));
            }
            if needed > 0 {
                tracing::warn!(store = %self.store.name, order_id, line = %key, unmatched = needed, "shipped more than is open on Shopify");
            }
        }
        if picked.is_empty() {
            return Err(Error::BadInput(format!(
                "Shopify order {order_id} has nothing open for these lines"
            )));
        }
        let mut by_fo: Vec<(String, Vec<Value>)> = Vec::new();
        for (fo, li, quantity) in picked {
            let entry = json!({"id": li, "quantity": quantity});
            match by_fo.iter_mut().find(|(id, _)| *id == fo) {
                Some((_, items)) => items.push(entry),
                None => by_fo.push((fo, vec![entry])),
            }
        }
        let line_items: Vec<Value> = by_fo
            .into_iter()
            .map(|(fo, items)| json!({"fulfillmentOrderId": fo, "fulfillmentOrderLineItems": items}))
            .collect();
        let mut tracking = json!({"company": fulfilment.carrier, "number": fulfilment.tracking_number});
        if let Some(url) = &fulfilment.tracking_url {
            tracking["url"] = json!(url);
        }
        let variables = json!({"fulfillment": {
            "lineItemsByFulfillmentOrder": line_items,
            "notifyCustomer": true,
            "trackingInfo": tracking,
        }});
        let data = self.graphql(M_FULFIL, variables, Retry::ThrottleOnly).await?;
        if let Some(refused) = user_error(&data, "/fulfillmentCreate/userErrors") {
            return Err(refused);
        }
        Ok(())
    }

    async fn register_webhooks(&self, target_url: &str) -> Result<()> {
        let data = self.graphql(Q_WEBHOOKS, json!({}), Retry::Idempotent).await?;
        let existing: Vec<(String, String)> = data
            .pointer("/webhookSubscriptions/nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|n| Some((text(n, "topic")?, text(n, "uri")?)))
            .collect();
        for topic in WEBHOOK_TOPICS {
            if existing.iter().any(|(t, u)| t == topic && u == target_url) {
                continue;
            }
            let variables =
                json!({"topic": topic, "webhookSubscription": {"uri": target_url, "format": "JSON"}});
            let data = self.graphql(M_WEBHOOK, variables, Retry::ThrottleOnly).await?;
            if let Some(refused) = user_error(&data, "/webhookSubscriptionCreate/userErrors") {
                return Err(refused);
            }
        }
        Ok(())
    }

    fn stats(&self) -> ChannelStats {
        ChannelStats { requests: self.http.requests(), throttled: self.http.throttled() }
    }
}

/// The first of a mutation's `userErrors` at `pointer`, as the refusal it is (GraphQL answers 200).
fn user_error(data: &Value, pointer: &str) -> Option<Error> {
    let error = data.pointer(pointer).and_then(Value::as_array).and_then(|e| e.first())?;
    let message = error.get("message").and_then(Value::as_str).unwrap_or("refused").to_string();
    Some(Error::Rejected { service: SERVICE, status: 200, code: "USER_ERROR".into(), message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::signature::hmac_sha256_base64;
    use crate::secret::Secret;

    fn channel() -> ShopifyChannel {
        let store = StoreConfig {
            name: "uk".into(),
            webhook_secret: Secret::literal("shpss_current"),
            previous_webhook_secret: Some(Secret::literal("shpss_old")),
            ..StoreConfig::default()
        };
        ShopifyChannel::new(store, Arc::new(crate::state::EmbeddedStore::in_memory().unwrap()))
    }

    fn headers(sig: Option<String>, topic: &str) -> Vec<(String, String)> {
        let mut h = vec![
            ("x-shopify-topic".to_string(), topic.to_string()),
            ("X-Shopify-Event-Id".to_string(), "evt-1".to_string()),
            ("X-Shopify-Webhook-Id".to_string(), "wh-1".to_string()),
        ];
        if let Some(sig) = sig {
            h.push(("X-Shopify-Hmac-Sha256".to_string(), sig));
        }
        h
    }

    fn realistic_order() -> Value {
        json!({
            "id": 820982911946154508u64, "name": "#1001", "order_number": 1001,
            "email": "jon@example.com", "phone": null, "currency": "GBP", "taxes_included": true,
            "total_price": "64.98", "total_tax": "10.83", "financial_status": "paid", "cancelled_at": null,
            "created_at": "2026-03-01T10:00:00+00:00", "updated_at": "2026-03-01T10:05:00+00:00",
            "customer": {"first_name": "Jon", "last_name": "Snow", "email": "jon@example.com"},
            "billing_address": {"first_name": "Jon", "last_name": "Snow", "address1": "1 Wall St", "city": "Winterfell", "zip": "NW1 1AA", "country_code": "GB", "province": "North"},
            "shipping_address": {"name": "Jon Snow", "company": "Night's Watch", "address1": "Castle Black", "address2": null, "city": "The Wall", "zip": "W1", "country_code": "GB", "phone": "+44 1"},
            "line_items": [
                {"id": 1, "sku": "SWORD-1", "title": "Longclaw", "quantity": 2, "price": "24.99",
                 "tax_lines": [{"price": "8.33", "rate": 0.2}], "discount_allocations": [{"amount": "5.00"}]},
                {"id": 2, "sku": "", "title": "Gift note", "quantity": 1, "price": "0.00", "tax_lines": []}
            ],
            "shipping_lines": [{"title": "Raven", "price": "5.00", "tax_lines": [{"price": "0.83"}]}]
        })
    }

    #[test]
    fn signatures_good_bad_missing_tampered_rotated() {
        let c = channel();
        let body = serde_json::to_vec(&realistic_order()).unwrap();
        let good = hmac_sha256_base64(b"shpss_current", &body);
        let delivery = c.verify_webhook(&headers(Some(good.clone()), "orders/create"), &body).unwrap();
        assert_eq!(delivery.dedup_key, "shopify:uk:evt-1");
        assert_eq!(delivery.event, OrderEvent::Created);
        assert_eq!(delivery.order_id.as_deref(), Some("820982911946154508"));
        assert!(delivery.payload.is_some());

        let old = hmac_sha256_base64(b"shpss_old", &body);
        assert!(c.verify_webhook(&headers(Some(old), "orders/create"), &body).is_ok());

        let wrong = hmac_sha256_base64(b"someone-else", &body);
        for h in [
            headers(Some(wrong), "orders/create"),
            headers(None, "orders/create"),
            headers(Some("bad".into()), "orders/create"),
        ] {
            assert!(matches!(c.verify_webhook(&h, &body), Err(Error::Unauthorized { .. })));
        }
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert!(matches!(
            c.verify_webhook(&headers(Some(good), "orders/create"), &tampered),
            Err(Error::Unauthorized { .. })
        ));

        let garbage = b"not json";
        let sig = hmac_sha256_base64(b"shpss_current", garbage);
        assert!(matches!(
            c.verify_webhook(&headers(Some(sig), "orders/create"), garbage),
            Err(Error::BadInput(_))
        ));
    }

    #[test]
    fn cancelled_updates_are_cancel_events() {
        let c = channel();
        let mut order = realistic_order();
        order["cancelled_at"] = json!("2026-03-02T00:00:00Z");
        let body = serde_json::to_vec(&order).unwrap();
        let sig = hmac_sha256_base64(b"shpss_current", &body);
        let delivery = c.verify_webhook(&headers(Some(sig), "orders/updated"), &body).unwrap();
        assert_eq!(delivery.event, OrderEvent::Cancelled);
    }

    #[test]
    fn normalises_a_realistic_order() {
        let order = normalise("uk", &realistic_order()).unwrap();
        assert_eq!(order.number, "#1001");
        assert_eq!(order.currency, "GBP");
        assert!(order.prices_include_tax && order.paid && !order.cancelled);
        assert_eq!(order.lines.len(), 2);
        let sword = &order.lines[0];
        assert_eq!((sword.sku.as_deref(), sword.quantity, sword.unit_price), (Some("SWORD-1"), 2, 24.99));
        assert_eq!((sword.tax, sword.discount), (8.33, 5.0));
        // An empty SKU is a missing SKU; a zero-price line is kept.
        assert_eq!(order.lines[1].sku, None);
        assert_eq!(order.lines[1].unit_price, 0.0);
        assert_eq!(order.shipping_lines[0].tax, 0.83);
        let delivery = order.delivery_address.unwrap();
        assert_eq!(delivery.full_name.as_deref(), Some("Jon Snow"));
        assert_eq!(delivery.line3.as_deref(), Some("The Wall"));
        assert_eq!(order.billing_address.unwrap().line4.as_deref(), Some("North"));
        assert_eq!(order.customer_name.as_deref(), Some("Jon Snow"));
        assert!(order.updated_at.is_some());
    }

    #[test]
    fn odd_orders_no_email_unicode_and_missing_parts() {
        let mut raw = realistic_order();
        raw["email"] = Value::Null;
        raw["customer"] = json!({"first_name": "Zoë", "last_name": "Ångström-李"});
        let order = normalise("uk", &raw).unwrap();
        assert_eq!(order.email, None);
        assert_eq!(order.customer_name.as_deref(), Some("Zoë Ångström-李"));

        let mut no_currency = realistic_order();
        no_currency.as_object_mut().unwrap().remove("currency");
        let err = normalise("uk", &no_currency).unwrap_err().to_string();
        assert!(err.contains("currency"), "{err}");

        let mut no_lines = realistic_order();
        no_lines.as_object_mut().unwrap().remove("line_items");
        assert!(normalise("uk", &no_lines).unwrap_err().to_string().contains("line_items"));

        let mut bad_quantity = realistic_order();
        bad_quantity["line_items"][0]["quantity"] = json!("lots");
        assert!(normalise("uk", &bad_quantity).unwrap_err().to_string().contains("quantity"));
    }

    #[test]
    fn stale_indices_are_read_from_the_field_path() {
        let e = json!({"code": "CHANGE_FROM_QUANTITY_STALE", "field": ["input", "quantities", "7", "changeFromQuantity"]});
        assert_eq!(error_index(&e), Some(7));
        assert_eq!(error_index(&json!({"field": ["input"]})), None);
    }
}
