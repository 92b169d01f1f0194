//! WooCommerce refunds (`GET /wp-json/wc/v3/orders/{id}/refunds`) as `ChannelRefund`s.
//!
//! Where each part comes from (WooCommerce REST API docs, "Order refunds"; the docs' list
//! example is `tests/fixtures/refunds/woocommerce/`):
//! - **Rows**: `line_items[]`, whose `quantity`, `total` and `total_tax` are negative (money
//!   going back); `total` is ex tax, as on orders (apis.md §8.4). The refund resource does not
//!   say whether the goods were restocked (`api_restock` is write-only): a line with a SKU is
//!   taken as goods back (product row), UNCONFIRMED; one without is a non-stock row.
//! - **Shipping**: `shipping_lines[]` (`total`, `total_tax`, negative). **Fees**: `fee_lines[]`.
//! - **Total**: `amount` (positive). What the lines do not cover (an amount-only refund, the
//!   docs' refund 726) is a non-stock row.
//! - The order body lists its refunds as `refunds[{id, reason, total}]`: a new id there is a new
//!   refund (WooCommerce has no refund webhook; it sends `order.updated`).

use super::super::refund::{ChannelRefund, RefundLine, RefundLineKind};
use super::super::{id_of, money, parse_time, text};
use crate::error::{Error, Result};
use serde_json::Value;

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn refunded_item_id(line: &Value) -> Option<String> {
    items(line, "meta_data")
        .find(|m| text(m, "key").as_deref() == Some("_refunded_item_id"))
        .and_then(|m| id_of(m, "value"))
}

pub fn refund(v: &Value) -> Result<ChannelRefund> {
    let id = id_of(v, "id").ok_or_else(|| Error::BadInput("WooCommerce refund has no id".into()))?;
    let mut lines = Vec::new();
    for l in items(v, "line_items") {
        let quantity = l.get("quantity").and_then(Value::as_i64).unwrap_or(0).unsigned_abs();
        let sku = text(l, "sku");
        lines.push(RefundLine {
            kind: if sku.is_some() && quantity > 0 {
                RefundLineKind::Restocked
            } else {
                RefundLineKind::Other
            },
            line_id: refunded_item_id(l),
            sku,
            name: text(l, "name").unwrap_or_else(|| "Refunded item".into()),
            quantity: u32::try_from(quantity).unwrap_or(u32::MAX),
            net: -money(l.get("total"))?,
            tax: -money(l.get("total_tax"))?,
        });
    }
    for (key, kind) in [("shipping_lines", RefundLineKind::Shipping), ("fee_lines", RefundLineKind::Other)] {
        for l in items(v, key) {
            lines.push(RefundLine {
                kind,
                line_id: refunded_item_id(l),
                sku: None,
                name: text(l, "method_title")
                    .or_else(|| text(l, "name"))
                    .unwrap_or_else(|| "Shipping refund".into()),
                quantity: 1,
                net: -money(l.get("total"))?,
                tax: -money(l.get("total_tax"))?,
            });
        }
    }
    let mut refund = ChannelRefund {
        id,
        lines,
        total: money(v.get("amount"))?,
        tax: None,
        currency: None,
        created_at: parse_time(v.get("date_created_gmt")),
        gateway: None,
        reason: text(v, "reason"),
    };
    refund.lines.extend(refund.unitemised_line());
    Ok(refund)
}

/// The answer of `orders/{id}/refunds`: an array of refunds.
pub fn refunds(v: &Value) -> Result<Vec<ChannelRefund>> {
    v.as_array()
        .ok_or_else(|| Error::BadInput("WooCommerce refunds answer is not an array".into()))?
        .iter()
        .map(refund)
        .collect()
}

/// The refund ids an order body lists.
pub fn refund_ids(order: &Value) -> Vec<String> {
    items(order, "refunds").filter_map(|r| id_of(r, "id")).collect()
}
