//! What is on order: the open, unreceived quantities of every purchase order in Brightpearl,
//! ours and others', plus the rows of our records not yet created there.
//!
//! **Which POs are open.** Brightpearl has no "open" flag on an order; the status decides. A
//! status is *closed* (received, completed, cancelled: nothing more will arrive) when
//! - the configuration lists its id (`closed_po_status_ids`, `REORDER_CLOSED_PO_STATUS_IDS`),
//!   which replaces the default entirely; or, with nothing configured,
//! - the account's status list flags it: its `state` is one of [`CLOSED_STATES`]. Only the
//!   `draft` value is recorded from a live account; the terminal values are our reading of
//!   the field. Status names are never read: they are the account's own words.
//!
//! Every other PO status is open, disabled ones included (old POs may still sit in them).
//! An account whose list flags nothing closed gets a warning: then only receipts reduce what
//! is on order, and a PO closed short keeps counting until its status id is configured.
//!
//! **How much.** Per row: ordered − received, received being the goods-in notes' quantities
//! for that PO row (by `purchaseOrderRowId`, else by product on that PO), never below zero.
//! A PO without a delivery warehouse counts in every warehouse in scope.

use super::ReorderChecker;
use super::record::Tracked;
use super::report::OnOrderReport;
use crate::brightpearl::purchasing::PurchaseOrderStatus;
use crate::brightpearl::{GoodsInNote, PurchaseOrder};
use crate::error::Result;
use std::collections::{BTreeSet, HashMap};

/// `state` flags of a PO status after which nothing more arrives.
pub const CLOSED_STATES: &[&str] = &["closed", "completed", "complete", "cancelled", "canceled"];

/// The PO status ids in which a PO no longer counts as on order (see the module doc).
pub fn closed_status_ids(statuses: &[PurchaseOrderStatus], configured: &[u64]) -> BTreeSet<u64> {
    if !configured.is_empty() {
        return configured.iter().copied().collect();
    }
    statuses
        .iter()
        .filter(|s| {
            s.state
                .as_deref()
                .is_some_and(|state| CLOSED_STATES.iter().any(|c| state.eq_ignore_ascii_case(c)))
        })
        .map(|s| s.id)
        .collect()
}

/// Ordered − received per row of one PO: (product id, unreceived quantity).
pub fn unreceived(po: &PurchaseOrder, notes: &[GoodsInNote]) -> Vec<(u64, i64)> {
    let mut by_row: HashMap<u64, i64> = HashMap::new();
    let mut by_product: HashMap<u64, i64> = HashMap::new();
    for note in notes.iter().filter(|n| n.purchase_order_id == po.id) {
        for r in &note.rows {
            match r.order_row_id.filter(|id| po.rows.iter().any(|row| row.id == *id)) {
                Some(row) => *by_row.entry(row).or_default() += r.quantity,
                None => *by_product.entry(r.product_id).or_default() += r.quantity,
            }
        }
    }
    let mut out = Vec::new();
    for row in &po.rows {
        let Some(product) = row.product_id else { continue };
        let mut left = row.quantity - by_row.get(&row.id).copied().unwrap_or(0);
        // A receipt that names only the product goes against the first rows that still wait.
        if let Some(spare) = by_product.get_mut(&product) {
            let take = (*spare).min(left.max(0));
            *spare -= take;
            left -= take;
        }
        out.push((product, left.max(0)));
    }
    out
}

/// On order per (product, warehouse), and the POs Brightpearl lists as open.
pub(super) struct OnOrder {
    pub(super) quantities: HashMap<(u64, u64), i64>,
    pub(super) open_po_ids: BTreeSet<u64>,
    pub(super) report: OnOrderReport,
}

impl OnOrder {
    pub(super) fn get(&self, product_id: u64, warehouse_id: u64) -> i64 {
        self.quantities.get(&(product_id, warehouse_id)).copied().unwrap_or(0)
    }
}

impl ReorderChecker {
    /// Reads Brightpearl's open POs (search by open status, PO GET, their goods-in notes) and
    /// adds our records' rows that Brightpearl does not hold yet. Records whose PO is no
    /// longer open are not counted (the caller closes them).
    pub(super) async fn on_order(&self, ours: &[Tracked], warehouses: &[u64]) -> Result<OnOrder> {
        let statuses = self.brightpearl.purchase_order_statuses().await?;
        let closed = closed_status_ids(&statuses, &self.config.closed_po_status_ids);
        if closed.is_empty() {
            tracing::warn!(
                "no purchase-order status is flagged closed: set REORDER_CLOSED_PO_STATUS_IDS so POs closed short stop counting as on order"
            );
        }
        let open_statuses: Vec<u64> =
            statuses.iter().map(|s| s.id).filter(|id| !closed.contains(id)).collect();
        let open_po_ids: BTreeSet<u64> = if open_statuses.is_empty() {
            BTreeSet::new()
        } else {
            self.brightpearl
                .purchase_orders_in_statuses(&open_statuses)
                .await?
                .into_iter()
                .map(|r| r.order_id)
                .collect()
        };
        let ids: Vec<u64> = open_po_ids.iter().copied().collect();
        let (pos, notes) = if ids.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            (
                self.brightpearl.purchase_orders(&ids).await?,
                self.brightpearl.goods_in_notes_for_orders(&ids).await?,
            )
        };
        let mut quantities: HashMap<(u64, u64), i64> = HashMap::new();
        let mut total = 0i64;
        for po in &pos {
            let into: Vec<u64> = po.warehouse_id.map_or_else(|| warehouses.to_vec(), |w| vec![w]);
            for (product, left) in unreceived(po, &notes) {
                total += left;
                for &w in &into {
                    *quantities.entry((product, w)).or_default() += left;
                }
            }
        }
        // Our rows Brightpearl does not have yet: records not created, or created in part.
        for t in ours {
            if t.record.purchase_order_id.is_some_and(|id| !open_po_ids.contains(&id)) {
                continue;
            }
            for l in t.record.lines.iter().filter(|l| l.row_id.is_none()) {
                let left = (l.quantity - l.received).max(0);
                total += left;
                *quantities.entry((l.product_id, t.record.plan.warehouse_id)).or_default() += left;
            }
        }
        Ok(OnOrder {
            quantities,
            report: OnOrderReport {
                closed_status_ids: closed.iter().copied().collect(),
                closed_statuses_configured: !self.config.closed_po_status_ids.is_empty(),
                open_purchase_orders: open_po_ids.len(),
                unreceived_quantity: total,
            },
            open_po_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brightpearl::{GoodsNoteRow, OrderRow};

    fn status(id: u64, state: Option<&str>) -> PurchaseOrderStatus {
        PurchaseOrderStatus {
            id,
            name: format!("Status {id}"),
            state: state.map(str::to_string),
            disabled: false,
        }
    }

    #[test]
    fn closed_statuses_come_from_flags_unless_configured() {
        let statuses = [
            status(6, Some("draft")),
            status(7, Some("open")),
            status(8, Some("COMPLETED")),
            status(9, Some("cancelled")),
            status(10, None),
        ];
        assert_eq!(closed_status_ids(&statuses, &[]), BTreeSet::from([8, 9]));
        // The configuration replaces the flags: here 8 is held open on purpose.
        assert_eq!(closed_status_ids(&statuses, &[9, 10]), BTreeSet::from([9, 10]));
        // Names are never read: "Received" with no flag stays open.
        let named = [PurchaseOrderStatus { id: 11, name: "Received".into(), state: None, disabled: false }];
        assert!(closed_status_ids(&named, &[]).is_empty());
    }

    #[test]
    fn unreceived_is_ordered_less_received_per_row() {
        let row =
            |id, product, quantity| OrderRow { id, product_id: Some(product), quantity, external_ref: None };
        let po = PurchaseOrder {
            id: 50,
            supplier_id: Some(3),
            status_id: Some(7),
            warehouse_id: Some(1),
            reference: None,
            rows: vec![row(1, 100, 8), row(2, 200, 5), row(3, 300, 4)],
        };
        let note = |id, po, rows: Vec<GoodsNoteRow>| GoodsInNote {
            id,
            purchase_order_id: po,
            warehouse_id: Some(1),
            received_on: None,
            rows,
        };
        let got = |row: Option<u64>, product, quantity| GoodsNoteRow {
            order_row_id: row,
            product_id: product,
            quantity,
        };
        let notes = [
            note(1, 50, vec![got(Some(1), 100, 3)]),
            // By product only, and more than the row holds: never below zero.
            note(2, 50, vec![got(None, 200, 7)]),
            // Another PO's note does not count here.
            note(3, 51, vec![got(Some(3), 300, 4)]),
        ];
        assert_eq!(unreceived(&po, &notes), [(100, 5), (200, 0), (300, 4)]);
    }
}
