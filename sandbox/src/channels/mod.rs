//! Simulated Shopify, BigCommerce and WooCommerce stores (issue 4): stateful products,
//! inventory, orders, fulfilments and webhook subscriptions behind the real paths, with each
//! API's batch maximum and rate limit, fault injection, and signed webhook deliveries.

// Handlers short-circuit with a ready `Response` as the error; boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod bigcommerce;
mod control;
mod merchant;
mod pricing;
mod refunds;
mod shopify;
mod woocommerce;

pub use pricing::OrderMoney;

use crate::faults::{Fault, FaultInjector, FaultRates};
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Shopify,
    Bigcommerce,
    Woocommerce,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Shopify, Channel::Bigcommerce, Channel::Woocommerce];

    fn index(self) -> usize {
        match self {
            Channel::Shopify => 0,
            Channel::Bigcommerce => 1,
            Channel::Woocommerce => 2,
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "shopify" => Some(Channel::Shopify),
            "bigcommerce" => Some(Channel::Bigcommerce),
            "woocommerce" => Some(Channel::Woocommerce),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChannelSandboxConfig {
    /// Shopify signs webhooks with the app's client secret.
    pub shopify_client_secret: String,
    pub shopify_location_id: u64,
    /// Cost bucket: size and restore rate (points per second).
    pub shopify_bucket: f64,
    pub shopify_restore_rate: f64,
    pub bigcommerce_store_hash: String,
    pub bigcommerce_location_id: u64,
    /// Requests per window, shared by every caller of the store.
    pub bigcommerce_quota: u64,
    pub bigcommerce_window_ms: u64,
    /// Whether the WooCommerce site has the Shipment Tracking extension.
    pub woocommerce_shipment_tracking: bool,
    pub fault_seed: u64,
}

impl Default for ChannelSandboxConfig {
    fn default() -> Self {
        ChannelSandboxConfig {
            shopify_client_secret: "shopify-client-secret".into(),
            shopify_location_id: 1,
            shopify_bucket: 2000.0,
            shopify_restore_rate: 100.0,
            bigcommerce_store_hash: "sandbox".into(),
            bigcommerce_location_id: 1,
            bigcommerce_quota: 150,
            bigcommerce_window_ms: 30_000,
            woocommerce_shipment_tracking: true,
            fault_seed: 7,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Product {
    pub sku: String,
    pub product_id: u64,
    pub variant_id: u64,
    pub inventory_item_id: u64,
    pub name: String,
    pub price: f64,
    pub quantity: i64,
    /// Shopify parent bundle (`requiresComponents`): the API refuses to set its stock.
    pub requires_components: bool,
    /// Shopify: whether the item is stocked at the store's location.
    pub stocked: bool,
    /// WooCommerce variation: the variable product it belongs to.
    pub parent_id: Option<u64>,
    /// WooCommerce variable product: its stock lives on its variations.
    pub variable: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub line_id: u64,
    pub fo_line_id: u64,
    pub sku: Option<String>,
    pub name: String,
    pub quantity: u32,
    pub price: f64,
    pub shipped: u32,
    pub product: Option<(u64, u64)>,
    /// WooCommerce: the variable product of a variation line.
    pub parent: Option<u64>,
    /// Shopify: the location whose fulfilment order holds the line.
    pub location_id: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub id: u64,
    pub number: u64,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub currency: String,
    pub lines: Vec<Line>,
    pub address_id: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub cancelled: bool,
    pub fulfilments: Vec<SandboxFulfilment>,
    pub notes: Vec<String>,
    /// Shopify fulfilment orders: (id, location), one per location holding lines.
    pub fulfillment_orders: Vec<(u64, u64)>,
    /// How the shop priced it (default: no tax, no discount, 5.00 shipping).
    pub money: OrderMoney,
    /// Whether the customer has paid (false: awaiting payment, paid later).
    pub paid: bool,
    /// Shopify, while unpaid: authorised, or captured in part (minor units captured).
    pub authorized: bool,
    pub captured: Option<i64>,
    pub refunds: Vec<refunds::ShopRefund>,
}

impl Order {
    pub fn fully_shipped(&self) -> bool {
        self.lines.iter().all(|l| l.shipped >= l.quantity)
    }
}

/// A shipment recorded by the simulated store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxFulfilment {
    pub tracking_number: String,
    pub carrier: String,
    pub tracking_url: Option<String>,
    /// (SKU, or line id when the line has no SKU; quantity). Empty for WooCommerce tracking,
    /// which does not name lines.
    pub lines: Vec<(String, u32)>,
    /// Shopify: the location the fulfilment was made at.
    #[serde(default)]
    pub location_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxWebhook {
    pub id: u64,
    pub topic: String,
    pub address: String,
    pub headers: BTreeMap<String, String>,
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCounters {
    /// Requests per endpoint name (e.g. `graphql:inventorySetQuantities`, `inventory/absolute`).
    pub requests: BTreeMap<String, u64>,
    pub throttles_sent: u64,
    /// Inventory write calls that were applied, and the most items seen in one of them.
    pub batch_calls: u64,
    pub max_batch_seen: usize,
    /// Inventory write calls refused for size.
    pub oversized_batches: u64,
    pub webhooks_sent: u64,
    /// Shopify: the highest requested query cost seen, and queries refused as over the cap.
    pub max_query_cost_seen: u64,
    pub queries_over_cost: u64,
    /// Shopify: answers of `IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED` sent.
    pub spent_keys_refused: u64,
}

impl ChannelCounters {
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
    pub fn count(&self, endpoint: &str) -> u64 {
        self.requests.get(endpoint).copied().unwrap_or(0)
    }
}

#[derive(Default)]
pub(crate) struct Shop {
    pub products: Vec<Product>,
    pub orders: BTreeMap<u64, Order>,
    pub hooks: Vec<SandboxWebhook>,
    pub next_id: u64,
    pub counters: ChannelCounters,
    /// Shopify idempotency keys: key → (parameters, answer).
    pub idempotency: HashMap<String, (Value, Value)>,
    pub bucket: Option<(f64, Instant)>,
    pub window: Option<(Instant, u64)>,
    /// Shopify: inventory writes still to fail on Shopify's side (HTTP 500 after the key is
    /// recorded as failed), and the keys so spent.
    pub fail_inventory_writes: u32,
    pub spent_keys: std::collections::HashSet<String>,
    /// WooCommerce: the Shipment Tracking extension is not installed.
    pub shipment_tracking_missing: bool,
}

impl Shop {
    pub fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
    pub fn by_sku(&mut self, sku: &str) -> Option<&mut Product> {
        self.products.iter_mut().find(|p| p.sku == sku)
    }
}

/// What `create_order` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewOrder {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub currency: String,
    pub lines: Vec<NewOrderLine>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewOrderLine {
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub name: String,
    pub quantity: u32,
    #[serde(default)]
    pub price: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderTopic {
    Created,
    Updated,
    Cancelled,
    /// The order's latest refund: Shopify `refunds/create` (the refund as body), BigCommerce
    /// `store/order/refund/created`, WooCommerce `order.updated` (it has no refund topic).
    Refunded,
}

/// How `deliver_order_webhook` sends: each topic in `topics` is one event; each event goes
/// `1 + duplicates` times (same event id / hash); `out_of_order` sends the events last first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryOptions {
    pub topics: Vec<OrderTopic>,
    #[serde(default)]
    pub duplicates: usize,
    #[serde(default)]
    pub out_of_order: bool,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions { topics: vec![OrderTopic::Created], duplicates: 0, out_of_order: false }
    }
}

/// One webhook request as sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentWebhook {
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// HTTP status the target answered, or 0 when it could not be reached.
    pub status: u16,
}

pub struct ChannelSandbox {
    pub(crate) config: ChannelSandboxConfig,
    pub(crate) base_url: String,
    shops: [Mutex<Shop>; 3],
    faults: [FaultInjector; 3],
    http: reqwest::Client,
}

pub(crate) enum Gate {
    /// Answer this instead of serving the request.
    Answer(Response),
    /// Serve it; `lose` = drop the connection after doing the work.
    Serve { lose: bool },
}

impl ChannelSandbox {
    pub fn new(config: ChannelSandboxConfig, base_url: &str) -> Self {
        let seed = config.fault_seed;
        let shop = |start: u64| Mutex::new(Shop { next_id: start, ..Shop::default() });
        let woo = Mutex::new(Shop {
            next_id: 700,
            shipment_tracking_missing: !config.woocommerce_shipment_tracking,
            ..Shop::default()
        });
        ChannelSandbox {
            config,
            base_url: base_url.to_string(),
            shops: [shop(1_000), shop(100), woo],
            faults: [
                FaultInjector::new(FaultRates::default(), seed),
                FaultInjector::new(FaultRates::default(), seed + 1),
                FaultInjector::new(FaultRates::default(), seed + 2),
            ],
            http: reqwest::Client::new(),
        }
    }

    pub fn config(&self) -> &ChannelSandboxConfig {
        &self.config
    }

    pub(crate) fn shop(&self, channel: Channel) -> MutexGuard<'_, Shop> {
        self.shops[channel.index()].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn faults(&self, channel: Channel) -> &FaultInjector {
        &self.faults[channel.index()]
    }

    /// The order as the channel's own API (and webhook) shows it.
    pub fn order_json(&self, channel: Channel, order_id: &str) -> Option<Value> {
        let shop = self.shop(channel);
        let order = shop.orders.get(&order_id.parse().ok()?)?;
        Some(match channel {
            Channel::Shopify => shopify::order_json(order),
            Channel::Bigcommerce => bigcommerce::order_json(order),
            Channel::Woocommerce => woocommerce::order_json(order),
        })
    }

    pub fn fulfilments(&self, channel: Channel, order_id: &str) -> Vec<SandboxFulfilment> {
        let shop = self.shop(channel);
        order_id
            .parse()
            .ok()
            .and_then(|id: u64| shop.orders.get(&id))
            .map(|o| o.fulfilments.clone())
            .unwrap_or_default()
    }

    pub fn order_notes(&self, channel: Channel, order_id: &str) -> Vec<String> {
        let shop = self.shop(channel);
        order_id
            .parse()
            .ok()
            .and_then(|id: u64| shop.orders.get(&id))
            .map(|o| o.notes.clone())
            .unwrap_or_default()
    }

    pub fn counters(&self, channel: Channel) -> ChannelCounters {
        self.shop(channel).counters.clone()
    }

    pub fn reset_counters(&self, channel: Channel) {
        self.shop(channel).counters = ChannelCounters::default();
    }

    pub fn webhooks(&self, channel: Channel) -> Vec<SandboxWebhook> {
        self.shop(channel).hooks.clone()
    }

    /// Sends signed order webhooks to `target_url`, exactly as the channel signs them. `secret`
    /// is the Shopify client secret, the WooCommerce webhook secret, or the value of
    /// BigCommerce's custom header (named by `secret_header`, `X-Pearlsync-Secret` by default).
    pub async fn deliver_order_webhook(
        &self,
        channel: Channel,
        order_id: &str,
        target_url: &str,
        secret: &str,
        options: &DeliveryOptions,
    ) -> Vec<SentWebhook> {
        let mut events = Vec::new();
        for (n, topic) in options.topics.iter().enumerate() {
            let Some(request) = self.webhook_request(channel, order_id, *topic, secret, n) else { continue };
            events.push(request);
        }
        if options.out_of_order {
            events.reverse();
        }
        let mut sent = Vec::new();
        for (headers, body) in events {
            for _ in 0..=options.duplicates {
                sent.push(self.send_webhook(channel, target_url, headers.clone(), body.clone()).await);
            }
        }
        sent
    }

    /// Sends one event for the order to every subscription registered for its topic.
    pub async fn deliver_to_subscribers(
        &self,
        channel: Channel,
        order_id: &str,
        topic: OrderTopic,
    ) -> Vec<SentWebhook> {
        let wanted = match (channel, topic) {
            (Channel::Shopify, OrderTopic::Created) => "ORDERS_CREATE",
            (Channel::Shopify, OrderTopic::Updated) => "ORDERS_UPDATED",
            (Channel::Shopify, OrderTopic::Cancelled) => "ORDERS_CANCELLED",
            (Channel::Shopify, OrderTopic::Refunded) => "REFUNDS_CREATE",
            (Channel::Bigcommerce, OrderTopic::Refunded) => "store/order/refund/created",
            (Channel::Bigcommerce, OrderTopic::Created) => "store/order/created",
            (Channel::Bigcommerce, _) => "store/order/updated",
            (Channel::Woocommerce, OrderTopic::Created) => "order.created",
            (Channel::Woocommerce, OrderTopic::Updated | OrderTopic::Refunded) => "order.updated",
            (Channel::Woocommerce, OrderTopic::Cancelled) => "order.deleted",
        };
        let hooks: Vec<SandboxWebhook> =
            self.webhooks(channel).into_iter().filter(|h| h.topic == wanted).collect();
        let mut sent = Vec::new();
        for hook in hooks {
            let secret = match channel {
                Channel::Shopify => self.config.shopify_client_secret.clone(),
                Channel::Woocommerce => hook.secret.clone().unwrap_or_default(),
                Channel::Bigcommerce => hook.headers.values().next().cloned().unwrap_or_default(),
            };
            let Some((mut headers, body)) = self.webhook_request(channel, order_id, topic, &secret, 0) else {
                continue;
            };
            if channel == Channel::Bigcommerce {
                headers.retain(|(k, _)| {
                    !hook.headers.contains_key(k) && k != bigcommerce::DEFAULT_SECRET_HEADER
                });
                headers.extend(hook.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            sent.push(self.send_webhook(channel, &hook.address, headers, body).await);
        }
        sent
    }

    /// The signed headers and body of one order event, as the channel would send them.
    pub fn webhook_request(
        &self,
        channel: Channel,
        order_id: &str,
        topic: OrderTopic,
        secret: &str,
        sequence: usize,
    ) -> Option<(Vec<(String, String)>, String)> {
        let mut order = self.order_json(channel, order_id)?;
        let event_id = format!("{order_id}-{sequence}-{}", fastrand::u64(..));
        let latest_refund = || {
            let shop = self.shop(channel);
            let id = order_id.parse::<u64>().ok()?;
            shop.orders.get(&id)?.refunds.last().map(|r| r.id.to_string())
        };
        if topic == OrderTopic::Refunded && channel == Channel::Shopify {
            order = self.refund_body(channel, order_id, &latest_refund()?)?;
        }
        Some(match channel {
            Channel::Shopify => shopify::webhook(&order, topic, secret, &event_id),
            Channel::Bigcommerce => {
                let (headers, body) = bigcommerce::webhook(order_id, topic, secret, &event_id);
                match (topic, latest_refund(), serde_json::from_str::<Value>(&body)) {
                    (OrderTopic::Refunded, Some(refund), Ok(mut v)) => {
                        v["data"]["refund"] =
                            serde_json::json!({"refund_id": refund.parse::<u64>().unwrap_or_default()});
                        (headers, v.to_string())
                    }
                    _ => (headers, body),
                }
            }
            Channel::Woocommerce => woocommerce::webhook(&self.base_url, &order, topic, secret),
        })
    }

    async fn send_webhook(
        &self,
        channel: Channel,
        url: &str,
        headers: Vec<(String, String)>,
        body: String,
    ) -> SentWebhook {
        let mut request = self.http.post(url).header("Content-Type", "application/json").body(body.clone());
        for (k, v) in &headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let status = match request.send().await {
            Ok(response) => response.status().as_u16(),
            Err(e) => {
                tracing::warn!(%url, error = %e, "sandbox webhook delivery failed");
                0
            }
        };
        self.shop(channel).counters.webhooks_sent += 1;
        SentWebhook { headers, body, status }
    }

    /// Counts the request, checks credentials, and applies any injected fault.
    pub(crate) async fn gate(&self, channel: Channel, endpoint: &str, authorised: bool) -> Gate {
        self.shop(channel).counters.requests.entry(endpoint.to_string()).and_modify(|n| *n += 1).or_insert(1);
        if !authorised {
            return Gate::Answer(
                (StatusCode::UNAUTHORIZED, Json(json!({"errors": "missing or bad credentials"})))
                    .into_response(),
            );
        }
        match self.faults(channel).next() {
            None => Gate::Serve { lose: false },
            Some(Fault::Throttle) => {
                self.shop(channel).counters.throttles_sent += 1;
                Gate::Answer(match channel {
                    Channel::Shopify => shopify::throttled_answer(self, 0.0),
                    Channel::Bigcommerce => bigcommerce::throttled_answer(50),
                    Channel::Woocommerce => (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("Retry-After", "0.05")],
                        Json(json!({"code": "too_many_requests"})),
                    )
                        .into_response(),
                })
            }
            Some(Fault::ServerError) => Gate::Answer(
                (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "sandbox fault"}))).into_response(),
            ),
            Some(Fault::Slow { millis }) => {
                crate::faults::slow(millis).await;
                Gate::Serve { lose: false }
            }
            Some(Fault::Drop) => Gate::Answer(crate::faults::dropped_connection()),
            Some(Fault::LoseResponse) => Gate::Serve { lose: true },
            // Kinds added for Brightpearl: a shop serves an outage as an edge page and every
            // after-write kind as a lost answer.
            Some(Fault::Outage503) => Gate::Answer(crate::faults::html_error_page(503)),
            Some(Fault::DropAfterWrite | Fault::ServerErrorAfterWrite { .. } | Fault::ShapeDrift) => {
                Gate::Serve { lose: true }
            }
        }
    }

    pub(crate) fn record_batch(&self, channel: Channel, items: usize) {
        let mut shop = self.shop(channel);
        shop.counters.batch_calls += 1;
        shop.counters.max_batch_seen = shop.counters.max_batch_seen.max(items);
    }

    pub(crate) fn record_oversized(&self, channel: Channel) {
        self.shop(channel).counters.oversized_batches += 1;
    }
}

/// The answer, or a dropped connection when the fault says the answer is lost.
pub(crate) fn finish(lose: bool, response: Response) -> Response {
    if lose { crate::faults::dropped_connection() } else { response }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

pub(crate) fn money(v: f64) -> String {
    format!("{v:.2}")
}

/// An order list entry as a `fields` / `_fields` filter leaves it: only the named top-level
/// fields of the whole order (all of it when the list names none), as Shopify's and WordPress's
/// filters do.
pub(crate) fn only_fields(order: Value, fields: Option<&String>) -> Value {
    let (Some(fields), Value::Object(map)) = (fields, &order) else { return order };
    let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
    Value::Object(
        map.iter()
            .filter(|(k, _)| wanted.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

pub fn router(sandbox: Arc<ChannelSandbox>) -> axum::Router {
    axum::Router::new()
        .merge(control::routes())
        .merge(shopify::routes())
        .merge(bigcommerce::routes())
        .merge(woocommerce::routes())
        .merge(refunds::routes())
        .with_state(sandbox)
}
