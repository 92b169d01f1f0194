//! The WooCommerce REST v3 order (webhook body or `orders/{id}`) as a `ChannelOrder`.
//!
//! Where each money component comes from (apis.md §4.3, §8.4). WooCommerce stores line,
//! shipping and fee totals **ex tax whatever `prices_include_tax` says**; their tax is beside
//! them. `prices_include_tax` is kept for information only and never changes a figure.
//! - **Currency**: `currency` (Woo core has one currency per order; no exchange rate).
//! - **Product lines**: `line_items[].total` (ex tax, after coupons), tax `total_tax`; the
//!   line's discount is `subtotal` − `total`. `coupon_lines[]` are already inside the line
//!   totals and make no row.
//! - **Shipping**: `shipping_lines[].total`, tax `total_tax`.
//! - **Fees and surcharges**: `fee_lines[].total` (negative for a fee used as a discount),
//!   tax `total_tax`, named by `name`.
//! - **Gift cards redeemed**: the WooCommerce Gift Cards extension's `gift_cards[].amount`
//!   (taken off the order total; untaxed), as a negative gift-card charge.
//! - **Totals**: `total`, `total_tax`.

use super::super::{
    Address, ChannelOrder, Charge, ChargeKind, LineKind, OrderLine, ShippingLine, join_name, money,
    non_empty_address, parse_time, quantity_of, required_id, text,
};
use crate::error::{Error, Result};
use crate::money::Decimal;
use crate::queue::ChannelKind;
use serde_json::Value;

fn address(a: Option<&Value>, email: Option<&String>) -> Option<Address> {
    let a = a.filter(|v| v.is_object())?;
    non_empty_address(Address {
        full_name: join_name(text(a, "first_name"), text(a, "last_name")),
        company: text(a, "company"),
        line1: text(a, "address_1"),
        line2: text(a, "address_2"),
        line3: text(a, "city"),
        line4: text(a, "state"),
        postcode: text(a, "postcode"),
        country_code: text(a, "country"),
        phone: text(a, "phone"),
        email: email.cloned(),
    })
}

fn array<'a>(order: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    order.get(key).and_then(Value::as_array).into_iter().flatten()
}

pub fn normalise(store: &str, order: &Value) -> Result<ChannelOrder> {
    if !order.is_object() {
        return Err(Error::BadInput("WooCommerce order is not a JSON object".into()));
    }
    let id = required_id(order, "id", "WooCommerce order")?;
    let currency = text(order, "currency")
        .ok_or_else(|| Error::BadInput(format!("WooCommerce order {id} has no currency")))?;
    crate::money::minor_unit(&currency)?;
    let billing_raw = order.get("billing");
    let email = billing_raw.and_then(|b| text(b, "email"));
    let billing = address(billing_raw, email.as_ref());
    let delivery = address(order.get("shipping"), None);
    let items = order
        .get("line_items")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::BadInput(format!("WooCommerce order {id} has no line_items")))?;
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let what = format!("WooCommerce order {id} line {}", i + 1);
        let total = money(item.get("total"))?;
        let subtotal = match item.get("subtotal") {
            Some(v) if !v.is_null() => money(Some(v))?,
            _ => total,
        };
        lines.push(OrderLine {
            line_id: required_id(item, "id", &what)?,
            sku: text(item, "sku"),
            name: text(item, "name").unwrap_or_default(),
            quantity: quantity_of(item, &what)?,
            kind: LineKind::Product,
            net: total,
            tax: money(item.get("total_tax"))?,
            discount: (subtotal - total).max(Decimal::ZERO),
        });
    }
    let mut shipping_lines = Vec::new();
    for s in array(order, "shipping_lines") {
        shipping_lines.push(ShippingLine {
            title: text(s, "method_title").unwrap_or_else(|| "Shipping".into()),
            net: money(s.get("total"))?,
            tax: money(s.get("total_tax"))?,
            discount: Decimal::ZERO,
        });
    }
    let mut charges = Vec::new();
    for f in array(order, "fee_lines") {
        charges.push(Charge {
            kind: ChargeKind::Fee,
            name: text(f, "name").unwrap_or_else(|| "Fee".into()),
            net: money(f.get("total"))?,
            tax: money(f.get("total_tax"))?,
        });
    }
    for g in array(order, "gift_cards") {
        let amount = money(g.get("amount"))?;
        if !amount.is_zero() {
            let code =
                text(g, "code").map(|c| format!("Gift card {c}")).unwrap_or_else(|| "Gift card".into());
            charges.push(Charge {
                kind: ChargeKind::GiftCard,
                name: code,
                net: -amount.abs(),
                tax: Decimal::ZERO,
            });
        }
    }
    let status = text(order, "status").unwrap_or_default();
    let date_paid =
        order.get("date_paid_gmt").or_else(|| order.get("date_paid")).is_some_and(|d| !d.is_null());
    Ok(ChannelOrder {
        channel: ChannelKind::Woocommerce,
        store: store.to_string(),
        number: text(order, "number").unwrap_or_else(|| id.clone()),
        id,
        customer_name: billing
            .as_ref()
            .and_then(|b| b.full_name.clone())
            .or_else(|| delivery.as_ref().and_then(|d| d.full_name.clone())),
        phone: billing_raw.and_then(|b| text(b, "phone")),
        email,
        billing_address: billing,
        delivery_address: delivery,
        currency,
        shop_currency: None,
        exchange_rate: None,
        prices_include_tax: order.get("prices_include_tax").and_then(Value::as_bool).unwrap_or(false),
        lines,
        shipping_lines,
        charges,
        total: money(order.get("total"))?,
        total_tax: money(order.get("total_tax"))?,
        paid: date_paid || matches!(status.as_str(), "processing" | "completed"),
        cancelled: matches!(status.as_str(), "cancelled" | "trash"),
        created_at: parse_time(order.get("date_created_gmt"))
            .or_else(|| parse_time(order.get("date_created"))),
        updated_at: parse_time(order.get("date_modified_gmt"))
            .or_else(|| parse_time(order.get("date_modified"))),
        refund_ids: super::refund::refund_ids(order),
        gateway: text(order, "payment_method"),
        captured: None,
        authorized: false,
    })
}
