//! Shopify: webhooks signed with the app's client secret, orders in the REST order shape,
//! inventory and fulfilment through the GraphQL Admin API.
//!
//! Decisions on points apis.md marks UNCONFIRMED or version-sensitive:
//! - API version 2026-04: every quantity carries `changeFromQuantity` (explicit `null` to skip
//!   the check) and `inventorySetQuantities` always carries `@idempotent(key:)`, one key per
//!   logical batch, reused by every retry of that batch.
//! - Every query stays under Shopify's 1,000-point single-query cap: `cost` works out the
//!   requested cost by Shopify's rules and `graphql` refuses to send anything dearer;
//!   `queries` holds every operation with its page sizes. Stock is in `inventory`,
//!   fulfilment through fulfilment orders in `fulfilment`.
//! - Orders are read through the REST order resource (`orders/{id}.json`), the same shape the
//!   `orders/*` webhooks carry, so one normaliser serves both. REST is legacy but still served
//!   for custom apps; moving `fetch_order` to GraphQL needs a second normaliser.
//! - Throttling: a GraphQL answer whose errors carry `THROTTLED` is retried after
//!   (requested cost − currently available) / restore rate; between calls we pause when the
//!   bucket falls below `LOW_WATER` points.

pub mod cost;
mod fulfilment;
mod inventory;
mod order;
pub mod queries;
pub mod refund;

pub use order::normalise;

use super::http::{Http, Reply, Retry, join, with_query};
use super::{
    ChannelOrder, ChannelStats, Fulfilment, InventoryTarget, PushReport, QuantityUpdate, SalesChannel,
    StoreConfig, WebhookDelivery, header, id_of, parse_json, parse_time, signature, sku_cache, text,
};
use crate::error::{Error, Result};
use crate::queue::{ChannelKind, OrderEvent};
use crate::state::StateStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use queries::{M_WEBHOOK, Q_WEBHOOKS, WEBHOOKS_PAGE};
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

const WEBHOOK_TOPICS: [&str; 4] = ["ORDERS_CREATE", "ORDERS_UPDATED", "ORDERS_CANCELLED", "REFUNDS_CREATE"];

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
        // A query over the cap is refused by Shopify before it runs: a bug of ours, never sent.
        let requested = cost::requested_cost(query, &variables)
            .map_err(|e| Error::BadInput(format!("Shopify query cost cannot be worked out: {e}")))?;
        if requested > cost::MAX_QUERY_COST {
            return Err(Error::BadInput(format!(
                "Shopify query would cost {requested} points, over the {} cap",
                cost::MAX_QUERY_COST
            )));
        }
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
        // A refund body names its order in `order_id`; an order body is the order itself.
        let id_key = if topic == "refunds/create" { "order_id" } else { "id" };
        let order_id = id_of(&payload, id_key)
            .ok_or_else(|| Error::BadInput(format!("Shopify {topic} body has no {id_key}")))?;
        let cancelled = payload.get("cancelled_at").is_some_and(|c| !c.is_null());
        let event = match topic.as_str() {
            "orders/create" => OrderEvent::Created,
            "orders/cancelled" => OrderEvent::Cancelled,
            "refunds/create" => OrderEvent::Refunded,
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

    async fn fetch_refunds(&self, order: &ChannelOrder) -> Result<Vec<super::ChannelRefund>> {
        let url = with_query(
            &join(&self.api_base(), &format!("orders/{}/refunds.json", gid_tail(&order.id))),
            &[],
        )?;
        let reply = self.rest_get(url).await?;
        refund::refunds(&reply.json(SERVICE)?, order.prices_include_tax)
    }

    async fn list_orders_since(&self, since: DateTime<Utc>) -> Result<Vec<super::ListedOrder>> {
        let mut url = with_query(
            &join(&self.api_base(), "orders.json"),
            &[
                ("status", "any".into()),
                ("updated_at_min", since.to_rfc3339()),
                // `refunds` is a top-level field of the Order resource, so `fields` can keep it.
                ("fields", "id,updated_at,refunds".into()),
                ("limit", "250".into()),
            ],
        )?;
        let mut found = Vec::new();
        loop {
            let reply = self.rest_get(url).await?;
            let next = next_link(&reply);
            for order in reply.json(SERVICE)?.get("orders").and_then(Value::as_array).into_iter().flatten() {
                if let (Some(id), Some(updated_at)) =
                    (id_of(order, "id"), parse_time(order.get("updated_at")))
                {
                    let refunds = super::ListedRefunds::Ids(refund::refund_ids(order));
                    found.push(super::ListedOrder { id, updated_at, refunds });
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
        self.push_quantities(updates).await
    }

    async fn post_fulfilment(&self, order_id: &str, fulfilment: &Fulfilment) -> Result<()> {
        self.fulfil(order_id, fulfilment).await
    }

    async fn register_webhooks(&self, target_url: &str) -> Result<()> {
        let mut existing: Vec<(String, String)> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let variables = json!({"first": WEBHOOKS_PAGE, "after": after});
            let data = self.graphql(Q_WEBHOOKS, variables, Retry::Idempotent).await?;
            let page = data.get("webhookSubscriptions").cloned().unwrap_or(Value::Null);
            existing.extend(
                page.get("nodes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|n| Some((text(n, "topic")?, text(n, "uri")?))),
            );
            match inventory::next_cursor(&page) {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
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

    fn dec(s: &str) -> crate::money::Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn normalises_a_realistic_order() {
        let order = normalise("uk", &realistic_order()).unwrap();
        assert_eq!(order.number, "#1001");
        assert_eq!(order.currency, "GBP");
        assert!(order.prices_include_tax && order.paid && !order.cancelled);
        assert_eq!(order.lines.len(), 2);
        let sword = &order.lines[0];
        assert_eq!((sword.sku.as_deref(), sword.quantity), (Some("SWORD-1"), 2));
        // Tax-inclusive: 2 × 24.99 − 5.00 discount − 8.33 tax = 36.65 net.
        assert_eq!((sword.net, sword.tax, sword.discount), (dec("36.65"), dec("8.33"), dec("5.00")));
        // An empty SKU is a missing SKU; a zero-price line is kept.
        assert_eq!(order.lines[1].sku, None);
        assert_eq!(order.lines[1].net, dec("0"));
        assert_eq!(order.shipping_lines[0].tax, dec("0.83"));
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
}
