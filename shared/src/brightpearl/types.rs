//! Typed Brightpearl resources, in the shapes our functions need. Wire names follow the API;
//! unknown fields are ignored so additions on Brightpearl's side never break a read.

use crate::money::Decimal;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: u64,
    pub sku: Option<String>,
    /// The primary supplier (`primarySupplierId`), when the product has one. The product GET
    /// carries no supplier list: see `purchasing::product_suppliers` for the rest.
    pub supplier_ids: Vec<u64>,
    pub stock_tracked: bool,
}

impl Product {
    /// Reads a Product GET element.
    pub(crate) fn from_wire(v: &Value) -> Option<Product> {
        let id = v.get("id")?.as_u64()?;
        let sku = v.pointer("/identity/sku").and_then(Value::as_str).map(str::to_string);
        let stock_tracked = v.pointer("/stock/stockTracked").and_then(Value::as_bool).unwrap_or(true);
        let supplier_ids =
            v.get("primarySupplierId").and_then(Value::as_u64).filter(|id| *id > 0).into_iter().collect();
        Some(Product { id, sku, supplier_ids, stock_tracked })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockLevels {
    /// onHand + allocated.
    #[serde(default)]
    pub in_stock: i64,
    /// Unallocated, sellable (inferred from the docs' arithmetic; UNCONFIRMED).
    #[serde(default)]
    pub on_hand: i64,
    #[serde(default)]
    pub allocated: i64,
    #[serde(default)]
    pub in_transit: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    #[serde(default)]
    pub total: StockLevels,
    /// Warehouse id → levels. Warehouses that never held the product may be absent.
    #[serde(default)]
    pub warehouses: BTreeMap<u64, StockLevels>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WarehouseDefaults {
    pub product_id: u64,
    #[serde(default)]
    pub default_location_id: Option<u64>,
    #[serde(default)]
    pub reorder_level: Option<i64>,
    #[serde(default)]
    pub reorder_quantity: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warehouse {
    pub id: u64,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    pub id: u64,
    pub primary_email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostalAddress {
    pub address_line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line2: Option<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line3: Option<String>,
    /// State / county.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line4: Option<String>,
    #[serde(default)]
    pub postal_code: String,
    /// ISO 3166 alpha-3 per the docs (alpha-2 acceptance UNCONFIRMED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_iso_code: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewContact {
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub telephone: Option<String>,
    /// Used as the default, billing and delivery address.
    pub postal_address_id: Option<u64>,
    pub is_supplier: bool,
}

/// A delivery address on a sales order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_full_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    pub address_line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line4: Option<String>,
    #[serde(default)]
    pub postal_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_iso_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewOrderRow {
    pub product_id: u64,
    /// Row description; Brightpearl uses the product name when absent.
    pub name: Option<String>,
    pub quantity: i64,
    /// Net row value (the whole row) in the order currency, at most 4 decimals on the wire.
    pub net: Decimal,
    pub tax: Decimal,
    pub tax_code: Option<String>,
    /// Brightpearl nominal code; `None` leaves it to the account's defaulting rules.
    pub nominal_code: Option<String>,
    /// The channel line-item id, to map shipments back.
    pub external_ref: Option<String>,
}

/// One atomic sales-order POST with all its rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewSalesOrder {
    pub customer_id: u64,
    /// `{store}:{channel order id}`. With the installed integration instance id, which the
    /// client stamps on every write, it is unique per account.
    pub external_ref: String,
    /// The channel order name shown to staff (`ref`).
    pub reference: Option<String>,
    pub channel_id: Option<u64>,
    pub currency_code: String,
    /// A fixed exchange rate to the account's base currency (units of `currency_code` per
    /// base unit), when the channel applied one.
    pub exchange_rate: Option<Decimal>,
    pub price_list_id: Option<u64>,
    pub warehouse_id: Option<u64>,
    pub status_id: Option<u64>,
    pub placed_on: Option<DateTime<Utc>>,
    pub delivery_address: Option<OrderAddress>,
    pub shipping_method_id: Option<u64>,
    pub rows: Vec<NewOrderRow>,
    /// Notes to add to the order once created (full text of shortened address fields).
    pub notes: Vec<String>,
}

/// One sales credit (a channel refund): the sales-order shape, `externalRef`
/// `{store}:{order}:refund:{id}`, credited against `parent_id`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewSalesCredit {
    pub parent_id: u64,
    pub order: NewSalesOrder,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderRow {
    pub id: u64,
    pub product_id: Option<u64>,
    pub quantity: i64,
    pub external_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SalesOrder {
    pub id: u64,
    pub customer_id: Option<u64>,
    pub external_ref: Option<String>,
    pub installed_integration_instance_id: Option<u64>,
    pub channel_id: Option<u64>,
    pub status_id: Option<u64>,
    pub warehouse_id: Option<u64>,
    pub rows: Vec<OrderRow>,
    /// Brightpearl's own order total (`totalValue.total`), when the GET carries it.
    pub total_value: Option<Decimal>,
}

/// A purchase order read back (Order GET of a PO).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PurchaseOrder {
    pub id: u64,
    pub supplier_id: Option<u64>,
    pub status_id: Option<u64>,
    pub warehouse_id: Option<u64>,
    pub reference: Option<String>,
    pub rows: Vec<OrderRow>,
}

/// One line of a reservation: the sales-order row and how many to allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRow {
    pub row_id: u64,
    pub product_id: u64,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub order_id: u64,
    pub warehouse_id: u64,
    pub rows: Vec<ReservationRow>,
}

/// Brightpearl's customer-payment types (apis.md §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentType {
    Auth,
    Capture,
    /// Money paid out: a refund against a sales credit.
    Payment,
    /// Money received against a sales order.
    #[default]
    Receipt,
    Void,
}

impl PaymentType {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentType::Auth => "AUTH",
            PaymentType::Capture => "CAPTURE",
            PaymentType::Payment => "PAYMENT",
            PaymentType::Receipt => "RECEIPT",
            PaymentType::Void => "VOID",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCustomerPayment {
    pub order_id: u64,
    /// Deterministic (`{store}:{order}:{transaction}`, ≤ 64): Brightpearl refuses a second
    /// payment with the same `transactionRef` + `paymentMethodCode`, so a repeat is harmless.
    pub transaction_ref: String,
    pub payment_type: PaymentType,
    /// e.g. `SHOPIFY`, a payment method code configured on the account.
    pub payment_method_code: String,
    pub currency_code: String,
    pub amount: Decimal,
    pub payment_date: DateTime<Utc>,
    /// The channel transaction id, visible to staff.
    pub journal_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoodsNoteRow {
    /// Sales-order row (goods-out) or purchase-order row (goods-in).
    pub order_row_id: Option<u64>,
    pub product_id: u64,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoodsOutNote {
    pub id: u64,
    pub order_id: u64,
    pub warehouse_id: Option<u64>,
    pub shipped: bool,
    /// `shipping.reference`: the tracking number.
    pub tracking_reference: Option<String>,
    pub shipping_method_id: Option<u64>,
    /// Carrier name, when the account records one (sandbox: `shipping.carrier`).
    pub carrier: Option<String>,
    pub rows: Vec<GoodsNoteRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoodsInNote {
    pub id: u64,
    pub purchase_order_id: u64,
    pub warehouse_id: Option<u64>,
    pub received_on: Option<String>,
    pub rows: Vec<GoodsNoteRow>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewPurchaseOrderRow {
    pub product_id: u64,
    pub quantity: i64,
    pub net: f64,
    pub tax: f64,
    pub tax_code: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewPurchaseOrder {
    pub supplier_id: u64,
    pub warehouse_id: Option<u64>,
    pub currency_code: String,
    /// Our idempotency handle, stored as the PO `reference` (searchable by staff).
    pub reference: Option<String>,
    pub status_id: Option<u64>,
    pub delivery_date: Option<DateTime<Utc>>,
    pub rows: Vec<NewPurchaseOrderRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedPurchaseOrder {
    pub order_id: u64,
    /// Row ids in the order of the rows given (for the rows that were created).
    pub row_ids: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatus {
    #[serde(rename = "statusId")]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "orderTypeCode", default)]
    pub order_type_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSubscription {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub subscribe_to: String,
    pub http_method: String,
    pub uri_template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default)]
    pub id_set_accepted: bool,
    #[serde(default)]
    pub quality_of_service: u8,
}

impl WebhookSubscription {
    /// The conventional JSON body, with ids as an ID set and `raisedOn` for dedup.
    pub fn json_post(subscribe_to: &str, uri: &str) -> Self {
        WebhookSubscription {
            id: None,
            subscribe_to: subscribe_to.into(),
            http_method: "POST".into(),
            uri_template: uri.into(),
            body_template: Some(
                r#"{"accountCode":"${account-code}","resourceType":"${resource-type}","id":"${resource-id}","lifecycleEvent":"${lifecycle-event}","fullEvent":"${full-event}","raisedOn":"${raised-on}","brightpearlVersion":"${brightpearl-version}"}"#
                    .into(),
            ),
            content_type: Some("application/json".into()),
            id_set_accepted: true,
            quality_of_service: 1,
        }
    }
}

/// A webhook delivery rendered from the conventional body template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    #[serde(default)]
    pub account_code: String,
    #[serde(default)]
    pub resource_type: String,
    /// An ID set (`"1-5,99"`); parse with [`crate::brightpearl::idset::parse`].
    pub id: String,
    #[serde(default)]
    pub lifecycle_event: String,
    #[serde(default)]
    pub full_event: String,
    #[serde(default)]
    pub raised_on: Option<String>,
}

impl WebhookEvent {
    pub fn ids(&self) -> crate::Result<Vec<u64>> {
        super::idset::parse(&self.id)
    }
}
