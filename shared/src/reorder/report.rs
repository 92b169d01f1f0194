//! What a check reports: plans, created and failed purchase orders, skipped products, goods-in.

use crate::brightpearl::{NewPurchaseOrder, NewPurchaseOrderRow};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoLine {
    pub product_id: u64,
    pub quantity: i64,
}

/// A PO as we send it: header fields and rows. Dry runs report these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchaseOrderPlan {
    pub supplier_id: u64,
    pub warehouse_id: u64,
    pub reference: String,
    pub currency_code: String,
    pub tax_code: String,
    pub rows: Vec<PoLine>,
}

impl PurchaseOrderPlan {
    pub(super) fn header(&self) -> NewPurchaseOrder {
        NewPurchaseOrder {
            supplier_id: self.supplier_id,
            warehouse_id: Some(self.warehouse_id),
            currency_code: self.currency_code.clone(),
            reference: Some(self.reference.clone()),
            ..Default::default()
        }
    }

    pub(super) fn row(&self, line: &PoLine) -> NewPurchaseOrderRow {
        NewPurchaseOrderRow {
            product_id: line.product_id,
            quantity: line.quantity,
            net: 0.0,
            tax: 0.0,
            tax_code: self.tax_code.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Has a reorder level but Brightpearl gives no availability: not stock tracked.
    NotStockTracked,
    /// Short, but Brightpearl names no supplier (no primary, none listed, or the id refused).
    NoSupplier,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedProduct {
    pub product_id: u64,
    pub warehouse_id: u64,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedPo {
    pub supplier_id: u64,
    pub warehouse_id: u64,
    pub purchase_order_id: u64,
    pub reference: String,
    pub rows: Vec<PoLine>,
    /// Finished from a record an earlier invocation planned.
    pub resumed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedPo {
    pub supplier_id: u64,
    pub warehouse_id: u64,
    pub reference: String,
    pub reason: String,
    /// The next run resumes it.
    pub retryable: bool,
    /// Brightpearl refused it for good: its record is closed and the failure parked.
    pub parked: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GoodsInReport {
    pub purchase_orders_checked: usize,
    pub notes_applied: Vec<u64>,
    /// POs whose records closed (fully received, or no longer open in Brightpearl).
    pub closed: Vec<u64>,
    /// Products sent to inventory-poll as `StockChanged`.
    pub products_received: Vec<u64>,
}

impl GoodsInReport {
    pub(super) fn merge(&mut self, other: GoodsInReport) {
        self.purchase_orders_checked += other.purchase_orders_checked;
        self.notes_applied.extend(other.notes_applied);
        self.closed.extend(other.closed);
        for p in other.products_received {
            if !self.products_received.contains(&p) {
                self.products_received.push(p);
            }
        }
    }
}

/// Purchase orders counted as on order when the scan started (this invocation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OnOrderReport {
    /// PO status ids treated as closed, and whether they came from the configuration.
    pub closed_status_ids: Vec<u64>,
    pub closed_statuses_configured: bool,
    /// Open purchase orders in Brightpearl (ours and others').
    pub open_purchase_orders: usize,
    /// Sum of ordered − received over their rows, plus our rows not yet created.
    pub unreceived_quantity: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReorderReport {
    pub dry_run: bool,
    /// The check is finished: catalogue scanned and every planned PO created (or failed for
    /// good). False when the invocation ran out of time; the next one resumes.
    pub complete: bool,
    /// This invocation continued a scan an earlier one started.
    pub resumed_scan: bool,
    pub warehouses: Vec<u64>,
    /// Products scanned by this invocation.
    pub products_checked: usize,
    /// (product, warehouse) pairs without a positive reorder level, scanned by this invocation.
    pub no_reorder_level: usize,
    /// POs created (or finished) by this invocation.
    pub purchase_orders: Vec<CreatedPo>,
    /// Dry run: what would be sent, per supplier and warehouse.
    pub planned: Vec<PurchaseOrderPlan>,
    pub skipped: Vec<SkippedProduct>,
    pub failed: Vec<FailedPo>,
    pub on_order: OnOrderReport,
    pub goods_in: GoodsInReport,
    /// Requests this invocation made to Brightpearl.
    pub brightpearl_requests: u64,
    /// Another check was running: this one did nothing (two at once could both raise a PO).
    pub skipped_concurrent_run: bool,
}
