//! `GET /warehouse-service/goods-movement-search` (apis.md §8.1: "all goods movements updated
//! since it last checked"): one row per stock change the account made. Columns follow a real
//! client's `columns=` list (goodsMovementId, productId, quantity, warehouseId,
//! goodsNoteTypeCode, updatedOn) plus goodsNoteId. Also `goods-note/goods-out-search`, which
//! has no `updatedOn` (apis.md §8.1): missed shipments are swept by `shippedOn`.

use super::api::{Answer, period_contains};
use super::search::{idset_filter, search};
use super::state::State;
use serde_json::json;
use std::collections::HashMap;

impl State {
    pub(super) fn goods_movement_search(&self, q: &HashMap<String, String>) -> Answer {
        let ids = idset_filter(q, "goodsMovementId");
        let products = idset_filter(q, "productId");
        let warehouses = idset_filter(q, "warehouseId");
        let rows = self
            .goods_movements
            .iter()
            .filter(|m| ids.as_ref().is_none_or(|l| l.contains(&m.id)))
            .filter(|m| products.as_ref().is_none_or(|l| l.contains(&m.product_id)))
            .filter(|m| warehouses.as_ref().is_none_or(|l| l.contains(&m.warehouse_id)))
            .filter(|m| q.get("goodsNoteTypeCode").is_none_or(|t| *t == m.goods_note_type_code))
            .filter(|m| q.get("updatedOn").is_none_or(|f| period_contains(f, m.updated_on)))
            .map(|m| {
                vec![
                    json!(m.id),
                    json!(m.product_id),
                    json!(m.quantity),
                    json!(m.warehouse_id),
                    json!(m.goods_note_id),
                    json!(m.goods_note_type_code),
                    json!(m.updated_on),
                ]
            })
            .collect();
        search(
            &[
                ("goodsMovementId", "IDSET"),
                ("productId", "IDSET"),
                ("quantity", "INTEGER"),
                ("warehouseId", "IDSET"),
                ("goodsNoteId", "IDSET"),
                ("goodsNoteTypeCode", "STRING"),
                ("updatedOn", "PERIOD"),
            ],
            rows,
            q,
        )
    }

    /// `GET /warehouse-service/goods-note/goods-out-search`: one row per goods-out note.
    pub(super) fn goods_out_search(&self, q: &HashMap<String, String>) -> Answer {
        let ids = idset_filter(q, "goodsNoteId");
        let orders = idset_filter(q, "orderId");
        let rows = self
            .goods_out
            .values()
            .filter(|n| ids.as_ref().is_none_or(|l| l.contains(&n.id)))
            .filter(|n| orders.as_ref().is_none_or(|l| l.contains(&n.order_id)))
            .filter(|n| {
                q.get("shippedOn").is_none_or(|f| n.shipped_on.is_some_and(|t| period_contains(f, t)))
            })
            .map(|n| {
                vec![
                    json!(n.id),
                    json!(n.order_id),
                    json!(n.warehouse_id),
                    json!(n.shipped),
                    json!(n.shipped_on),
                ]
            })
            .collect();
        search(
            &[
                ("goodsNoteId", "IDSET"),
                ("orderId", "IDSET"),
                ("warehouseId", "IDSET"),
                ("shipped", "BOOLEAN"),
                ("shippedOn", "PERIOD"),
            ],
            rows,
            q,
        )
    }
}
