//! Sales channels (issue 4): the `SalesChannel` trait, the store configuration, and one module
//! per channel. Every channel client only changes base URL between a real store and the sandbox.
//!
//! Money (issue 14): every amount is a `Decimal` in the order's currency, read exactly from the
//! channel's JSON (`crate::money::parse`). Each normaliser turns its channel's fields into the
//! same components, all **ex tax and after their own discounts**, with their tax beside them:
//! product lines, shipping lines, and `charges` (fees, handling, wrapping, order discounts not
//! allocated to lines, gift cards, tips). The rows add them up; `total` and `total_tax` are
//! the channel's own figures, which the rows must meet to the currency's minor unit.

pub mod bigcommerce;
mod buffer;
mod http;
mod payments;
pub mod refund;
pub mod shopify;
pub mod signature;
mod sku_cache;
pub mod woocommerce;

pub use bigcommerce::BigCommerceChannel;
pub use buffer::{BufferRules, SkuBuffer};
pub use payments::StorePayments;
pub use refund::{ChannelRefund, RefundLine, RefundLineKind};
pub use shopify::ShopifyChannel;
pub use woocommerce::WooCommerceChannel;

use crate::error::{Error, Result};
use crate::queue::{ChannelKind, OrderEvent};
use crate::secret::Secret;
use crate::state::StateStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One `[[stores]]` entry in the config file: a channel store with its own credentials,
/// warehouse set and buffer rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Unique store key; webhooks arrive on `/webhooks/{kind}/{name}`.
    pub name: String,
    pub kind: ChannelKind,
    /// API base: `https://{shop}.myshopify.com`, `https://api.bigcommerce.com`,
    /// `https://{site}` for WooCommerce, or the sandbox's `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Shopify Admin API version (default `shopify::DEFAULT_API_VERSION`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Shopify `X-Shopify-Access-Token`; BigCommerce `X-Auth-Token`.
    #[serde(default)]
    pub access_token: Secret,
    /// Shopify app client secret; WooCommerce webhook secret; BigCommerce value of the custom
    /// secret header set at subscription.
    #[serde(default)]
    pub webhook_secret: Secret,
    /// The secret before a rotation, accepted too while the channel still signs with it.
    #[serde(default)]
    pub previous_webhook_secret: Option<Secret>,
    /// BigCommerce store hash.
    #[serde(default)]
    pub store_hash: String,
    /// BigCommerce custom header carrying `webhook_secret` (default `X-Pearlsync-Secret`).
    #[serde(default)]
    pub webhook_header: Option<String>,
    /// WooCommerce REST consumer key and secret.
    #[serde(default)]
    pub consumer_key: Secret,
    #[serde(default)]
    pub consumer_secret: Secret,
    /// Shopify location (numeric id or `gid://shopify/Location/N`); BigCommerce location id.
    /// WooCommerce has one stock figure per product and ignores it.
    #[serde(default)]
    pub location_id: Option<String>,
    /// Brightpearl warehouse ids whose availability is summed for this store; empty = all.
    #[serde(default)]
    pub warehouses: Vec<u64>,
    #[serde(default)]
    pub buffer: BufferRules,
    /// Brightpearl-side options for the order writer.
    #[serde(default)]
    pub brightpearl_channel_id: Option<u64>,
    #[serde(default)]
    pub price_list_id: Option<u64>,
    #[serde(default)]
    pub reservation_warehouse_id: Option<u64>,
    #[serde(default)]
    pub shipping_product_sku: Option<String>,
    #[serde(default)]
    pub tax_code: Option<String>,
    /// How many times one call is retried after a throttle or transient failure.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// WooCommerce Shipment Tracking: carrier name (as Brightpearl sends it) → the
    /// extension's provider (e.g. `"Royal Mail" = "royal-mail"`). Unmapped carriers go as a
    /// custom provider with a tracking link.
    #[serde(default)]
    pub tracking_providers: BTreeMap<String, String>,
    /// WooCommerce: carrier name → tracking URL template for custom providers, the number in
    /// place of `%1$s` or `{number}`. Used when the shipment brings no tracking URL.
    #[serde(default)]
    pub tracking_url_templates: BTreeMap<String, String>,
    /// `[stores.money]`: nominal and tax codes for the rows, SKU-less lines, base currency.
    #[serde(default)]
    pub money: crate::money::StoreMoney,
    /// `[stores.payments]`: gateway → Brightpearl payment method code, with a default.
    #[serde(default)]
    pub payments: StorePayments,
}

fn default_max_retries() -> u32 {
    6
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            name: String::new(),
            kind: ChannelKind::Shopify,
            base_url: String::new(),
            api_version: None,
            access_token: Secret::default(),
            webhook_secret: Secret::default(),
            previous_webhook_secret: None,
            store_hash: String::new(),
            webhook_header: None,
            consumer_key: Secret::default(),
            consumer_secret: Secret::default(),
            location_id: None,
            warehouses: Vec::new(),
            buffer: BufferRules::default(),
            brightpearl_channel_id: None,
            price_list_id: None,
            reservation_warehouse_id: None,
            shipping_product_sku: None,
            tax_code: None,
            max_retries: default_max_retries(),
            tracking_providers: BTreeMap::new(),
            tracking_url_templates: BTreeMap::new(),
            money: crate::money::StoreMoney::default(),
            payments: StorePayments::default(),
        }
    }
}

impl StoreConfig {
    /// The quantity to publish for `sku` given Brightpearl's summed availability.
    pub fn apply_buffer(&self, available: i64, sku: &str) -> i64 {
        self.buffer.apply(available, sku)
    }

    /// Every webhook secret currently accepted (current first).
    pub(crate) fn webhook_secrets(&self) -> Vec<&Secret> {
        let mut secrets = vec![&self.webhook_secret];
        if let Some(previous) = self.previous_webhook_secret.as_ref().filter(|s| !s.is_empty()) {
            secrets.push(previous);
        }
        secrets.retain(|s| !s.is_empty());
        secrets
    }
}

/// A verified webhook delivery, ready for the ingress to dedup and enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// Stable across redeliveries of the same event (apis.md §5).
    pub dedup_key: String,
    pub topic: String,
    pub order_id: Option<String>,
    pub event: OrderEvent,
    /// The full order when the channel sends it. BigCommerce's webhooks are thin: there it is
    /// the event's identity (`scope`, `hash`, `data`), never the order, so two events of one
    /// order are two jobs; the writer fetches the order.
    pub payload: Option<serde_json::Value>,
    /// WooCommerce's unsigned activation ping: answer 200, enqueue nothing.
    #[serde(default)]
    pub ping: bool,
}

impl WebhookDelivery {
    pub fn is_ping(&self) -> bool {
        self.ping
    }
}

/// A postal address, with keys that map onto Brightpearl's postal address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub full_name: Option<String>,
    pub company: Option<String>,
    pub line1: Option<String>,
    pub line2: Option<String>,
    /// City.
    pub line3: Option<String>,
    /// State, province or county.
    pub line4: Option<String>,
    pub postcode: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country_code: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

impl Address {
    fn is_empty(&self) -> bool {
        *self == Address::default()
    }
}

/// What a channel line is; it decides the Brightpearl row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Goods: a product row by SKU (a line without a SKU is a custom item, see
    /// `StoreMoney::sku_less_lines`).
    #[default]
    Product,
    /// A gift card sold: a non-stock row on the gift-card nominal code.
    GiftCard,
    /// A tip: a non-stock row on the tips nominal code.
    Tip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The channel's line id (Shopify line item, BigCommerce order product, WooCommerce line).
    pub line_id: String,
    /// `None` when the channel line has no SKU (a custom item, a tip).
    pub sku: Option<String>,
    pub name: String,
    pub quantity: u32,
    #[serde(default)]
    pub kind: LineKind,
    /// The whole line, ex tax, after the discounts allocated to it.
    pub net: Decimal,
    /// Tax for the whole line.
    pub tax: Decimal,
    /// Discounts allocated to the line (already taken off `net`; kept for notes and checks).
    pub discount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShippingLine {
    pub title: String,
    /// Ex tax, after shipping discounts.
    pub net: Decimal,
    pub tax: Decimal,
    /// Shipping discounts (already taken off `net`).
    pub discount: Decimal,
}

/// An order-level money component that is neither goods nor shipping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeKind {
    /// Fees and surcharges (WooCommerce `fee_lines`, BigCommerce `fees`).
    Fee,
    /// BigCommerce handling cost.
    Handling,
    /// BigCommerce gift wrapping.
    Wrapping,
    /// An order discount not allocated to any line (negative).
    Discount,
    /// A gift card redeemed against the order total (negative).
    GiftCard,
    /// A tip the channel reports at order level only.
    Tip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    pub kind: ChargeKind,
    pub name: String,
    /// Ex tax; negative for discounts and redemptions.
    pub net: Decimal,
    pub tax: Decimal,
}

/// One channel order in the shape the order writer consumes, whatever the channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelOrder {
    pub channel: ChannelKind,
    pub store: String,
    pub id: String,
    /// What the customer sees ("#1001", "100", ...).
    pub number: String,
    pub email: Option<String>,
    pub customer_name: Option<String>,
    pub phone: Option<String>,
    pub billing_address: Option<Address>,
    pub delivery_address: Option<Address>,
    /// The currency the customer paid in; every amount here is in it.
    pub currency: String,
    /// The shop's own currency when it differs from `currency` (Shopify shop money,
    /// BigCommerce default currency).
    #[serde(default)]
    pub shop_currency: Option<String>,
    /// Units of `currency` per unit of `shop_currency`, as the channel applied it.
    #[serde(default)]
    pub exchange_rate: Option<Decimal>,
    /// Whether the shop's prices include tax (informative: components are ex tax already).
    pub prices_include_tax: bool,
    pub lines: Vec<OrderLine>,
    pub shipping_lines: Vec<ShippingLine>,
    #[serde(default)]
    pub charges: Vec<Charge>,
    /// The channel's order total (tax included) and total tax.
    pub total: Decimal,
    pub total_tax: Decimal,
    pub paid: bool,
    pub cancelled: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The refunds the order body lists (Shopify `refunds[].id`, WooCommerce `refunds[].id`);
    /// an id not yet credited means a refund to credit. BigCommerce lists none here: its
    /// refund webhook says when to look.
    #[serde(default)]
    pub refund_ids: Vec<String>,
    /// The payment gateway the order was paid through (Shopify `gateway`/`payment_gateway_names`,
    /// WooCommerce `payment_method`, BigCommerce `payment_method`), for the store's
    /// gateway → payment method map.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Captured so far when only part of the total is (Shopify `partially_paid`:
    /// `total_price` − `total_outstanding`); `None` otherwise.
    #[serde(default)]
    pub captured: Option<Decimal>,
    /// Authorised and not yet captured (Shopify `authorized`, BigCommerce `authorized`).
    #[serde(default)]
    pub authorized: bool,
}

/// Where a SKU's stock lives on the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryTarget {
    /// Shopify inventory item gid; BigCommerce variant id; WooCommerce product or variation id.
    pub item_id: String,
    /// Shopify location gid; BigCommerce location id; empty for WooCommerce.
    pub location_id: String,
    /// BigCommerce product id; WooCommerce parent product of a variation.
    pub parent_id: Option<String>,
    /// Set when the channel will not take this SKU's stock (a Shopify bundle parent, a
    /// WooCommerce variable product).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<SkipReason>,
}

/// Why a SKU's stock is not written to a channel; reported in `PushReport::skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A Shopify parent bundle (`requiresComponents`): its stock follows its components and the
    /// API refuses to set it (`NON_MUTABLE_INVENTORY_ITEM`).
    BundleParent,
    /// The item is not stocked at the store's location (`ITEM_NOT_STOCKED_AT_LOCATION`);
    /// stocking it there is the merchant's call.
    NotStockedAtLocation,
    /// A WooCommerce variable product: its stock lives on its variations.
    VariableProduct,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantityUpdate {
    pub sku: String,
    pub quantity: i64,
    /// What we last pushed (the channel's quantity as we know it), for compare-and-set.
    pub last_pushed: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushReport {
    pub pushed: Vec<String>,
    /// SKUs whose channel quantity moved since `last_pushed`, with the channel's current value.
    /// Nothing was written for them; the caller decides.
    pub conflicts: Vec<(String, i64)>,
    /// SKUs not written, with the reason (unknown on the channel, rejected...).
    pub failed: Vec<(String, String)>,
    /// SKUs the channel will never take as they stand, with why. Nothing was written; unlike
    /// a failure, sending them again changes nothing until their state changes, so the caller
    /// holds them until Brightpearl's figure for them moves.
    #[serde(default)]
    pub skipped: Vec<(String, SkipReason)>,
    /// HTTP requests this push made (writes and re-reads).
    pub requests: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fulfilment {
    pub tracking_number: String,
    pub carrier: String,
    pub tracking_url: Option<String>,
    /// Shipped lines: SKU or channel line id, and quantity.
    pub lines: Vec<(String, u32)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    pub requests: u64,
    pub throttled: u64,
}

/// One order of a channel's order list (the reconciliation's view).
#[derive(Debug, Clone, PartialEq)]
pub struct ListedOrder {
    pub id: String,
    pub updated_at: DateTime<Utc>,
    pub refunds: ListedRefunds,
}

/// What an order list tells of an order's refunds, so a lost refund webhook can be noticed
/// without fetching every order.
#[derive(Debug, Clone, PartialEq)]
pub enum ListedRefunds {
    /// Shopify's and WooCommerce's `refunds[]`: the refund ids.
    Ids(Vec<String>),
    /// BigCommerce's `refunded_amount`: the money refunded so far, no ids.
    Amount(Decimal),
}

#[async_trait]
pub trait SalesChannel: Send + Sync {
    fn kind(&self) -> ChannelKind;
    fn store(&self) -> &StoreConfig;

    /// Checks the delivery's signature (constant time) and extracts its dedup key and order.
    /// Bad or missing signature → `Error::Unauthorized`; malformed body → `Error::BadInput`.
    fn verify_webhook(&self, headers: &[(String, String)], body: &[u8]) -> Result<WebhookDelivery>;

    /// Turns the channel's order JSON (as `fetch_order` or the webhook gives it) into a
    /// `ChannelOrder`, or a `BadInput` error naming what is missing.
    fn normalise_order(&self, payload: &serde_json::Value) -> Result<ChannelOrder>;

    /// The order's JSON in the shape `normalise_order` takes.
    async fn fetch_order(&self, order_id: &str) -> Result<serde_json::Value>;

    /// Every refund the channel recorded against `order`, itemised as the channel itemises it.
    async fn fetch_refunds(&self, order: &ChannelOrder) -> Result<Vec<ChannelRefund>>;

    /// Orders updated at or after `since`, each with what the list says of its refunds.
    async fn list_orders_since(&self, since: DateTime<Utc>) -> Result<Vec<ListedOrder>>;

    /// Channel inventory ids for the SKUs it knows; unknown SKUs are left out. Cached in state.
    async fn resolve_skus(&self, skus: &[String]) -> Result<HashMap<String, InventoryTarget>>;

    /// The channel's current available quantity per SKU (unknown SKUs left out).
    async fn read_quantities(&self, skus: &[String]) -> Result<HashMap<String, i64>>;

    /// Sets absolute quantities in the largest batches the API allows.
    async fn set_quantities(&self, updates: &[QuantityUpdate]) -> Result<PushReport>;

    /// Records a shipment with tracking for the shipped lines. Skips when a shipment with the
    /// same tracking number already exists.
    async fn post_fulfilment(&self, order_id: &str, fulfilment: &Fulfilment) -> Result<()>;

    /// Subscribes the order webhooks pearlsync needs to `target_url`, skipping existing ones.
    async fn register_webhooks(&self, target_url: &str) -> Result<()>;

    fn stats(&self) -> ChannelStats;
}

/// The client for one configured store.
pub fn build_channel(store: &StoreConfig, state: Arc<dyn StateStore>) -> Arc<dyn SalesChannel> {
    match store.kind {
        ChannelKind::Shopify => Arc::new(ShopifyChannel::new(store.clone(), state)),
        ChannelKind::Bigcommerce => Arc::new(BigCommerceChannel::new(store.clone(), state)),
        ChannelKind::Woocommerce => Arc::new(WooCommerceChannel::new(store.clone(), state)),
    }
}

/// Every configured store's client, by store name.
#[derive(Clone, Default)]
pub struct ChannelSet {
    channels: BTreeMap<String, Arc<dyn SalesChannel>>,
}

impl ChannelSet {
    /// Builds one client per store; duplicate store names are a configuration error.
    pub fn new(stores: &[StoreConfig], state: Arc<dyn StateStore>) -> Result<Self> {
        let mut channels = BTreeMap::new();
        for store in stores {
            if store.name.trim().is_empty() {
                return Err(Error::config("stores.name", "every store needs a name"));
            }
            if channels.insert(store.name.clone(), build_channel(store, Arc::clone(&state))).is_some() {
                return Err(Error::config(
                    "stores.name",
                    format!("store name {:?} is used twice", store.name),
                ));
            }
        }
        Ok(ChannelSet { channels })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn SalesChannel>> {
        self.channels.get(name)
    }

    /// The store for a webhook route `/webhooks/{kind}/{name}`: both must match.
    pub fn for_webhook(&self, kind: ChannelKind, name: &str) -> Option<&Arc<dyn SalesChannel>> {
        self.channels.get(name).filter(|c| c.kind() == kind)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn SalesChannel>> {
        self.channels.values()
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

// ---- helpers shared by the channel modules ----

/// A header's value, by case-insensitive name.
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// An amount from a JSON string or number, exactly; absent or null → 0.
pub(crate) fn money(value: Option<&serde_json::Value>) -> Result<Decimal> {
    crate::money::parse(value)
}

/// A non-empty trimmed string field.
pub(crate) fn text(value: &serde_json::Value, key: &str) -> Option<String> {
    match value.get(key)? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An id that channels send as a number or a string.
pub(crate) fn id_of(value: &serde_json::Value, key: &str) -> Option<String> {
    text(value, key)
}

pub(crate) fn required_id(value: &serde_json::Value, key: &str, what: &str) -> Result<String> {
    id_of(value, key).ok_or_else(|| Error::BadInput(format!("{what} has no {key}")))
}

pub(crate) fn join_name(first: Option<String>, last: Option<String>) -> Option<String> {
    let name = [first, last].into_iter().flatten().collect::<Vec<_>>().join(" ");
    (!name.trim().is_empty()).then_some(name)
}

pub(crate) fn non_empty_address(address: Address) -> Option<Address> {
    (!address.is_empty()).then_some(address)
}

pub(crate) fn quantity_of(line: &serde_json::Value, what: &str) -> Result<u32> {
    let q = line.get("quantity").and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
    q.and_then(|q| u32::try_from(q).ok())
        .ok_or_else(|| Error::BadInput(format!("{what} has no valid quantity")))
}

pub(crate) fn parse_time(value: Option<&serde_json::Value>) -> Option<DateTime<Utc>> {
    let s = value?.as_str()?;
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(s) {
        return Some(t.with_timezone(&Utc));
    }
    // WooCommerce `*_gmt` fields carry no offset.
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok().map(|n| n.and_utc())
}

pub(crate) fn parse_json(body: &[u8], what: &str) -> Result<serde_json::Value> {
    serde_json::from_slice(body).map_err(|e| Error::BadInput(format!("{what} is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_parse_from_toml_with_defaults() {
        let text = r#"
            [[stores]]
            name = "uk"
            kind = "shopify"
            base_url = "https://uk.myshopify.com"
            access_token = "shpat_x"
            webhook_secret = "s"
            location_id = "gid://shopify/Location/1"
            warehouses = [2, 3]
            price_list_id = 4
            [stores.buffer]
            safety_stock = 2
            [stores.buffer.overrides.HOT-1]
            cap = 5

            [[stores]]
            name = "bc"
            kind = "bigcommerce"
            base_url = "https://api.bigcommerce.com"
            store_hash = "abc"
        "#;
        let config = crate::config::Config::from_toml(text).unwrap();
        assert_eq!(config.stores.len(), 2);
        let uk = &config.stores[0];
        assert_eq!(uk.kind, ChannelKind::Shopify);
        assert_eq!(uk.warehouses, vec![2, 3]);
        assert_eq!(uk.apply_buffer(10, "A"), 8);
        assert_eq!(uk.apply_buffer(10, "HOT-1"), 5);
        assert!(!format!("{uk:?}").contains("shpat_x"));
        assert_eq!(config.stores[1].max_retries, default_max_retries());
    }

    #[test]
    fn duplicate_store_names_are_refused() {
        let state: Arc<dyn StateStore> = Arc::new(crate::state::EmbeddedStore::in_memory().unwrap());
        let store = StoreConfig { name: "a".into(), ..StoreConfig::default() };
        assert!(ChannelSet::new(&[store.clone(), store.clone()], Arc::clone(&state)).is_err());
        let set = ChannelSet::new(&[store], state).unwrap();
        assert!(set.for_webhook(ChannelKind::Shopify, "a").is_some());
        assert!(set.for_webhook(ChannelKind::Woocommerce, "a").is_none());
    }
}
