//! Stock moves the control API makes (a stock correction, a shipment, a PO receipt): each
//! changes stock, records its goods movements and fires the webhooks Brightpearl would.

use super::api::Event;
use super::{BrightpearlSandbox, lock, state};
use chrono::Utc;
use std::collections::HashMap;

impl BrightpearlSandbox {
    /// Sets a product's unallocated stock in a warehouse; fires on-hand-modified.
    pub fn set_stock(&self, product_id: u64, warehouse_id: u64, on_hand: i64) {
        {
            let mut state = lock(&self.state);
            let slot =
                &mut state.stock.entry(product_id).or_default().entry(warehouse_id).or_default().on_hand;
            let change = on_hand - *slot;
            *slot = on_hand;
            state.record_movement(product_id, warehouse_id, change, None, "SC");
            if let Some(p) = state.products.get_mut(&product_id) {
                p.updated_on = Utc::now();
            }
        }
        self.fire(vec![Event::on_hand([product_id])]);
    }

    /// Creates and ships a goods-out note for the order's reserved rows (or all its rows when
    /// nothing is reserved); fires goods-out-note.modified.shipped. Returns the note id.
    pub fn ship_goods_out(&self, order_id: u64, tracking: &str, carrier: &str) -> Result<u64, String> {
        let (id, events) = {
            let mut state = lock(&self.state);
            let order = state.orders.get(&order_id).cloned().ok_or(format!("no order {order_id}"))?;
            let method = match state.shipping_methods.get(carrier) {
                Some(m) => *m,
                None => {
                    let m = state.shipping_methods.len() as u64 + 1;
                    state.shipping_methods.insert(carrier.to_string(), m);
                    m
                }
            };
            let (warehouse, rows) = match state.reservations.get_mut(&order_id) {
                Some(r) if !r.fulfilled => {
                    r.fulfilled = true;
                    (
                        r.warehouse_id,
                        r.rows.iter().map(|(row, (p, q))| (*row, *p, *q, true)).collect::<Vec<_>>(),
                    )
                }
                Some(_) => return Err(format!("order {order_id} is already shipped")),
                None => {
                    let w =
                        order.warehouse_id.or_else(|| state.warehouses.keys().next().copied()).unwrap_or(1);
                    (
                        w,
                        order
                            .rows
                            .iter()
                            .filter_map(|r| Some((r.id, r.product_id?, r.quantity, false)))
                            .collect(),
                    )
                }
            };
            for (_, product, qty, allocated) in &rows {
                let s = state.stock.entry(*product).or_default().entry(warehouse).or_default();
                if *allocated { s.allocated -= qty } else { s.on_hand -= qty }
            }
            let id = state.next("goods-out");
            for (_, product, qty, _) in &rows {
                state.record_movement(*product, warehouse, -qty, Some(id), "GO");
            }
            state.goods_out.insert(
                id,
                state::GoodsOutRec {
                    id,
                    order_id,
                    warehouse_id: warehouse,
                    shipped: true,
                    tracking: Some(tracking.to_string()),
                    carrier: Some(carrier.to_string()),
                    shipping_method_id: Some(method),
                    shipped_on: Some(Utc::now()),
                    rows: rows
                        .iter()
                        .map(|(row, p, q, _)| state::NoteRowRec {
                            row_id: *row,
                            product_id: *p,
                            quantity: *q,
                        })
                        .collect(),
                },
            );
            let mut events = vec![Event { full_event: "goods-out-note.modified.shipped", ids: vec![id] }];
            if rows.iter().any(|r| !r.3) {
                events.push(Event::on_hand(rows.iter().filter(|r| !r.3).map(|r| r.1)));
            }
            (id, events)
        };
        self.fire(events);
        Ok(id)
    }

    /// Receives a PO into its warehouse: all outstanding quantities, or `rows` as
    /// (PO row id, quantity). Raises on-hand stock; fires goods-in-note.created and
    /// product.modified.on-hand-modified. Returns the goods-in note id.
    pub fn receive_purchase_order(&self, po_id: u64, rows: Option<Vec<(u64, i64)>>) -> Result<u64, String> {
        let (id, events) = {
            let mut state = lock(&self.state);
            let po = state
                .orders
                .get(&po_id)
                .filter(|o| o.order_type == "PO")
                .cloned()
                .ok_or(format!("no PO {po_id}"))?;
            let warehouse = po.warehouse_id.or_else(|| state.warehouses.keys().next().copied()).unwrap_or(1);
            let mut received: HashMap<u64, i64> = HashMap::new();
            for n in state.goods_in.values().filter(|n| n.order_id == po_id) {
                for r in &n.rows {
                    *received.entry(r.row_id).or_default() += r.quantity;
                }
            }
            let outstanding = |row_id: u64| {
                po.rows
                    .iter()
                    .find(|r| r.id == row_id)
                    .map(|r| r.quantity - received.get(&row_id).copied().unwrap_or(0))
            };
            let wanted: Vec<(u64, i64)> = match rows {
                Some(list) => list,
                None => po.rows.iter().map(|r| (r.id, outstanding(r.id).unwrap_or(0))).collect(),
            };
            let mut note_rows = vec![];
            for (row_id, qty) in wanted {
                let left = outstanding(row_id).ok_or(format!("PO {po_id} has no row {row_id}"))?;
                let qty = qty.min(left);
                let product = po.rows.iter().find(|r| r.id == row_id).and_then(|r| r.product_id);
                if let (true, Some(product)) = (qty > 0, product) {
                    note_rows.push(state::NoteRowRec { row_id, product_id: product, quantity: qty });
                }
            }
            if note_rows.is_empty() {
                return Err(format!("PO {po_id} has nothing left to receive"));
            }
            for r in &note_rows {
                state.stock.entry(r.product_id).or_default().entry(warehouse).or_default().on_hand +=
                    r.quantity;
                *received.entry(r.row_id).or_default() += r.quantity;
            }
            let fully = po.rows.iter().all(|r| received.get(&r.id).copied().unwrap_or(0) >= r.quantity);
            if fully && let Some(o) = state.orders.get_mut(&po_id) {
                o.status_id = state::PO_STATUS_RECEIVED;
                o.updated_on = Utc::now();
            }
            let id = state.next("goods-in");
            let products: Vec<u64> = note_rows.iter().map(|r| r.product_id).collect();
            for r in &note_rows {
                state.record_movement(r.product_id, warehouse, r.quantity, Some(id), "GI");
            }
            state.goods_in.insert(
                id,
                state::GoodsInRec {
                    id,
                    order_id: po_id,
                    warehouse_id: warehouse,
                    received_on: Utc::now(),
                    rows: note_rows,
                },
            );
            (id, vec![Event { full_event: "goods-in-note.created", ids: vec![id] }, Event::on_hand(products)])
        };
        self.fire(events);
        Ok(id)
    }
}
