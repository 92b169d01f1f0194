//! `warehouse-service/goods-movement-search`: which products' stock moved since a moment.
//!
//! Confirmed (apis.md §8.1, help 360003893031; MCP `sync/resources.py`): the search has a
//! filterable `updatedOn`, and Brightpearl's own Shopify app reads "all goods movements updated
//! since it last checked" and then the availability of those products. Columns as a real
//! client asks for them: goodsMovementId, productId, quantity, warehouseId, goodsNoteTypeCode,
//! updatedOn. UNKNOWN (§8.2): whether a reservation (allocation) is a goods movement; callers
//! must not rely on it (the inventory poll reads its own orders' products separately).

use super::client::BrightpearlClient;
use super::search::Period;
use crate::error::Result;
use chrono::{DateTime, Utc};
use serde::Deserialize;

const PATH: &str = "/warehouse-service/goods-movement-search";

/// A `goods-movement-search` row: which movement, of which product.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GoodsMovement {
    pub goods_movement_id: u64,
    pub product_id: u64,
    #[serde(default)]
    pub warehouse_id: Option<u64>,
}

impl BrightpearlClient {
    /// Goods movements updated since `since`: every page of the search (500 rows a page,
    /// paged on `morePagesAvailable`).
    pub(super) async fn movements_since(&self, since: DateTime<Utc>) -> Result<Vec<GoodsMovement>> {
        self.search_all(PATH, &[("updatedOn", Period::since(since).encode())]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brightpearl::search::SearchPage;

    /// The shape of a Brightpearl search answer (apis.md §1.7: `metaData.columns` names the
    /// row positions), with the columns a real client asks goods-movement-search for.
    #[test]
    fn a_search_page_maps_onto_movements() {
        let page: SearchPage = serde_json::from_value(serde_json::json!({
            "metaData": {
                "resultsAvailable": 2, "resultsReturned": 2, "firstResult": 1, "lastResult": 2,
                "morePagesAvailable": false,
                "columns": [
                    {"name": "goodsMovementId"}, {"name": "productId"}, {"name": "quantity"},
                    {"name": "warehouseId"}, {"name": "goodsNoteTypeCode"}, {"name": "updatedOn"}
                ]
            },
            "results": [[11, 1007, -2, 2, "GO", "2026-12-01T10:00:00.000Z"],
                        [12, 1008, 5, 2, "GI", "2026-12-01T10:01:00.000Z"]]
        }))
        .expect("page");
        let rows: Vec<GoodsMovement> = page.rows().expect("rows");
        assert_eq!(rows[0], GoodsMovement { goods_movement_id: 11, product_id: 1007, warehouse_id: Some(2) });
        assert_eq!(rows[1].product_id, 1008);
    }
}
