//! Brightpearl API client (issue 3): auth, envelope, ID sets, search, budget pacing,
//! multi-message, typed calls and a reference-data cache.
//!
//! Every function talks to Brightpearl through [`BrightpearlApi`], implemented by
//! [`BrightpearlClient`]. Handles made with [`BrightpearlClient::with_priority`] share one
//! budget, so order writes go first when the account's request pool runs low.

pub mod budget;
pub mod client;
pub mod config;
mod credits;
pub mod idset;
pub mod movements;
pub mod multimessage;
mod oauth;
pub mod outcome;
pub mod purchasing;
pub mod search;
mod transport;
pub mod types;
mod writes;

pub use budget::{BudgetView, ClientStats, Priority};
pub use client::BrightpearlClient;
pub use config::{AuthConfig, AuthKind, BrightpearlConfig};
pub use movements::GoodsMovement;
pub use multimessage::Message;
pub use outcome::WriteOutcome;
pub use search::{ContactSearchRow, CustomerPaymentSearchRow, OrderSearchRow, Period, SalesOrderSearchRow};
pub use types::*;
pub use writes::{ReservationRequest, customer_payment_body, reservation_body, sales_order_body};

use crate::error::Result;
use std::collections::HashMap;

/// The Brightpearl calls the four functions make. Reads fail with `crate::Error`: a throttle
/// after the retries → `Throttled`; 5xx, timeouts, lost connections, odd shapes →
/// `Unavailable`; 401 → `Unauthorized`; a refused search filter or any other 4xx → `Rejected`
/// with Brightpearl's error code and message; a wait past the deadline → `Deadline`.
/// Order, reservation and payment writes answer one [`WriteOutcome`] each (see `outcome`).
#[async_trait::async_trait]
pub trait BrightpearlApi: Send + Sync {
    /// SKU → product id for the SKUs Brightpearl knows (unknown SKUs are absent). Served from
    /// a cached map: the whole catalogue is paged in once (500 rows a page), then refreshed by
    /// `updatedOn` when the TTL ends or a SKU is missing, and rebuilt daily. Before any full
    /// load, up to 3 unknown SKUs are looked up one `SKU=` search each instead.
    async fn products_by_sku(&self, skus: &[String]) -> Result<HashMap<String, u64>>;
    /// Every product id in the catalogue, from the same cached SKU map (loaded or refreshed
    /// as `products_by_sku` does; products without a SKU are not in it).
    async fn catalogue_product_ids(&self) -> Result<Vec<u64>>;
    /// (product id, SKU) of every product updated since `since` (the whole catalogue when
    /// None), from a product search; the cached SKU map is refreshed with the answer. For
    /// callers that keep their own mapping and cursor across processes.
    async fn product_skus_since(
        &self,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Vec<(u64, String)>>;
    async fn products(&self, ids: &[u64]) -> Result<Vec<Product>>;
    /// Product id → availability; products Brightpearl does not return are absent.
    async fn availability(&self, ids: &[u64]) -> Result<HashMap<u64, Availability>>;
    /// Reorder level and quantity per product in one warehouse.
    async fn warehouse_defaults(
        &self,
        warehouse_id: u64,
        product_ids: &[u64],
    ) -> Result<Vec<WarehouseDefaults>>;
    async fn warehouses(&self) -> Result<Vec<Warehouse>>;
    async fn order_statuses(&self) -> Result<Vec<OrderStatus>>;

    /// The contact whose primary email is exactly `email` (case-insensitive), lowest id first.
    async fn find_contact_by_email(&self, email: &str) -> Result<Option<Contact>>;
    async fn create_postal_address(&self, address: &PostalAddress) -> Result<u64>;
    async fn create_contact(&self, contact: &NewContact) -> Result<u64>;

    /// Each order in one atomic POST with all its rows (multi-messages of 10), stamped with
    /// the instance id. `Applied(id)` also when Brightpearl says the order already exists.
    async fn create_sales_orders(&self, orders: &[NewSalesOrder]) -> Vec<WriteOutcome<u64>>;
    async fn sales_orders(&self, ids: &[u64]) -> Result<Vec<SalesOrder>>;
    /// Sales orders whose externalRef is exactly `external_ref`, under any instance.
    async fn find_sales_orders_by_external_ref(&self, external_ref: &str)
    -> Result<Vec<SalesOrderSearchRow>>;
    /// Our sales order with this externalRef (instance id included), searching again a few
    /// times while a recent order may not be indexed yet.
    async fn find_sales_order_id(&self, external_ref: &str) -> Result<Option<u64>>;
    /// Allocates stock, one reservation per order. `Applied` also when the order already
    /// holds a reservation (checked with its GET after a refusal).
    async fn reserve_orders(&self, requests: &[ReservationRequest]) -> Vec<WriteOutcome<()>>;
    async fn reservation(&self, order_id: u64) -> Result<Option<Reservation>>;
    /// Each payment once: `Applied(id)` also when a payment with its `transactionRef` exists.
    async fn create_customer_payments(&self, payments: &[NewCustomerPayment]) -> Vec<WriteOutcome<u64>>;
    /// The payment on `order_id` with this `transactionRef`, from `customer-payment-search`.
    async fn find_customer_payment(&self, order_id: u64, transaction_ref: &str) -> Result<Option<u64>>;
    /// A sales credit against its parent sales order (one POST; see `credits`).
    async fn create_sales_credit(&self, credit: &NewSalesCredit) -> WriteOutcome<u64>;
    /// The sales credit with this externalRef under our instance id, searched through index lag.
    async fn find_sales_credit_id(&self, external_ref: &str) -> Result<Option<u64>>;
    async fn close_sales_credit(&self, credit_id: u64) -> WriteOutcome<()>;
    /// Sales credits by id (ID-set GETs), in the sales-order shape with Brightpearl's totalValue.
    async fn sales_credits(&self, ids: &[u64]) -> Result<Vec<SalesOrder>>;
    async fn update_order_status(&self, order_id: u64, status_id: u64, note: Option<&str>) -> Result<()>;
    async fn add_order_note(&self, order_id: u64, text: &str) -> Result<u64>;

    async fn goods_out_notes(&self, note_ids: &[u64]) -> Result<Vec<GoodsOutNote>>;
    /// Goods-out notes shipped since `since`, by the goods-out search's `shippedOn` (it has no
    /// `updatedOn`): the sweep that catches a missed `goods-out-note.modified.shipped`.
    async fn goods_out_notes_shipped_since(&self, since: chrono::DateTime<chrono::Utc>) -> Result<Vec<u64>>;
    /// Goods movements updated since `since` (`goods-movement-search` by `updatedOn`, every
    /// page). Whether reservations appear there is unknown (apis.md §8.2).
    async fn goods_movements_since(&self, since: chrono::DateTime<chrono::Utc>)
    -> Result<Vec<GoodsMovement>>;
    async fn goods_in_notes(&self, note_ids: &[u64]) -> Result<Vec<GoodsInNote>>;
    /// Every goods-in note of these purchase orders (the fallback poll of receipts).
    async fn goods_in_notes_for_orders(&self, order_ids: &[u64]) -> Result<Vec<GoodsInNote>>;

    /// Creates the PO header, then its rows in multi-messages of 10. To resume after a
    /// failure, call [`BrightpearlApi::create_purchase_order_header`] and
    /// [`BrightpearlApi::add_purchase_order_rows`] yourself with the rows still missing.
    async fn create_purchase_order(&self, order: &NewPurchaseOrder) -> Result<CreatedPurchaseOrder>;
    async fn create_purchase_order_header(&self, order: &NewPurchaseOrder) -> Result<u64>;
    /// Adds rows to an existing PO; returns the new row ids in order.
    async fn add_purchase_order_rows(&self, order_id: u64, rows: &[NewPurchaseOrderRow]) -> Result<Vec<u64>>;
    /// POs of `supplier_id` whose status is not received, completed, closed or cancelled.
    async fn open_purchase_orders(&self, supplier_id: u64) -> Result<Vec<OrderSearchRow>>;
    async fn purchase_orders(&self, ids: &[u64]) -> Result<Vec<PurchaseOrder>>;
    /// One product-search page (500) of (product id, `primarySupplierId`) from `first_result`.
    async fn primary_suppliers_page(&self, first_result: u64) -> Result<purchasing::PrimarySupplierPage>;
    /// `product/{ids}/supplier` in ID sets of 200; a set refused with 400 is split until the
    /// bad ids are isolated and reported.
    async fn product_suppliers(&self, ids: &[u64]) -> Result<purchasing::ProductSuppliers>;
    /// The account's purchase-order statuses with their flags.
    async fn purchase_order_statuses(&self) -> Result<Vec<purchasing::PurchaseOrderStatus>>;
    /// Purchase orders (type 2) in any of these statuses, every page.
    async fn purchase_orders_in_statuses(
        &self,
        status_ids: &[u64],
    ) -> Result<Vec<purchasing::PurchaseOrderSearchRow>>;

    async fn subscribe_webhook(&self, subscription: &WebhookSubscription) -> Result<u64>;
    async fn list_webhooks(&self) -> Result<Vec<WebhookSubscription>>;

    fn stats(&self) -> ClientStats;
    /// The running invocation's deadline: no call waits past it (see `Error::Deadline`).
    fn set_deadline(&self, deadline: Option<std::time::Instant>);
    /// Ids an ID-set GET found refused (deleted or invalid), with the reason; they were
    /// skipped and the rest of their sets read.
    fn refused_ids(&self) -> Vec<(u64, String)>;
    /// The request budget as this process sees it; None where there is no budget (test doubles).
    fn budget_view(&self) -> Option<BudgetView> {
        None
    }
}
