//! The Shopify REST order resource (webhook body or `orders/{id}.json`) as a `ChannelOrder`.
//!
//! Where each money component comes from (apis.md §2.2, §8.4):
//! - **Currency**: `presentment_currency`, the one the customer paid in (else `currency`).
//!   Every amount is read from its `*_set.presentment_money.amount` twin where there is one,
//!   else from the plain field (shop money, the same when the currencies agree). The shop's
//!   currency is `currency`; the exchange rate is `total_price_set` presentment ÷ shop.
//! - **Tax-inclusive**: `taxes_included`. When true, line `price`, shipping `price` and the
//!   discount allocations include tax, and the line's tax is taken off to get its net.
//! - **Product lines**: `price` × `quantity` − Σ `discount_allocations[].amount`; tax
//!   Σ `tax_lines[].price`. `gift_card: true` lines are gift cards sold; a line without a
//!   product titled "Tip" is a tip; other lines without `sku` are custom items.
//! - **Order-level tax only** (older payloads: order `tax_lines`, none on lines or shipping):
//!   the order's tax is allocated over lines and shipping by their value (largest remainder).
//! - **Shipping**: `shipping_lines[].price` − Σ `discount_allocations` (= `discounted_price`);
//!   tax Σ `tax_lines[].price`.
//! - **Order discounts not allocated**: `total_discounts` − every allocation, when positive,
//!   as a discount charge (ex tax).
//! - **Tips**: `total_tip_received` as a tip charge when no line is the tip; untaxed.
//! - **Gift cards redeemed** are payment transactions and leave `total_price` unchanged:
//!   nothing here.
//! - **Totals**: `total_price`, `total_tax`.

use super::super::{
    Address, ChannelOrder, Charge, ChargeKind, LineKind, OrderLine, ShippingLine, join_name, money,
    non_empty_address, parse_time, quantity_of, required_id, text,
};
use crate::error::{Error, Result};
use crate::money::{Decimal, allocate, minor_unit};
use crate::queue::ChannelKind;
use serde_json::Value;

fn address(value: Option<&Value>, email: Option<&String>) -> Option<Address> {
    let a = value.filter(|v| v.is_object())?;
    non_empty_address(Address {
        full_name: text(a, "name").or_else(|| join_name(text(a, "first_name"), text(a, "last_name"))),
        company: text(a, "company"),
        line1: text(a, "address1"),
        line2: text(a, "address2"),
        line3: text(a, "city"),
        line4: text(a, "province").or_else(|| text(a, "province_code")),
        postcode: text(a, "zip"),
        country_code: text(a, "country_code"),
        phone: text(a, "phone"),
        email: email.cloned(),
    })
}

/// `key` in the presentment currency: `{key}_set.presentment_money.amount`, else `key`.
fn amount(obj: &Value, key: &str) -> Result<Decimal> {
    match obj.pointer(&format!("/{key}_set/presentment_money/amount")) {
        Some(v) if !v.is_null() => money(Some(v)),
        _ => money(obj.get(key)),
    }
}

fn shop_amount(obj: &Value, key: &str) -> Result<Decimal> {
    match obj.pointer(&format!("/{key}_set/shop_money/amount")) {
        Some(v) if !v.is_null() => money(Some(v)),
        _ => money(obj.get(key)),
    }
}

/// Σ `key` (presentment) over an array field.
fn sum_of(items: Option<&Value>, key: &str) -> Result<Decimal> {
    let mut total = Decimal::ZERO;
    for item in items.and_then(Value::as_array).into_iter().flatten() {
        total += amount(item, key)?;
    }
    Ok(total)
}

fn has_entries(v: Option<&Value>) -> bool {
    v.and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

pub fn normalise(store: &str, order: &Value) -> Result<ChannelOrder> {
    if !order.is_object() {
        return Err(Error::BadInput("Shopify order is not a JSON object".into()));
    }
    let id = required_id(order, "id", "Shopify order")?;
    let shop_currency = text(order, "currency");
    let currency = text(order, "presentment_currency")
        .or_else(|| shop_currency.clone())
        .ok_or_else(|| Error::BadInput(format!("Shopify order {id} has no currency")))?;
    let places = minor_unit(&currency)?;
    let customer = order.get("customer").filter(|c| c.is_object());
    let email = text(order, "email")
        .or_else(|| text(order, "contact_email"))
        .or_else(|| customer.and_then(|c| text(c, "email")));
    let billing = address(order.get("billing_address"), email.as_ref());
    let delivery = address(order.get("shipping_address"), email.as_ref());
    let customer_name = customer
        .and_then(|c| join_name(text(c, "first_name"), text(c, "last_name")))
        .or_else(|| billing.as_ref().and_then(|a| a.full_name.clone()))
        .or_else(|| delivery.as_ref().and_then(|a| a.full_name.clone()));
    let inclusive = order.get("taxes_included").and_then(Value::as_bool).unwrap_or(false);
    let items = order
        .get("line_items")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::BadInput(format!("Shopify order {id} has no line_items")))?;
    let shipping_items: Vec<&Value> =
        order.get("shipping_lines").and_then(Value::as_array).into_iter().flatten().collect();

    // (gross after discounts, tax, discount) per line and per shipping line.
    let mut line_values = Vec::with_capacity(items.len());
    let mut allocated = Decimal::ZERO;
    for item in items {
        let quantity = Decimal::from(quantity_of(item, "Shopify line")?);
        let discount = sum_of(item.get("discount_allocations"), "amount")?;
        allocated += discount;
        line_values.push((
            amount(item, "price")? * quantity - discount,
            sum_of(item.get("tax_lines"), "price")?,
            discount,
        ));
    }
    let mut shipping_values = Vec::with_capacity(shipping_items.len());
    for s in &shipping_items {
        let discount = sum_of(s.get("discount_allocations"), "amount")?;
        allocated += discount;
        shipping_values.push((
            amount(s, "price")? - discount,
            sum_of(s.get("tax_lines"), "price")?,
            discount,
        ));
    }
    let component_tax: Decimal = line_values.iter().chain(&shipping_values).map(|v| v.1).sum();
    let order_tax = sum_of(order.get("tax_lines"), "price")?;
    let line_level_tax =
        items.iter().chain(shipping_items.iter().copied()).any(|i| has_entries(i.get("tax_lines")));
    if !line_level_tax && !order_tax.is_zero() && component_tax.is_zero() {
        // Older payloads: the tax is only at order level. Spread it by value.
        let weights: Vec<Decimal> = line_values.iter().chain(&shipping_values).map(|v| v.0).collect();
        let shares = allocate(order_tax, &weights, places);
        let (line_shares, shipping_shares) = shares.split_at(line_values.len());
        line_values.iter_mut().zip(line_shares).for_each(|(v, t)| v.1 = *t);
        shipping_values.iter_mut().zip(shipping_shares).for_each(|(v, t)| v.1 = *t);
    }
    let net_of = |gross: Decimal, tax: Decimal| if inclusive { gross - tax } else { gross };

    let mut lines = Vec::with_capacity(items.len());
    let mut tip_line = false;
    for (i, (item, (gross, tax, discount))) in items.iter().zip(line_values).enumerate() {
        let what = format!("Shopify order {id} line {}", i + 1);
        let name = text(item, "title").or_else(|| text(item, "name")).unwrap_or_default();
        let sku = text(item, "sku");
        let no_product = item.get("product_id").is_none_or(Value::is_null);
        let kind = if item.get("gift_card").and_then(Value::as_bool).unwrap_or(false) {
            LineKind::GiftCard
        } else if sku.is_none() && no_product && name.eq_ignore_ascii_case("tip") {
            tip_line = true;
            LineKind::Tip
        } else {
            LineKind::Product
        };
        lines.push(OrderLine {
            line_id: required_id(item, "id", &what)?,
            sku,
            name,
            quantity: quantity_of(item, &what)?,
            kind,
            net: net_of(gross, tax),
            tax,
            discount,
        });
    }
    let shipping_lines = shipping_items
        .iter()
        .zip(shipping_values)
        .map(|(s, (gross, tax, discount))| ShippingLine {
            title: text(s, "title").unwrap_or_else(|| "Shipping".into()),
            net: net_of(gross, tax),
            tax,
            discount,
        })
        .collect();
    let mut charges = Vec::new();
    let unallocated = amount(order, "total_discounts")? - allocated;
    if unallocated > Decimal::ZERO {
        charges.push(Charge {
            kind: ChargeKind::Discount,
            name: "Order discount".into(),
            net: -unallocated,
            tax: Decimal::ZERO,
        });
    }
    let tip = money(order.get("total_tip_received"))?;
    if !tip_line && !tip.is_zero() {
        charges.push(Charge { kind: ChargeKind::Tip, name: "Tip".into(), net: tip, tax: Decimal::ZERO });
    }
    let total = amount(order, "total_price")?;
    let shop_total = shop_amount(order, "total_price")?;
    let (shop_currency, exchange_rate) = match shop_currency {
        Some(shop) if shop != currency && !shop_total.is_zero() => (Some(shop), Some(total / shop_total)),
        _ => (None, None),
    };
    let financial = text(order, "financial_status").unwrap_or_default();
    Ok(ChannelOrder {
        channel: ChannelKind::Shopify,
        store: store.to_string(),
        number: text(order, "name").or_else(|| text(order, "order_number")).unwrap_or_else(|| id.clone()),
        id,
        email,
        customer_name,
        phone: text(order, "phone").or_else(|| customer.and_then(|c| text(c, "phone"))),
        billing_address: billing,
        delivery_address: delivery,
        currency,
        shop_currency,
        exchange_rate,
        prices_include_tax: inclusive,
        lines,
        shipping_lines,
        charges,
        total,
        total_tax: amount(order, "total_tax")?,
        // A refunded order was paid first: its payment stands beside the credits.
        paid: matches!(financial.as_str(), "paid" | "partially_refunded" | "refunded"),
        cancelled: order.get("cancelled_at").is_some_and(|c| !c.is_null()),
        created_at: parse_time(order.get("created_at")),
        updated_at: parse_time(order.get("updated_at")),
        refund_ids: super::refund::refund_ids(order),
        captured: if financial == "partially_paid" {
            match order.get("total_outstanding") {
                Some(v) if !v.is_null() => Some(total - amount(order, "total_outstanding")?),
                _ => None,
            }
        } else {
            None
        },
        authorized: financial == "authorized",
        gateway: text(order, "gateway").or_else(|| {
            order
                .get("payment_gateway_names")
                .and_then(Value::as_array)
                .and_then(|g| g.first())
                .and_then(|g| g.as_str().map(str::to_string))
        }),
    })
}
