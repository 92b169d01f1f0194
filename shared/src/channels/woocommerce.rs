//! WooCommerce (REST v3): webhooks signed like Shopify's, orders in the REST order shape,
//! stock through the products batch endpoint (variations through their parent's batch),
//! tracking through the Shipment Tracking extension with an order note as the fallback.
//!
//! Decisions on points apis.md marks UNCONFIRMED:
//! - `GET /orders?modified_after=` filters on the modification date (core since 5.8).
//! - Stock (variable products: stock on the variation) is in `stock`; tracking (Shipment
//!   Tracking, or an order note without it) in `tracking`.
//! - Dedup key: source + order id + `date_modified_gmt` (+ topic), since Delivery-ID is new on
//!   every delivery.

mod order;
pub mod refund;
mod stock;
mod tracking;

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
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

pub const MAX_BATCH_ITEMS: usize = 100;
const SERVICE: &str = "woocommerce";
const WEBHOOK_TOPICS: [&str; 3] = ["order.created", "order.updated", "order.deleted"];

pub struct WooCommerceChannel {
    store: StoreConfig,
    state: Arc<dyn StateStore>,
    http: Http,
    /// The Shipment Tracking extension's provider names, once read.
    providers: std::sync::Mutex<Option<Vec<String>>>,
}

impl WooCommerceChannel {
    pub fn new(store: StoreConfig, state: Arc<dyn StateStore>) -> Self {
        let http = Http::new(SERVICE, store.max_retries);
        WooCommerceChannel { store, state, http, providers: std::sync::Mutex::new(None) }
    }

    fn url(&self, path: &str) -> String {
        join(&self.store.base_url, &format!("wp-json/{}", path.trim_start_matches('/')))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<Value>,
        retry: Retry,
    ) -> Result<Reply> {
        let key = self.store.consumer_key.expose().to_string();
        let secret = self.store.consumer_secret.expose().to_string();
        let client = self.http.client.clone();
        let build = move || {
            let request =
                client.request(method.clone(), url.clone()).basic_auth(key.as_str(), Some(secret.as_str()));
            match &body {
                Some(body) => request.json(body),
                None => request,
            }
        };
        // No platform rate limit; hosts may still answer 429 (with Retry-After).
        self.http.send(&build, retry, &|_| None).await
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Value> {
        let url = with_query(&self.url(path), params)?;
        self.call(reqwest::Method::GET, url, None, Retry::Idempotent).await?.ok(SERVICE)?.json(SERVICE)
    }

    async fn post(&self, path: &str, body: Value, retry: Retry) -> Result<Reply> {
        let url = with_query(&self.url(path), &[])?;
        self.call(reqwest::Method::POST, url, Some(body), retry).await
    }
}

#[async_trait]
impl SalesChannel for WooCommerceChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Woocommerce
    }

    fn store(&self) -> &StoreConfig {
        &self.store
    }

    fn verify_webhook(&self, headers: &[(String, String)], body: &[u8]) -> Result<WebhookDelivery> {
        let Some(signature) = header(headers, "X-WC-Webhook-Signature") else {
            // The activation ping is the one unsigned delivery: a form body `webhook_id=N`.
            let text = std::str::from_utf8(body).unwrap_or("");
            if let Some(id) = text
                .trim()
                .strip_prefix("webhook_id=")
                .filter(|id| id.chars().all(|c| c.is_ascii_digit()) && !id.is_empty())
            {
                return Ok(WebhookDelivery {
                    dedup_key: format!("woocommerce:{}:ping:{id}", self.store.name),
                    topic: "ping".into(),
                    order_id: None,
                    event: OrderEvent::Updated,
                    payload: None,
                    ping: true,
                });
            }
            return Err(Error::Unauthorized {
                service: SERVICE,
                message: "webhook has no X-WC-Webhook-Signature header".into(),
            });
        };
        if !signature::verify_hmac_sha256_base64(&self.store.webhook_secrets(), body, signature) {
            return Err(Error::Unauthorized {
                service: SERVICE,
                message: "webhook signature does not match".into(),
            });
        }
        let topic = header(headers, "X-WC-Webhook-Topic").unwrap_or_default().to_string();
        let source =
            header(headers, "X-WC-Webhook-Source").unwrap_or_default().trim_end_matches('/').to_string();
        let payload = parse_json(body, "WooCommerce webhook body")?;
        let order_id = id_of(&payload, "id")
            .ok_or_else(|| Error::BadInput("WooCommerce webhook order has no id".into()))?;
        let modified = text(&payload, "date_modified_gmt").unwrap_or_default();
        let cancelled = matches!(text(&payload, "status").as_deref(), Some("cancelled" | "trash"));
        let (event, payload) = match topic.as_str() {
            "order.created" => (OrderEvent::Created, Some(payload)),
            // A deleted order's body is just `{"id": N}` (signed): the writer reads the deletion
            // from that body, not from this header, and cannot fetch the order afterwards.
            "order.deleted" => (OrderEvent::Cancelled, Some(payload)),
            "order.updated" | "order.restored" => {
                (if cancelled { OrderEvent::Cancelled } else { OrderEvent::Updated }, Some(payload))
            }
            other => {
                return Err(Error::BadInput(format!("WooCommerce topic {other:?} is not an order topic")));
            }
        };
        // `date_modified_gmt` has whole seconds: two changes within one second (paid, then
        // refunded) share it, so the body's digest tells them apart; a repeated delivery of
        // one event carries the same body.
        let digest: String = Sha256::digest(body).iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok(WebhookDelivery {
            dedup_key: format!(
                "woocommerce:{}:{source}:{order_id}:{modified}:{topic}:{digest}",
                self.store.name
            ),
            topic,
            order_id: Some(order_id),
            event,
            payload,
            ping: false,
        })
    }

    fn normalise_order(&self, payload: &Value) -> Result<ChannelOrder> {
        normalise(&self.store.name, payload)
    }

    async fn fetch_order(&self, order_id: &str) -> Result<Value> {
        self.get(&format!("wc/v3/orders/{order_id}"), &[]).await
    }

    async fn fetch_refunds(&self, order: &ChannelOrder) -> Result<Vec<super::ChannelRefund>> {
        refund::refunds(
            &self.get(&format!("wc/v3/orders/{}/refunds", order.id), &[("per_page", "100".into())]).await?,
        )
    }

    async fn list_orders_since(&self, since: DateTime<Utc>) -> Result<Vec<super::ListedOrder>> {
        let mut found = Vec::new();
        for page in 1.. {
            let answer = self
                .get(
                    "wc/v3/orders",
                    &[
                        ("modified_after", since.format("%Y-%m-%dT%H:%M:%S").to_string()),
                        ("dates_are_gmt", "true".into()),
                        ("per_page", "100".into()),
                        ("page", page.to_string()),
                        ("_fields", "id,date_modified_gmt,refunds".into()),
                    ],
                )
                .await?;
            let orders = answer.as_array().cloned().unwrap_or_default();
            for order in &orders {
                if let (Some(id), Some(updated_at)) =
                    (id_of(order, "id"), parse_time(order.get("date_modified_gmt")))
                {
                    let refunds = super::ListedRefunds::Ids(refund::refund_ids(order));
                    found.push(super::ListedOrder { id, updated_at, refunds });
                }
            }
            if orders.len() < 100 {
                break;
            }
        }
        Ok(found)
    }

    async fn resolve_skus(&self, skus: &[String]) -> Result<HashMap<String, InventoryTarget>> {
        sku_cache::resolve(self.state.as_ref(), "woocommerce", &self.store.name, skus, |missing| {
            self.lookup_skus(missing)
        })
        .await
    }

    async fn read_quantities(&self, skus: &[String]) -> Result<HashMap<String, i64>> {
        self.read_stock(skus).await
    }

    async fn set_quantities(&self, updates: &[QuantityUpdate]) -> Result<PushReport> {
        self.push_stock(updates).await
    }

    async fn post_fulfilment(&self, order_id: &str, fulfilment: &Fulfilment) -> Result<()> {
        self.post_tracking(order_id, fulfilment).await
    }

    async fn register_webhooks(&self, target_url: &str) -> Result<()> {
        let existing = self.get("wc/v3/webhooks", &[("per_page", "100".into())]).await?;
        let existing: Vec<(String, String)> = existing
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| Some((text(w, "topic")?, text(w, "delivery_url")?)))
            .collect();
        for topic in WEBHOOK_TOPICS {
            if existing.iter().any(|(t, u)| t == topic && u == target_url) {
                continue;
            }
            let body = json!({
                "name": format!("pearlsync {topic}"),
                "topic": topic,
                "delivery_url": target_url,
                "secret": self.store.webhook_secret.expose(),
                "status": "active",
            });
            self.post("wc/v3/webhooks", body, Retry::ThrottleOnly).await?.ok(SERVICE)?;
        }
        Ok(())
    }

    fn stats(&self) -> ChannelStats {
        ChannelStats { requests: self.http.requests(), throttled: self.http.throttled() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::signature::hmac_sha256_base64;
    use crate::secret::Secret;

    fn channel() -> WooCommerceChannel {
        let store = StoreConfig {
            name: "wc".into(),
            kind: ChannelKind::Woocommerce,
            webhook_secret: Secret::literal("wc-secret"),
            ..StoreConfig::default()
        };
        WooCommerceChannel::new(store, Arc::new(crate::state::EmbeddedStore::in_memory().unwrap()))
    }

    fn order() -> Value {
        json!({
            "id": 727, "number": "727", "status": "processing", "currency": "EUR", "prices_include_tax": false,
            "date_created_gmt": "2026-03-01T09:00:00", "date_modified_gmt": "2026-03-01T09:01:00",
            "date_paid_gmt": "2026-03-01T09:00:30", "total": "39.00", "total_tax": "5.00",
            "billing": {"first_name": "Łukasz", "last_name": "Żółć", "address_1": "ul. Długa 1", "city": "Gdańsk",
                "postcode": "80-001", "country": "PL", "email": "", "phone": "+48 1"},
            "shipping": {"first_name": "Łukasz", "last_name": "Żółć", "address_1": "ul. Krótka 2", "city": "Gdańsk", "postcode": "80-002", "country": "PL"},
            "line_items": [
                {"id": 315, "name": "Amber ring", "sku": "RING-1", "quantity": 2, "price": 12.5, "subtotal": "30.00", "total": "25.00", "total_tax": "5.00"},
                {"id": 316, "name": "Sample", "sku": "", "quantity": 1, "price": 0, "subtotal": "0.00", "total": "0.00", "total_tax": "0.00"}
            ],
            "shipping_lines": [{"method_title": "Flat rate", "total": "9.00", "total_tax": "0.00"}]
        })
    }

    fn h(sig: Option<String>, topic: &str) -> Vec<(String, String)> {
        let mut h = vec![
            ("X-WC-Webhook-Topic".to_string(), topic.to_string()),
            ("X-WC-Webhook-Source".to_string(), "https://shop.example/".to_string()),
            ("X-WC-Webhook-Delivery-ID".to_string(), "d1".to_string()),
        ];
        if let Some(sig) = sig {
            h.push(("X-WC-Webhook-Signature".to_string(), sig));
        }
        h
    }

    #[test]
    fn signatures_ping_and_dedup() {
        let c = channel();
        let body = serde_json::to_vec(&order()).unwrap();
        let sig = hmac_sha256_base64(b"wc-secret", &body);
        let d = c.verify_webhook(&h(Some(sig.clone()), "order.created"), &body).unwrap();
        assert!(
            d.dedup_key
                .starts_with("woocommerce:wc:https://shop.example:727:2026-03-01T09:01:00:order.created:"),
            "{}",
            d.dedup_key
        );
        // The same second, another change (another body): another event.
        let mut changed = order();
        changed["status"] = serde_json::json!("refunded");
        let changed = serde_json::to_vec(&changed).unwrap();
        let sig2 = hmac_sha256_base64(b"wc-secret", &changed);
        let d2 = c.verify_webhook(&h(Some(sig2), "order.created"), &changed).unwrap();
        assert_ne!(d.dedup_key, d2.dedup_key);
        assert_eq!(d.event, OrderEvent::Created);
        assert!(!d.is_ping());
        let wrong = hmac_sha256_base64(b"nope", &body);
        assert!(matches!(
            c.verify_webhook(&h(Some(wrong), "order.created"), &body),
            Err(Error::Unauthorized { .. })
        ));
        assert!(matches!(
            c.verify_webhook(&h(None, "order.created"), &body),
            Err(Error::Unauthorized { .. })
        ));
        let mut tampered = body.clone();
        tampered.push(b' ');
        assert!(matches!(
            c.verify_webhook(&h(Some(sig), "order.created"), &tampered),
            Err(Error::Unauthorized { .. })
        ));
        let ping = c.verify_webhook(&h(None, ""), b"webhook_id=12").unwrap();
        assert!(ping.is_ping() && ping.order_id.is_none());
        let deleted = br#"{"id":727}"#;
        let sig = hmac_sha256_base64(b"wc-secret", deleted);
        assert_eq!(
            c.verify_webhook(&h(Some(sig), "order.deleted"), deleted).unwrap().event,
            OrderEvent::Cancelled
        );
    }

    fn dec(s: &str) -> crate::money::Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn normalises_with_empty_email_unicode_zero_price_and_missing_sku() {
        let o = normalise("wc", &order()).unwrap();
        assert_eq!(o.email, None);
        assert_eq!(o.customer_name.as_deref(), Some("Łukasz Żółć"));
        assert!(o.paid);
        // `total` is the line after coupons, ex tax; `subtotal` − `total` the discount.
        assert_eq!((o.lines[0].net, o.lines[0].discount, o.lines[0].tax), (dec("25"), dec("5"), dec("5")));
        assert_eq!((o.lines[1].sku.clone(), o.lines[1].net), (None, dec("0")));
        assert_eq!(o.delivery_address.unwrap().country_code.as_deref(), Some("PL"));
        assert_eq!(o.shipping_lines[0].net, dec("9"));
        assert!(o.updated_at.is_some());
        let mut no_id = order();
        no_id.as_object_mut().unwrap().remove("id");
        assert!(normalise("wc", &no_id).unwrap_err().to_string().contains("id"));
    }
}
