//! The simulated account's data, kept in memory. Everything is `Serialize` so tests can
//! dump it and assert on it.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Order status ids the sandbox knows. Sales: 1 draft, 2 new, 4 invoiced, 5 cancelled.
/// Purchase: 6 pending, 7 placed, 8 received, 9 cancelled.
pub const SO_STATUS_NEW: u64 = 2;
pub const SO_STATUS_CANCELLED: u64 = 5;
pub const PO_STATUS_PENDING: u64 = 6;
pub const PO_STATUS_RECEIVED: u64 = 8;
pub const ORDER_STATUSES: &[(u64, &str, &str)] = &[
    (1, "Draft / Quote", "SO"),
    (SO_STATUS_NEW, "New web order", "SO"),
    (4, "Invoiced", "SO"),
    (SO_STATUS_CANCELLED, "Cancelled", "SO"),
    (PO_STATUS_PENDING, "Pending PO", "PO"),
    (7, "Placed with supplier", "PO"),
    (PO_STATUS_RECEIVED, "Received", "PO"),
    (9, "Cancelled PO", "PO"),
];
/// Brightpearl's order type ids (apis.md §8.1): SO 1, PO 2, SC 3, PC 4.
pub const ORDER_TYPE_SALES: u64 = 1;
pub const ORDER_TYPE_PURCHASE: u64 = 2;
pub const ORDER_TYPE_SALES_CREDIT: u64 = 3;
pub const ORDER_TYPE_PURCHASE_CREDIT: u64 = 4;

/// The `orderTypeId` of an order kept with type code `SO`, `PO`, `SC` or `PC`.
pub fn order_type_id(code: &str) -> u64 {
    match code {
        "PO" => ORDER_TYPE_PURCHASE,
        "SC" => ORDER_TYPE_SALES_CREDIT,
        "PC" => ORDER_TYPE_PURCHASE_CREDIT,
        _ => ORDER_TYPE_SALES,
    }
}

/// The `state` flag each status carries in the status list. Only `draft` is recorded from a
/// live account; the terminal values are the ones pearlsync reads as closed. Names are the
/// account's own words and deliberately say nothing the code may rely on.
pub fn order_status_state(status_id: u64) -> &'static str {
    match status_id {
        1 | PO_STATUS_PENDING => "draft",
        SO_STATUS_CANCELLED | 9 => "cancelled",
        4 | PO_STATUS_RECEIVED => "completed",
        _ => "open",
    }
}

/// What `seed` builds: N products (`SKU-00001`…), W warehouses, S suppliers, all derived from
/// `seed` so two runs with the same spec hold the same data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedSpec {
    pub products: u32,
    pub warehouses: u32,
    #[serde(default = "default_suppliers")]
    pub suppliers: u32,
    #[serde(default)]
    pub seed: u64,
}

fn default_suppliers() -> u32 {
    3
}

impl Default for SeedSpec {
    fn default() -> Self {
        SeedSpec { products: 20, warehouses: 2, suppliers: 3, seed: 1 }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProductRec {
    pub id: u64,
    pub sku: String,
    pub name: String,
    /// `primarySupplierId` (product payload and product-search); None when the account has none.
    pub primary_supplier_id: Option<u64>,
    /// What `product/{ids}/supplier` lists (the primary is not necessarily among them).
    pub supplier_ids: Vec<u64>,
    pub stock_tracked: bool,
    pub created_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StockRec {
    /// Unallocated, sellable.
    pub on_hand: i64,
    pub allocated: i64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DefaultsRec {
    pub reorder_level: i64,
    pub reorder_quantity: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactRec {
    pub id: u64,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub is_supplier: bool,
    pub postal_address_id: Option<u64>,
    pub created_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RowRec {
    pub id: u64,
    pub product_id: Option<u64>,
    pub name: String,
    pub quantity: i64,
    pub net: f64,
    pub tax: f64,
    pub tax_code: Option<String>,
    pub external_ref: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderRec {
    pub id: u64,
    /// `SO` or `PO`.
    pub order_type: String,
    pub contact_id: u64,
    pub reference: Option<String>,
    pub external_ref: Option<String>,
    pub installed_integration_instance_id: Option<u64>,
    pub channel_id: Option<u64>,
    pub currency: String,
    pub price_list_id: Option<u64>,
    pub warehouse_id: Option<u64>,
    pub status_id: u64,
    pub delivery: Value,
    pub rows: Vec<RowRec>,
    pub notes: Vec<String>,
    pub created_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReservationRec {
    pub order_id: u64,
    pub warehouse_id: u64,
    /// Row id → (product id, quantity allocated).
    pub rows: BTreeMap<u64, (u64, i64)>,
    /// Shipped on a goods-out note: its stock has left the building.
    pub fulfilled: bool,
}

/// A customer payment Brightpearl accepted.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentRec {
    pub id: u64,
    pub order_id: u64,
    /// `amountPaid` as a number (for quick sums); `amount_paid` keeps the text as sent.
    pub amount: f64,
    pub currency: String,
    /// `paymentMethodCode`.
    pub method: String,
    pub journal_ref: Option<String>,
    pub transaction_ref: Option<String>,
    pub transaction_code: Option<String>,
    /// AUTH, CAPTURE, PAYMENT, RECEIPT or VOID.
    pub payment_type: String,
    /// `amountPaid` exactly as the request carried it (a JSON number's text or a string).
    pub amount_paid: String,
    pub payment_date: Option<String>,
    pub created_on: DateTime<Utc>,
}

/// Every customer-payment POST that reached the account (plain or inside a multi-message),
/// accepted or refused, with the body fields that decide payments.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentPostRec {
    pub order_id: Option<u64>,
    pub transaction_ref: Option<String>,
    pub payment_method_code: Option<String>,
    pub payment_type: Option<String>,
    pub amount_paid: Option<String>,
    pub currency_iso_code: Option<String>,
    /// HTTP status of the answer (inside a multi-message: the message's status).
    pub status: u16,
    /// The payment created, when accepted.
    pub payment_id: Option<u64>,
    /// The error code, when refused.
    pub error_code: Option<String>,
}

/// What makes an order (kept in `orders` with type `SC`) a sales credit.
#[derive(Debug, Clone, Serialize)]
pub struct CreditRec {
    pub credit_id: u64,
    /// The sales order credited.
    pub parent_id: u64,
    pub closed: bool,
    pub tax_date: Option<String>,
}

/// One stock change, as `goods-movement-search` lists it. Reservations are not movements.
#[derive(Debug, Clone, Serialize)]
pub struct GoodsMovementRec {
    pub id: u64,
    pub product_id: u64,
    pub warehouse_id: u64,
    /// Signed: positive in, negative out.
    pub quantity: i64,
    pub goods_note_id: Option<u64>,
    /// `GO` goods out, `GI` goods in, `SC` stock correction.
    pub goods_note_type_code: String,
    pub updated_on: DateTime<Utc>,
}

/// The answer to a repeated sales-order / sales-credit POST whose externalRef and
/// installedIntegrationInstanceId both match an existing one (Brightpearl: 200, "no changes
/// will be made"; whether the body holds the original id is unknown, apis.md §8.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicatePostAnswer {
    /// `{"response": "Sales order already exists, no changes will be made"}`: no id.
    #[default]
    NoId,
    /// A 200 with an empty body.
    Empty,
    /// `{"response": <original id>}`.
    OriginalId,
}

/// Behaviour switches, set through the control API; they survive a reseed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub duplicate_post_answer: DuplicatePostAnswer,
    /// How long a new sales order or credit stays out of the searches.
    #[serde(default)]
    pub search_lag_ms: u64,
    /// Tests only: Brightpearl's externalRef + instance uniqueness switched off, so the saga's
    /// own checks are the only guard and a repeated POST shows as a second order.
    #[serde(default)]
    pub external_ref_dedup_off: bool,
    /// Tests only: the `totalValue` that order and credit GETs serve is off from the stored
    /// rows by this many ten-thousandths, standing in for a total Brightpearl works out
    /// otherwise than the rows sent (when it would is unknown), so a read-back check can fire.
    #[serde(default)]
    pub total_value_skew_4dp: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoteRowRec {
    pub row_id: u64,
    pub product_id: u64,
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GoodsOutRec {
    pub id: u64,
    pub order_id: u64,
    pub warehouse_id: u64,
    pub shipped: bool,
    pub tracking: Option<String>,
    pub carrier: Option<String>,
    pub shipping_method_id: Option<u64>,
    pub rows: Vec<NoteRowRec>,
    /// When the note was shipped (`status.shippedOn`; the goods-out search filters on it).
    pub shipped_on: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GoodsInRec {
    pub id: u64,
    pub order_id: u64,
    pub warehouse_id: u64,
    pub received_on: DateTime<Utc>,
    pub rows: Vec<NoteRowRec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRec {
    #[serde(default)]
    pub id: u64,
    pub subscribe_to: String,
    pub http_method: String,
    pub uri_template: String,
    #[serde(default)]
    pub body_template: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub id_set_accepted: bool,
    #[serde(default)]
    pub quality_of_service: u8,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct State {
    pub products: BTreeMap<u64, ProductRec>,
    pub warehouses: BTreeMap<u64, String>,
    /// Product → warehouse → stock.
    pub stock: BTreeMap<u64, BTreeMap<u64, StockRec>>,
    /// Warehouse → product → reorder settings.
    pub defaults: BTreeMap<u64, BTreeMap<u64, DefaultsRec>>,
    pub contacts: BTreeMap<u64, ContactRec>,
    pub addresses: BTreeMap<u64, Value>,
    pub orders: BTreeMap<u64, OrderRec>,
    pub reservations: BTreeMap<u64, ReservationRec>,
    pub payments: Vec<PaymentRec>,
    /// Every customer-payment POST, accepted or refused.
    pub payment_posts: Vec<PaymentPostRec>,
    /// Sales credit id → its parent and close state.
    pub credits: BTreeMap<u64, CreditRec>,
    pub goods_movements: Vec<GoodsMovementRec>,
    /// Order id → when it shows in the searches (search-index lag); absent = at once.
    pub search_visible_from: BTreeMap<u64, DateTime<Utc>>,
    pub settings: Settings,
    pub goods_out: BTreeMap<u64, GoodsOutRec>,
    pub goods_in: BTreeMap<u64, GoodsInRec>,
    pub webhooks: BTreeMap<u64, WebhookRec>,
    /// Carrier name → shipping method id.
    pub shipping_methods: BTreeMap<String, u64>,
    pub next_id: BTreeMap<String, u64>,
}

/// The seeded catalogue's timestamps: fixed, so seeds are reproducible.
pub fn seed_epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

impl State {
    pub fn next(&mut self, kind: &str) -> u64 {
        let start = match kind {
            "product" => 1001,
            "contact" => 201,
            "order" => 10_001,
            "row" => 1,
            _ => 1,
        };
        let slot = self.next_id.entry(kind.to_string()).or_insert(start);
        let id = *slot;
        *slot += 1;
        id
    }

    /// Records one stock change for `goods-movement-search`.
    pub fn record_movement(
        &mut self,
        product_id: u64,
        warehouse_id: u64,
        quantity: i64,
        goods_note: Option<u64>,
        type_code: &str,
    ) {
        if quantity == 0 {
            return;
        }
        let id = self.next("goods-movement");
        self.goods_movements.push(GoodsMovementRec {
            id,
            product_id,
            warehouse_id,
            quantity,
            goods_note_id: goods_note,
            goods_note_type_code: type_code.to_string(),
            updated_on: Utc::now(),
        });
    }

    /// Whether the searches can see the order yet (search-index lag).
    pub fn searchable(&self, order_id: u64, now: DateTime<Utc>) -> bool {
        self.search_visible_from.get(&order_id).is_none_or(|t| now >= *t)
    }

    pub fn seeded(spec: SeedSpec) -> State {
        let mut s = State::default();
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let epoch = seed_epoch();
        for w in 1..=spec.warehouses.max(1) as u64 {
            s.warehouses.insert(w, format!("Warehouse {w}"));
        }
        let suppliers: Vec<u64> = (1..=spec.suppliers)
            .map(|n| {
                let id = s.next("contact");
                s.contacts.insert(
                    id,
                    ContactRec {
                        id,
                        first_name: "Supplier".into(),
                        last_name: format!("{n}"),
                        email: Some(format!("supplier{n}@example.test")),
                        is_supplier: true,
                        postal_address_id: None,
                        created_on: epoch,
                        updated_on: epoch,
                    },
                );
                id
            })
            .collect();
        let warehouses: Vec<u64> = s.warehouses.keys().copied().collect();
        for i in 1..=spec.products as u64 {
            let id = s.next("product");
            let supplier_ids = if suppliers.is_empty() {
                vec![]
            } else {
                vec![suppliers[(i as usize - 1) % suppliers.len()]]
            };
            s.products.insert(
                id,
                ProductRec {
                    id,
                    sku: format!("SKU-{i:05}"),
                    name: format!("Product {i}"),
                    primary_supplier_id: supplier_ids.first().copied(),
                    supplier_ids,
                    stock_tracked: true,
                    created_on: epoch,
                    updated_on: epoch,
                },
            );
            for &w in &warehouses {
                s.stock.entry(id).or_default().insert(w, StockRec { on_hand: rng.i64(0..=40), allocated: 0 });
                s.defaults.entry(w).or_default().insert(
                    id,
                    DefaultsRec {
                        reorder_level: rng.i64(0..=15),
                        reorder_quantity: [5, 10, 20, 25, 50][rng.usize(0..5)],
                    },
                );
            }
        }
        s
    }
}
