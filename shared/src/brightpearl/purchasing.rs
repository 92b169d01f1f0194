//! Purchasing reads (issue 13): who supplies a product, the account's purchase-order statuses
//! and the purchase orders in given statuses (apis.md §8.1).
//!
//! - The primary supplier is `primarySupplierId`, an IDSET column of product-search: one page
//!   of 500 products per request, the cheap route for a whole catalogue.
//! - `GET /product-service/product/{idSet}/supplier` answers `{"<productId>": [contactId, …]}`
//!   for products without a primary. One id Brightpearl does not know fails the whole set
//!   with a 400, so a refused set is split in halves until the bad ids stand alone.
//! - Purchase orders are order type 2 (SO 1, PO 2, SC 3, PC 4); order-search filters by
//!   `orderTypeId` and `orderStatusId`.

use super::client::BrightpearlClient;
use super::idset;
use super::search::{PAGE_SIZE, SearchPage};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Brightpearl's order type id for purchase orders.
pub const ORDER_TYPE_PURCHASE: u64 = 2;
/// `product/{ids}/supplier` takes ID sets like the product GET.
const SUPPLIER_IDS_PER_SET: usize = 200;

/// One product-search page of primary suppliers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrimarySupplierPage {
    /// (product id, primary supplier contact id), in the order Brightpearl listed them.
    pub rows: Vec<(u64, Option<u64>)>,
    /// `firstResult` of the next page; None after the last.
    pub next_first_result: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrimarySupplierRow {
    product_id: u64,
    #[serde(default)]
    primary_supplier_id: Option<Value>,
}

/// Suppliers listed by `product/{ids}/supplier`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProductSuppliers {
    /// Product id → supplier contact ids, as listed (products without any are absent).
    pub suppliers: BTreeMap<u64, Vec<u64>>,
    /// Ids Brightpearl refused on their own (deleted or invalid), with its reason.
    pub refused: Vec<(u64, String)>,
}

/// A purchase-order status from `GET /order-service/order-status`, with the flags the account
/// sets on it. `state` is recorded as `"draft"` on a draft status; other values are read as
/// the account gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseOrderStatus {
    #[serde(rename = "statusId")]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

/// A row of `order-search?orderTypeId=2`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseOrderSearchRow {
    pub order_id: u64,
    #[serde(default)]
    pub contact_id: Option<u64>,
    #[serde(default)]
    pub order_status_id: Option<u64>,
    #[serde(default)]
    pub warehouse_id: Option<u64>,
}

/// Positive ids only: Brightpearl writes 0 or null for "none".
fn contact_id(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

/// Next page: `metaData.morePagesAvailable` when Brightpearl sends it (it does, recorded);
/// otherwise the `lastResult < resultsAvailable` rule.
fn next_page(raw: &Value, page: &SearchPage) -> Option<u64> {
    match raw.pointer("/metaData/morePagesAvailable").and_then(Value::as_bool) {
        Some(more) => (more && !page.results.is_empty()).then_some(page.meta.last_result + 1),
        None => page.next_first_result(),
    }
}

pub(super) async fn primary_suppliers_page(
    client: &BrightpearlClient,
    first_result: u64,
) -> Result<PrimarySupplierPage> {
    let query = [
        ("columns", "productId,primarySupplierId".to_string()),
        ("pageSize", PAGE_SIZE.to_string()),
        ("firstResult", first_result.max(1).to_string()),
    ];
    let Some(raw) = client.get_many("/product-service/product-search", &query).await? else {
        return Ok(PrimarySupplierPage::default());
    };
    let page: SearchPage = serde_json::from_value(raw.clone())
        .map_err(|e| Error::BadInput(format!("Brightpearl product-search page does not fit: {e}")))?;
    let rows: Vec<PrimarySupplierRow> = page.rows()?;
    Ok(PrimarySupplierPage {
        rows: rows
            .into_iter()
            .map(|r| (r.product_id, r.primary_supplier_id.as_ref().and_then(contact_id)))
            .collect(),
        next_first_result: next_page(&raw, &page).filter(|n| *n > first_result),
    })
}

pub(super) async fn product_suppliers(client: &BrightpearlClient, ids: &[u64]) -> Result<ProductSuppliers> {
    let mut out = ProductSuppliers::default();
    let mut sorted: Vec<u64> = ids.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let mut pending: Vec<Vec<u64>> = Vec::new();
    while !sorted.is_empty() {
        let rest = sorted.split_off(sorted.len().min(SUPPLIER_IDS_PER_SET));
        pending.push(std::mem::replace(&mut sorted, rest));
    }
    pending.reverse();
    while let Some(set) = pending.pop() {
        let path = format!("/product-service/product/{}/supplier", idset::encode(&set));
        match client.get_many(&path, &[]).await {
            Ok(Some(Value::Object(map))) => {
                for (product, list) in map {
                    let Ok(product) = product.parse::<u64>() else { continue };
                    let suppliers: Vec<u64> =
                        list.as_array().into_iter().flatten().filter_map(contact_id).collect();
                    if !suppliers.is_empty() {
                        out.suppliers.insert(product, suppliers);
                    }
                }
            }
            Ok(Some(Value::Null) | None) => {}
            Ok(Some(other)) => {
                return Err(Error::BadInput(format!("product suppliers: expected an object, got {other}")));
            }
            Err(Error::Rejected { status: 400, code, message, .. }) => {
                if let [only] = set.as_slice() {
                    out.refused.push((*only, format!("{code}: {message}")));
                } else {
                    // One bad id fails the set: look at each half on its own.
                    let mut low = set;
                    let high = low.split_off(low.len() / 2);
                    pending.push(high);
                    pending.push(low);
                }
            }
            Err(e) => return Err(e),
        }
    }
    out.refused.sort();
    Ok(out)
}

pub(super) async fn purchase_order_statuses(client: &BrightpearlClient) -> Result<Vec<PurchaseOrderStatus>> {
    let raw = client.get_many("/order-service/order-status", &[]).await?.unwrap_or(Value::Array(vec![]));
    let list = raw.as_array().cloned().unwrap_or_default();
    let mut statuses = Vec::new();
    for v in list {
        if v.get("orderTypeCode").and_then(Value::as_str) != Some("PO") {
            continue;
        }
        let status: PurchaseOrderStatus = serde_json::from_value(v)
            .map_err(|e| Error::BadInput(format!("Brightpearl order status does not fit: {e}")))?;
        statuses.push(status);
    }
    statuses.sort_by_key(|s| s.id);
    Ok(statuses)
}

pub(super) async fn purchase_orders_in_statuses(
    client: &BrightpearlClient,
    status_ids: &[u64],
) -> Result<Vec<PurchaseOrderSearchRow>> {
    let mut rows: BTreeMap<u64, PurchaseOrderSearchRow> = BTreeMap::new();
    for status in status_ids.iter().copied().collect::<BTreeSet<_>>() {
        let found: Vec<PurchaseOrderSearchRow> = client
            .search_all(
                "/order-service/order-search",
                &[("orderTypeId", ORDER_TYPE_PURCHASE.to_string()), ("orderStatusId", status.to_string())],
            )
            .await?;
        // The filter is trusted only as far as the rows say so.
        for row in found.into_iter().filter(|r| r.order_status_id.is_none_or(|s| s == status)) {
            rows.insert(row.order_id, row);
        }
    }
    Ok(rows.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_supplier_page_reads_ids_nulls_and_zeroes() {
        // Shape after ruby-brightpearl spec/fixtures/product_search.yml (columns and
        // morePagesAvailable), values ours.
        let raw = serde_json::json!({
            "results": [[1001, 207], [1002, null], [1003, 0]],
            "metaData": {"morePagesAvailable": true, "resultsAvailable": 3, "resultsReturned": 3,
                "firstResult": 1, "lastResult": 3,
                "columns": [{"name": "productId", "reportDataType": "IDSET"},
                            {"name": "primarySupplierId", "reportDataType": "IDSET"}]}
        });
        let page: SearchPage = serde_json::from_value(raw.clone()).unwrap();
        let rows: Vec<PrimarySupplierRow> = page.rows().unwrap();
        let read: Vec<Option<u64>> =
            rows.iter().map(|r| r.primary_supplier_id.as_ref().and_then(contact_id)).collect();
        assert_eq!(read, [Some(207), None, None]);
        // morePagesAvailable wins over the counts, which say this was the last page.
        assert_eq!(next_page(&raw, &page), Some(4));
        let mut last = raw.clone();
        last["metaData"]["morePagesAvailable"] = Value::Bool(false);
        assert_eq!(next_page(&last, &page), None);
    }

    #[test]
    fn statuses_keep_their_flags() {
        // The recorded shape of one status (ruby-brightpearl spec/fixtures/order_status_get.yml).
        let v = serde_json::json!({"statusId": 1, "name": "Draft / Quote", "orderTypeCode": "SO",
            "sortOrder": 0, "disabled": false, "visible": false, "color": "#E7E6E4", "state": "draft"});
        let s: PurchaseOrderStatus = serde_json::from_value(v).unwrap();
        assert_eq!(s.state.as_deref(), Some("draft"));
        assert!(!s.disabled);
    }
}
