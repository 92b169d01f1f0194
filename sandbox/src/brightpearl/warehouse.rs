//! Warehouse endpoints over orders: the reservation (one per sales order) and the goods-out /
//! goods-in note GETs.

use super::api::{Answer, Event, error, i64_of, ids, not_found, ok, u64_of};
use super::state::*;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

impl State {
    pub(super) fn reserve(&mut self, id: &str, wid: &str, body: &Value) -> Answer {
        let Some(order) =
            id.parse::<u64>().ok().and_then(|id| self.orders.get(&id)).filter(|o| o.order_type == "SO")
        else {
            return not_found("sales order");
        };
        let order_id = order.id;
        let Some(wid) = wid.parse::<u64>().ok().filter(|w| self.warehouses.contains_key(w)) else {
            return not_found("warehouse");
        };
        if self.reservations.contains_key(&order_id) {
            // A generic code: Brightpearl has no documented "already reserved" answer.
            return error(400, "CMNC-400", format!("Reservation could not be created for order {order_id}"));
        }
        let rows_of_order: BTreeMap<u64, (Option<u64>, i64)> =
            order.rows.iter().map(|r| (r.id, (r.product_id, r.quantity))).collect();
        let mut wanted: BTreeMap<u64, (u64, i64)> = BTreeMap::new();
        for p in body.get("products").and_then(Value::as_array).into_iter().flatten() {
            let (Some(row), Some(product), Some(qty)) = (
                p.get("salesOrderRowId").and_then(u64_of),
                p.get("productId").and_then(u64_of),
                p.get("quantity").and_then(i64_of),
            ) else {
                return error(400, "WHSC-100", "each product needs productId, salesOrderRowId and quantity");
            };
            match rows_of_order.get(&row) {
                Some((Some(rp), rq)) if *rp == product => {
                    // Entries for the same row add up, as on the real API (the double-reserve trap).
                    let e = wanted.entry(row).or_insert((product, 0));
                    e.1 = (e.1 + qty).min(*rq);
                }
                _ => {
                    return error(
                        400,
                        "WHSC-101",
                        format!("row {row} of order {order_id} is not product {product}"),
                    );
                }
            }
        }
        let mut reserved = BTreeMap::new();
        for (row, (product, qty)) in wanted {
            let s = self.stock.entry(product).or_default().entry(wid).or_default();
            let take = qty.min(s.on_hand).max(0);
            if take > 0 {
                s.on_hand -= take;
                s.allocated += take;
                reserved.insert(row, (product, take));
            }
        }
        if reserved.is_empty() {
            return error(400, "WHSC-103", "nothing could be reserved: no stock on hand");
        }
        let event = Event::on_hand(reserved.values().map(|(p, _)| *p));
        self.reservations.insert(
            order_id,
            ReservationRec { order_id, warehouse_id: wid, rows: reserved, fulfilled: false },
        );
        Answer { status: 200, body: json!({"response": {}}), events: vec![event] }
    }

    pub(super) fn goods_out_get(&self, orders: &str, notes: Option<&str>) -> Answer {
        let order_ids = match ids(orders, 500) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let note_ids = match notes.map(|n| ids(n, 500)) {
            Some(Ok(v)) => v,
            Some(Err(e)) => return e,
            None => None,
        };
        let mut out = Map::new();
        for n in self.goods_out.values() {
            if order_ids.as_ref().is_none_or(|l| l.contains(&n.order_id))
                && note_ids.as_ref().is_none_or(|l| l.contains(&n.id))
            {
                out.insert(n.id.to_string(), goods_out_json(n));
            }
        }
        if out.is_empty() { not_found("goods-out notes") } else { ok(Value::Object(out)) }
    }

    pub(super) fn goods_in_get(&self, orders: &str, notes: Option<&str>, max_ids: usize) -> Answer {
        if orders == "*" && notes.is_none() {
            return error(400, "WHSC-110", "all notes for all orders is not allowed");
        }
        let order_ids = match ids(orders, max_ids) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let note_ids = match notes.map(|n| ids(n, max_ids)) {
            Some(Ok(v)) => v,
            Some(Err(e)) => return e,
            None => None,
        };
        let mut out = Map::new();
        for n in self.goods_in.values() {
            if order_ids.as_ref().is_none_or(|l| l.contains(&n.order_id))
                && note_ids.as_ref().is_none_or(|l| l.contains(&n.id))
            {
                out.insert(n.id.to_string(), goods_in_json(n));
            }
        }
        if out.is_empty() { not_found("goods-in notes") } else { ok(Value::Object(out)) }
    }
}

pub(super) fn reservation_json(r: &ReservationRec) -> Value {
    let rows: Map<String, Value> = r
        .rows
        .iter()
        .map(|(row, (p, q))| (row.to_string(), json!({"productId": p, "quantity": q})))
        .collect();
    json!({"orderId": r.order_id, "warehouseId": r.warehouse_id, "orderRows": rows})
}

fn goods_out_json(n: &GoodsOutRec) -> Value {
    let mut rows: Map<String, Value> = Map::new();
    for r in &n.rows {
        if let Value::Array(list) = rows.entry(r.row_id.to_string()).or_insert_with(|| Value::Array(vec![])) {
            list.push(json!({"productId": r.product_id, "quantity": r.quantity}));
        }
    }
    json!({
        "orderId": n.order_id,
        "warehouseId": n.warehouse_id,
        "transfer": false,
        "priority": false,
        "status": {"shipped": n.shipped, "packed": n.shipped, "picked": n.shipped, "printed": n.shipped,
                   "shippedOn": n.shipped_on},
        // `carrier` is a sandbox addition: real accounts name carriers through shipping methods.
        "shipping": {"reference": n.tracking, "shippingMethodId": n.shipping_method_id, "carrier": n.carrier},
        "orderRows": rows,
    })
}

fn goods_in_json(n: &GoodsInRec) -> Value {
    json!({
        "goodsNoteId": n.id,
        "orderId": n.order_id,
        "transfer": false,
        "goodsNoteStatus": "CLOSED",
        "receivedOn": n.received_on,
        "warehouseId": n.warehouse_id,
        "goodsMoved": n.rows.iter().map(|r| json!({
            "productId": r.product_id, "purchaseOrderRowId": r.row_id, "quantity": r.quantity,
            "warehouseId": n.warehouse_id, "goodsNoteId": n.id,
        })).collect::<Vec<_>>(),
    })
}
