//! Simulated Shopify, BigCommerce and WooCommerce stores (issue 4): stateful products,
//! inventory, orders, fulfilments and webhook subscriptions behind the real paths, with each
//! API's batch maximum and rate limit, fault injection, and signed webhook deliveries.

// Handlers short-circuit with a ready `Response` as the error; boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod bigcommerce;
mod shopify;
mod woocommerce;

use crate::faults::{Fault, FaultInjector, FaultRates};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
}

impl Order {
    pub fn shipping(&self) -> f64 {
        5.0
    }
    pub fn subtotal(&self) -> f64 {
        self.lines.iter().map(|l| l.price * f64::from(l.quantity)).sum()
    }
    pub fn total(&self) -> f64 {
        self.subtotal() + self.shipping()
    }
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

    /// Adds (or updates) a product with stock at the channel's location; returns its product id.
    pub fn seed_product(&self, channel: Channel, sku: &str, quantity: i64) -> u64 {
        let mut shop = self.shop(channel);
        if let Some(p) = shop.by_sku(sku) {
            p.quantity = quantity;
            return p.product_id;
        }
        let product_id = shop.next();
        let variant_id = shop.next();
        let inventory_item_id = shop.next();
        shop.products.push(Product {
            sku: sku.to_string(),
            product_id,
            variant_id,
            inventory_item_id,
            name: format!("Product {sku}"),
            price: 10.0,
            quantity,
            requires_components: false,
            stocked: true,
            parent_id: None,
            variable: false,
        });
        product_id
    }

    /// Shopify: makes the SKU's variant a parent bundle (`requiresComponents`), or not.
    pub fn set_requires_components(&self, channel: Channel, sku: &str, bundle: bool) -> bool {
        self.shop(channel).by_sku(sku).map(|p| p.requires_components = bundle).is_some()
    }

    /// Shopify: stocks the SKU's item at the store's location, or takes it off.
    pub fn set_stocked(&self, channel: Channel, sku: &str, stocked: bool) -> bool {
        self.shop(channel).by_sku(sku).map(|p| p.stocked = stocked).is_some()
    }

    /// WooCommerce: a variation `sku` of the variable product `parent_sku` (created, without
    /// stock of its own, when missing); returns (parent id, variation id).
    pub fn seed_variation(&self, parent_sku: &str, sku: &str, quantity: i64) -> (u64, u64) {
        let channel = Channel::Woocommerce;
        let parent = self.seed_product(channel, parent_sku, 0);
        let variation = self.seed_product(channel, sku, quantity);
        let mut shop = self.shop(channel);
        for p in shop.products.iter_mut() {
            if p.product_id == parent {
                p.variable = true;
            }
            if p.product_id == variation {
                p.parent_id = Some(parent);
            }
        }
        (parent, variation)
    }

    /// Shopify: the next `count` inventory writes fail on Shopify's side (an HTTP 500 after the
    /// idempotency key was recorded as failed), so a retry under the same key is answered
    /// `IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED`.
    pub fn fail_inventory_writes(&self, count: u32) {
        self.shop(Channel::Shopify).fail_inventory_writes = count;
    }

    /// WooCommerce: installs or removes the Shipment Tracking extension.
    pub fn set_shipment_tracking(&self, installed: bool) {
        self.shop(Channel::Woocommerce).shipment_tracking_missing = !installed;
    }

    /// Shopify: moves line `i` of the order to `locations[i]` (lines past the end stay), so
    /// the order has one fulfilment order per location holding lines.
    pub fn assign_line_locations(&self, channel: Channel, order_id: &str, locations: &[u64]) -> bool {
        let mut shop = self.shop(channel);
        let Some(id) = order_id.parse::<u64>().ok().filter(|id| shop.orders.contains_key(id)) else {
            return false;
        };
        let mut wanted: Vec<u64> = Vec::new();
        if let Some(order) = shop.orders.get_mut(&id) {
            for (line, location) in order.lines.iter_mut().zip(locations) {
                line.location_id = *location;
            }
            for line in &order.lines {
                if !wanted.contains(&line.location_id) {
                    wanted.push(line.location_id);
                }
            }
        }
        let mut fos = Vec::new();
        for location in wanted {
            let existing = shop.orders[&id].fulfillment_orders.iter().find(|(_, l)| *l == location).copied();
            fos.push(existing.unwrap_or_else(|| (shop.next(), location)));
        }
        if let Some(order) = shop.orders.get_mut(&id) {
            order.fulfillment_orders = fos;
        }
        true
    }

    pub fn seed_products(&self, channel: Channel, products: &[(String, i64)]) {
        for (sku, quantity) in products {
            self.seed_product(channel, sku, *quantity);
        }
    }

    /// The SKU's available quantity at the channel's location.
    pub fn quantity(&self, channel: Channel, sku: &str) -> Option<i64> {
        self.shop(channel).by_sku(sku).map(|p| p.quantity)
    }

    /// A merchant edit.
    pub fn set_quantity(&self, channel: Channel, sku: &str, quantity: i64) -> bool {
        self.shop(channel).by_sku(sku).map(|p| p.quantity = quantity).is_some()
    }

    /// Creates an order; returns its id and the JSON the channel would send for it.
    pub fn create_order(&self, channel: Channel, new: NewOrder) -> (String, Value) {
        let id = {
            let mut shop = self.shop(channel);
            let id = shop.next();
            let address_id = shop.next();
            let mut lines = Vec::new();
            for l in &new.lines {
                let line_id = shop.next();
                let fo_line_id = shop.next();
                let found = l.sku.as_deref().and_then(|s| shop.by_sku(s));
                let product = found.as_ref().map(|p| (p.product_id, p.variant_id));
                let parent = found.and_then(|p| p.parent_id);
                lines.push(Line {
                    line_id,
                    fo_line_id,
                    sku: l.sku.clone().filter(|s| !s.is_empty()),
                    name: if l.name.is_empty() {
                        l.sku.clone().unwrap_or_else(|| "Item".into())
                    } else {
                        l.name.clone()
                    },
                    quantity: l.quantity,
                    price: l.price,
                    shipped: 0,
                    product,
                    parent,
                    location_id: self.config.shopify_location_id,
                });
            }
            let now = Utc::now();
            let number = shop.orders.len() as u64 + 1001;
            let fulfillment_order = (shop.next(), self.config.shopify_location_id);
            shop.orders.insert(
                id,
                Order {
                    id,
                    number,
                    email: new.email.clone(),
                    first_name: new.first_name.clone(),
                    last_name: new.last_name.clone(),
                    currency: if new.currency.is_empty() { "GBP".into() } else { new.currency.clone() },
                    lines,
                    address_id,
                    created_at: now,
                    updated_at: now,
                    cancelled: false,
                    fulfilments: Vec::new(),
                    notes: Vec::new(),
                    fulfillment_orders: vec![fulfillment_order],
                },
            );
            id
        };
        let json = self.order_json(channel, &id.to_string()).unwrap_or(Value::Null);
        (id.to_string(), json)
    }

    /// Marks the order cancelled (a merchant action).
    pub fn cancel_order(&self, channel: Channel, order_id: &str) -> bool {
        let mut shop = self.shop(channel);
        match order_id.parse().ok().and_then(|id: u64| shop.orders.get_mut(&id)) {
            Some(order) => {
                order.cancelled = true;
                order.updated_at = Utc::now();
                true
            }
            None => false,
        }
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
            (Channel::Bigcommerce, OrderTopic::Created) => "store/order/created",
            (Channel::Bigcommerce, _) => "store/order/updated",
            (Channel::Woocommerce, OrderTopic::Created) => "order.created",
            (Channel::Woocommerce, OrderTopic::Updated) => "order.updated",
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
        let order = self.order_json(channel, order_id)?;
        let event_id = format!("{order_id}-{sequence}-{}", fastrand::u64(..));
        Some(match channel {
            Channel::Shopify => shopify::webhook(&order, topic, secret, &event_id),
            Channel::Bigcommerce => bigcommerce::webhook(order_id, topic, secret, &event_id),
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

// ---- HTTP control routes under /__sandbox/{channel}/... ----

fn channel_of(name: &str) -> Result<Channel, Response> {
    Channel::parse(name).ok_or_else(|| (StatusCode::NOT_FOUND, "unknown channel").into_response())
}

#[derive(Deserialize)]
struct SeedItem {
    sku: String,
    quantity: i64,
}

async fn control_seed(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(channel): Path<String>,
    Json(items): Json<Vec<SeedItem>>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    for item in &items {
        sb.seed_product(channel, &item.sku, item.quantity);
    }
    Json(json!({"seeded": items.len()})).into_response()
}

async fn control_quantity(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((channel, sku)): Path<(String, String)>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match sb.quantity(channel, &sku) {
        Some(q) => Json(json!({"sku": sku, "quantity": q})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Deserialize)]
struct SetQuantity {
    quantity: i64,
}

async fn control_set_quantity(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((channel, sku)): Path<(String, String)>,
    Json(body): Json<SetQuantity>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if sb.set_quantity(channel, &sku, body.quantity) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
        .into_response()
}

async fn control_create_order(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(channel): Path<String>,
    Json(new): Json<NewOrder>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (id, order) = sb.create_order(channel, new);
    Json(json!({"id": id, "order": order})).into_response()
}

#[derive(Deserialize)]
struct DeliverRequest {
    target_url: String,
    secret: String,
    #[serde(flatten)]
    options: DeliveryOptions,
}

async fn control_deliver(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((channel, id)): Path<(String, String)>,
    Json(req): Json<DeliverRequest>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let sent = sb.deliver_order_webhook(channel, &id, &req.target_url, &req.secret, &req.options).await;
    Json(json!({"sent": sent})).into_response()
}

async fn control_fulfilments(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((channel, id)): Path<(String, String)>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    Json(json!({"fulfilments": sb.fulfilments(channel, &id), "notes": sb.order_notes(channel, &id)}))
        .into_response()
}

async fn control_counters(State(sb): State<Arc<ChannelSandbox>>, Path(channel): Path<String>) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    Json(json!({"counters": sb.counters(channel), "faults": sb.faults(channel).counts()})).into_response()
}

#[derive(Deserialize)]
struct FaultRequest {
    #[serde(default)]
    rates: Option<FaultRates>,
    #[serde(default)]
    script: Vec<Option<Fault>>,
    #[serde(default)]
    clear: bool,
}

async fn control_faults(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(channel): Path<String>,
    Json(req): Json<FaultRequest>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let faults = sb.faults(channel);
    if req.clear {
        faults.clear();
    }
    if let Some(rates) = req.rates {
        faults.set_rates(rates);
    }
    faults.script(req.script);
    StatusCode::NO_CONTENT.into_response()
}

pub fn router(sandbox: Arc<ChannelSandbox>) -> axum::Router {
    axum::Router::new()
        .route("/__sandbox/{channel}/products", post(control_seed))
        .route("/__sandbox/{channel}/quantity/{sku}", get(control_quantity).put(control_set_quantity))
        .route("/__sandbox/{channel}/orders", post(control_create_order))
        .route("/__sandbox/{channel}/orders/{id}/deliver", post(control_deliver))
        .route("/__sandbox/{channel}/orders/{id}/fulfilments", get(control_fulfilments))
        .route("/__sandbox/{channel}/counters", get(control_counters))
        .route("/__sandbox/{channel}/faults", post(control_faults))
        .merge(shopify::routes())
        .merge(bigcommerce::routes())
        .merge(woocommerce::routes())
        .with_state(sandbox)
}
