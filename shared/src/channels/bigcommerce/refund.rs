//! BigCommerce refunds (`GET /v3/orders/{id}/payment_actions/refunds`) as `ChannelRefund`s.
//!
//! Where each part comes from (BigCommerce docs `reference/orders.v3.yml`, `Refund` and its
//! `RefundID_Get` example, in `tests/fixtures/refunds/bigcommerce/`):
//! - A refund gives `total_amount` (money returned, tax included), `total_tax`, `payments[]`
//!   (`provider_id`, `amount`, `is_declined`) and `items[]` of `item_type` PRODUCT,
//!   GIFT_WRAPPING, SHIPPING, HANDLING, ORDER or FEE with `item_id`, `quantity` (products only)
//!   and `requested_amount`, which may be null. It does not price its product rows, so a
//!   PRODUCT item is priced from the order's own line (`item_id` is the order product id):
//!   its gross per unit × quantity, or `requested_amount` when given (taken as tax included,
//!   UNCONFIRMED). Whether the goods were restocked is not stated: PRODUCT items are taken as
//!   goods back (product rows), UNCONFIRMED.
//! - Other items are non-stock rows of `requested_amount` (SHIPPING on the shipping code);
//!   what the items do not cover (a `tax_refund_adjustment` refund has none) is a non-stock row.
//! - `total_tax` is spread over the rows by their value; each row's net is its gross less tax.

use super::super::refund::{ChannelRefund, RefundLine, RefundLineKind};
use super::super::{ChannelOrder, id_of, money, parse_time, text};
use crate::error::{Error, Result};
use crate::money::{Decimal, allocate, minor_unit, round};
use serde_json::Value;

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

pub fn refund(v: &Value, order: &ChannelOrder) -> Result<ChannelRefund> {
    let id = id_of(v, "id").ok_or_else(|| Error::BadInput("BigCommerce refund has no id".into()))?;
    let places = minor_unit(&order.currency)?;
    // (line, gross) before the refund's tax is spread over them.
    let mut drafts: Vec<(RefundLine, Decimal)> = Vec::new();
    for item in items(v, "items") {
        let kind = text(item, "item_type").unwrap_or_default();
        let item_id = id_of(item, "item_id");
        let requested = match item.get("requested_amount") {
            Some(a) if !a.is_null() => Some(money(Some(a))?),
            _ => None,
        };
        if kind == "PRODUCT" {
            let quantity =
                item.get("quantity").and_then(Value::as_u64).and_then(|q| u32::try_from(q).ok()).unwrap_or(0);
            let line = order.lines.iter().find(|l| Some(&l.line_id) == item_id.as_ref());
            let gross = match (requested, line) {
                (Some(a), _) => a,
                (None, Some(l)) if l.quantity > 0 => {
                    round((l.net + l.tax) * Decimal::from(quantity) / Decimal::from(l.quantity), places)
                }
                _ => {
                    return Err(Error::BadInput(format!(
                        "BigCommerce refund {id} names order product {item_id:?}, which order {} does not have",
                        order.id
                    )));
                }
            };
            let line_draft = RefundLine {
                kind: RefundLineKind::Restocked,
                line_id: item_id,
                sku: line.and_then(|l| l.sku.clone()),
                name: line.map(|l| l.name.clone()).unwrap_or_else(|| "Refunded item".into()),
                quantity,
                net: gross,
                tax: Decimal::ZERO,
            };
            drafts.push((line_draft, gross));
        } else {
            let gross = requested.unwrap_or(Decimal::ZERO);
            let shipping = kind == "SHIPPING";
            drafts.push((
                RefundLine {
                    kind: if shipping { RefundLineKind::Shipping } else { RefundLineKind::Other },
                    line_id: item_id,
                    sku: None,
                    name: if shipping {
                        "Shipping refund".into()
                    } else {
                        format!("Refund ({})", kind.to_lowercase())
                    },
                    quantity: 1,
                    net: gross,
                    tax: Decimal::ZERO,
                },
                gross,
            ));
        }
    }
    let payments: Vec<&Value> = items(v, "payments")
        .filter(|p| !p.get("is_declined").and_then(Value::as_bool).unwrap_or(false))
        .collect();
    let mut refund = ChannelRefund {
        id,
        lines: drafts.iter().map(|(l, _)| l.clone()).collect(),
        total: money(v.get("total_amount"))?,
        tax: Some(money(v.get("total_tax"))?),
        currency: Some(order.currency.clone()),
        created_at: parse_time(v.get("created")),
        gateway: payments.first().and_then(|p| text(p, "provider_id")),
        reason: text(v, "reason"),
    };
    refund.lines.extend(refund.unitemised_line());
    let weights: Vec<Decimal> = refund.lines.iter().map(|l| l.net).collect();
    let taxes = if weights.iter().any(|w| !w.is_zero()) {
        allocate(refund.tax.unwrap_or_default(), &weights, places)
    } else {
        vec![Decimal::ZERO; weights.len()]
    };
    for (line, tax) in refund.lines.iter_mut().zip(taxes) {
        line.net -= tax;
        line.tax = tax;
    }
    Ok(refund)
}

/// The answer of `payment_actions/refunds`: `{"data": [...]}`.
pub fn refunds(v: &Value, order: &ChannelOrder) -> Result<Vec<ChannelRefund>> {
    v.get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::BadInput("BigCommerce refunds answer has no data array".into()))?
        .iter()
        .map(|r| refund(r, order))
        .collect()
}
