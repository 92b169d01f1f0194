//! The combined v2 order `fetch_order` returns (order + `products` + `shipping_addresses`)
//! as a `ChannelOrder`.
//!
//! Where each money component comes from (apis.md §3, §8.4); every figure is read from its
//! `_ex_tax` field with its tax beside it, so `is_tax_inclusive_pricing` changes nothing:
//! - **Currency**: `currency_code` (transactional, what the customer paid in); the store's is
//!   `default_currency_code`, with `currency_exchange_rate` between them.
//! - **Product lines**: `products[].total_ex_tax` − Σ `applied_discounts[].amount`, tax
//!   `total_tax`.
//! - **Order discounts not allocated**: `discount_amount` + `coupon_discount` − every
//!   product's applied discounts, when positive (ex tax).
//! - **Shipping**: `shipping_addresses[].cost_ex_tax`, tax `cost_tax`; without addresses the
//!   order's `shipping_cost_ex_tax` / `shipping_cost_tax`.
//! - **Handling / wrapping**: `handling_cost_ex_tax` / `handling_cost_tax`,
//!   `wrapping_cost_ex_tax` / `wrapping_cost_tax`.
//! - **Fees** (newer orders): `fees[].cost_ex_tax` (the docs' own example also spells it
//!   `cost_exc_tax`), tax `cost_tax`, named by `display_name_customer`.
//! - **Gift certificates and store credit** are payments (`gift_certificate_amount`,
//!   `store_credit_amount`) and leave `total_inc_tax` unchanged: nothing here.
//! - **Totals**: `total_inc_tax`, `total_tax`.

use super::super::{
    Address, ChannelOrder, Charge, ChargeKind, LineKind, OrderLine, ShippingLine, join_name, money,
    non_empty_address, parse_time, quantity_of, required_id, text,
};
use super::{PAID_STATUSES, STATUS_CANCELLED};
use crate::error::{Error, Result};
use crate::money::Decimal;
use crate::queue::ChannelKind;
use serde_json::Value;

pub(super) fn address(a: &Value) -> Option<Address> {
    if !a.is_object() {
        return None;
    }
    non_empty_address(Address {
        full_name: join_name(text(a, "first_name"), text(a, "last_name")),
        company: text(a, "company"),
        line1: text(a, "street_1"),
        line2: text(a, "street_2"),
        line3: text(a, "city"),
        line4: text(a, "state"),
        postcode: text(a, "zip"),
        country_code: text(a, "country_iso2"),
        phone: text(a, "phone"),
        email: text(a, "email"),
    })
}

fn first_present<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().filter_map(|k| v.get(*k)).find(|x| !x.is_null())
}

pub fn normalise(store: &str, order: &Value) -> Result<ChannelOrder> {
    if !order.is_object() {
        return Err(Error::BadInput("BigCommerce order is not a JSON object".into()));
    }
    let id = required_id(order, "id", "BigCommerce order")?;
    let currency = text(order, "currency_code")
        .or_else(|| text(order, "default_currency_code"))
        .ok_or_else(|| Error::BadInput(format!("BigCommerce order {id} has no currency_code")))?;
    crate::money::minor_unit(&currency)?;
    let billing_raw = order.get("billing_address").cloned().unwrap_or(Value::Null);
    let billing = address(&billing_raw);
    let email = text(&billing_raw, "email");
    let products = order.get("products").and_then(Value::as_array).ok_or_else(|| {
        Error::BadInput(format!("BigCommerce order {id} has no products list (fetch it first)"))
    })?;
    let mut lines = Vec::with_capacity(products.len());
    let mut applied = Decimal::ZERO;
    for (i, product) in products.iter().enumerate() {
        let what = format!("BigCommerce order {id} product {}", i + 1);
        let mut discount = Decimal::ZERO;
        for d in product.get("applied_discounts").and_then(Value::as_array).into_iter().flatten() {
            discount += money(d.get("amount"))?;
        }
        applied += discount;
        let quantity = quantity_of(product, &what)?;
        let total = match first_present(product, &["total_ex_tax"]) {
            Some(v) => money(Some(v))?,
            None => money(first_present(product, &["price_ex_tax", "base_price"]))? * Decimal::from(quantity),
        };
        let gift_certificate = text(product, "type").is_some_and(|t| t == "giftcertificate");
        lines.push(OrderLine {
            line_id: required_id(product, "id", &what)?,
            sku: text(product, "sku"),
            name: text(product, "name").unwrap_or_default(),
            quantity,
            kind: if gift_certificate { LineKind::GiftCard } else { LineKind::Product },
            net: total - discount,
            tax: money(product.get("total_tax"))?,
            discount,
        });
    }
    let shipping_addresses: Vec<Value> =
        order.get("shipping_addresses").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut shipping_lines = Vec::new();
    for s in &shipping_addresses {
        let net = money(s.get("cost_ex_tax"))?;
        let tax = money(s.get("cost_tax"))?;
        if !net.is_zero() || !tax.is_zero() {
            let title = text(s, "shipping_method").unwrap_or_else(|| "Shipping".into());
            shipping_lines.push(ShippingLine { title, net, tax, discount: Decimal::ZERO });
        }
    }
    if shipping_lines.is_empty() {
        let net = money(order.get("shipping_cost_ex_tax"))?;
        let tax = money(order.get("shipping_cost_tax"))?;
        if !net.is_zero() || !tax.is_zero() {
            shipping_lines.push(ShippingLine { title: "Shipping".into(), net, tax, discount: Decimal::ZERO });
        }
    }
    let mut charges = Vec::new();
    for (kind, name, net_key, tax_key) in [
        (ChargeKind::Handling, "Handling", "handling_cost_ex_tax", "handling_cost_tax"),
        (ChargeKind::Wrapping, "Gift wrapping", "wrapping_cost_ex_tax", "wrapping_cost_tax"),
    ] {
        let (net, tax) = (money(order.get(net_key))?, money(order.get(tax_key))?);
        if !net.is_zero() || !tax.is_zero() {
            charges.push(Charge { kind, name: name.into(), net, tax });
        }
    }
    for f in order.get("fees").and_then(Value::as_array).into_iter().flatten() {
        let name = text(f, "display_name_customer")
            .or_else(|| text(f, "display_name_merchant"))
            .or_else(|| text(f, "display_name"))
            .unwrap_or_else(|| "Fee".into());
        let net = money(first_present(f, &["cost_ex_tax", "cost_exc_tax"]))?;
        charges.push(Charge { kind: ChargeKind::Fee, name, net, tax: money(f.get("cost_tax"))? });
    }
    let unallocated = money(order.get("discount_amount"))? + money(order.get("coupon_discount"))? - applied;
    if unallocated > Decimal::ZERO {
        charges.push(Charge {
            kind: ChargeKind::Discount,
            name: "Order discount".into(),
            net: -unallocated,
            tax: Decimal::ZERO,
        });
    }
    let shop_currency = text(order, "default_currency_code").filter(|c| *c != currency);
    let exchange_rate = match &shop_currency {
        Some(_) => Some(money(order.get("currency_exchange_rate"))?).filter(|r| !r.is_zero()),
        None => None,
    };
    let status_id = order.get("status_id").and_then(Value::as_u64).unwrap_or(0);
    let payment_status = text(order, "payment_status").unwrap_or_default();
    let paid = matches!(payment_status.as_str(), "captured" | "paid" | "partially refunded" | "refunded")
        || (payment_status.is_empty() && PAID_STATUSES.contains(&status_id));
    Ok(ChannelOrder {
        channel: ChannelKind::Bigcommerce,
        store: store.to_string(),
        number: id.clone(),
        id,
        email,
        customer_name: billing.as_ref().and_then(|b| b.full_name.clone()),
        phone: text(&billing_raw, "phone"),
        delivery_address: shipping_addresses.first().and_then(address),
        billing_address: billing,
        currency,
        shop_currency,
        exchange_rate,
        prices_include_tax: order.get("is_tax_inclusive_pricing").and_then(Value::as_bool).unwrap_or(false),
        lines,
        shipping_lines,
        charges,
        total: money(order.get("total_inc_tax"))?,
        total_tax: money(order.get("total_tax"))?,
        paid,
        cancelled: status_id == STATUS_CANCELLED,
        created_at: parse_time(order.get("date_created")),
        updated_at: parse_time(order.get("date_modified")),
        refund_ids: Vec::new(),
        gateway: text(order, "payment_method"),
        captured: None,
        authorized: payment_status == "authorized",
    })
}
