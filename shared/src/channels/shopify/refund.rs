//! Shopify refunds (the REST Refund resource: the `refunds/create` webhook body, the order's
//! `refunds[]`, or `GET orders/{id}/refunds.json`) as `ChannelRefund`s.
//!
//! Where each part comes from (Shopify Refund resource docs; a recorded `refunds/create` body in
//! `tests/fixtures/refunds/shopify/`):
//! - **Rows**: `refund_line_items[]`: `subtotal` (presentment twin `subtotal_set`) and
//!   `total_tax`; `restock_type` `return`, `cancel` or `legacy_restock` puts the goods back
//!   (product row), `no_restock` (or none) does not (non-stock row). When the order's prices
//!   include tax, `subtotal` includes it and the tax is taken off (as for the order's lines).
//! - **Shipping**: `order_adjustments[]` of kind `shipping_refund`, whose `amount` and
//!   `tax_amount` are negative for money returned; newer payloads carry
//!   `refund_shipping_lines[]` (`subtotal_amount_set`, `tax_amount_set`) instead.
//! - **Other adjustments** (`refund_discrepancy`): a non-stock row of −`amount`. The sign of a
//!   discrepancy is UNCONFIRMED; a wrong guess fails the total check and parks the credit.
//! - **Total**: Σ `transactions[]` of `kind` `refund` and `status` `success`; the gateway of
//!   the first one.

use super::super::refund::{ChannelRefund, RefundLine, RefundLineKind};
use super::super::{id_of, money, parse_time, text};
use crate::error::{Error, Result};
use crate::money::Decimal;
use serde_json::Value;

/// `key` in the presentment currency (`{key}_set.presentment_money.amount`), else `key`.
fn amount(obj: &Value, key: &str) -> Result<Decimal> {
    match obj.pointer(&format!("/{key}_set/presentment_money/amount")) {
        Some(v) if !v.is_null() => money(Some(v)),
        _ => money(obj.get(key)),
    }
}

fn set_amount(obj: &Value, key: &str) -> Result<Decimal> {
    match obj.pointer(&format!("/{key}/presentment_money/amount")) {
        Some(v) if !v.is_null() => money(Some(v)),
        _ => money(obj.pointer(&format!("/{key}/shop_money/amount"))),
    }
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// One refund object. `prices_include_tax` is the order's `taxes_included`.
pub fn refund(v: &Value, prices_include_tax: bool) -> Result<ChannelRefund> {
    let id = id_of(v, "id").ok_or_else(|| Error::BadInput("Shopify refund has no id".into()))?;
    let mut lines = Vec::new();
    for item in items(v, "refund_line_items") {
        let line = item.get("line_item").unwrap_or(&Value::Null);
        let quantity =
            item.get("quantity").and_then(Value::as_u64).and_then(|q| u32::try_from(q).ok()).unwrap_or(0);
        let tax = amount(item, "total_tax")?;
        let subtotal = amount(item, "subtotal")?;
        let net = if prices_include_tax { subtotal - tax } else { subtotal };
        let restocked =
            matches!(text(item, "restock_type").as_deref(), Some("return" | "cancel" | "legacy_restock"));
        lines.push(RefundLine {
            kind: if restocked { RefundLineKind::Restocked } else { RefundLineKind::Other },
            line_id: id_of(item, "line_item_id").or_else(|| id_of(line, "id")),
            sku: text(line, "sku"),
            name: text(line, "name")
                .or_else(|| text(line, "title"))
                .unwrap_or_else(|| "Refunded item".into()),
            quantity,
            net,
            tax,
        });
    }
    let mut shipping_adjusted = false;
    for adj in items(v, "order_adjustments") {
        let kind = text(adj, "kind").unwrap_or_default();
        let shipping = kind == "shipping_refund";
        shipping_adjusted |= shipping;
        lines.push(RefundLine {
            kind: if shipping { RefundLineKind::Shipping } else { RefundLineKind::Other },
            line_id: None,
            sku: None,
            name: if shipping { "Shipping refund".into() } else { format!("Refund adjustment ({kind})") },
            quantity: 1,
            net: -amount(adj, "amount")?,
            tax: -amount(adj, "tax_amount")?,
        });
    }
    if !shipping_adjusted {
        for s in items(v, "refund_shipping_lines") {
            lines.push(RefundLine {
                kind: RefundLineKind::Shipping,
                line_id: id_of(s, "shipping_line_id"),
                sku: None,
                name: "Shipping refund".into(),
                quantity: 1,
                net: set_amount(s, "subtotal_amount_set")?,
                tax: set_amount(s, "tax_amount_set")?,
            });
        }
    }
    let refunds: Vec<&Value> = items(v, "transactions")
        .filter(|t| text(t, "kind").as_deref() == Some("refund"))
        .filter(|t| text(t, "status").as_deref() == Some("success"))
        .collect();
    let mut total = Decimal::ZERO;
    for t in &refunds {
        total += money(t.get("amount"))?;
    }
    Ok(ChannelRefund {
        id,
        lines,
        total,
        tax: None,
        currency: refunds.first().and_then(|t| text(t, "currency")),
        created_at: parse_time(v.get("processed_at")).or_else(|| parse_time(v.get("created_at"))),
        gateway: refunds.first().and_then(|t| text(t, "gateway")),
        reason: text(v, "note"),
    })
}

/// The `refunds` of an order or of a `refunds.json` answer (`{"refunds": [...]}`).
pub fn refunds(v: &Value, prices_include_tax: bool) -> Result<Vec<ChannelRefund>> {
    items(v, "refunds").map(|r| refund(r, prices_include_tax)).collect()
}

/// The refund ids an order body lists (to tell whether a refund is new).
pub fn refund_ids(order: &Value) -> Vec<String> {
    items(order, "refunds").filter_map(|r| id_of(r, "id")).collect()
}
