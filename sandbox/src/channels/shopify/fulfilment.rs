//! Simulated Shopify fulfilment: an order's fulfilments and its fulfilment orders (one per
//! location holding lines, paged, with paged line items), and `fulfillmentCreate`, which takes
//! the fulfilment orders of one order at one location per call (apis.md §8.3).

use super::query::Field;
use super::{MAX_INPUT, gid, graphql_error, list, page, tail};
use crate::channels::{Channel, ChannelSandbox, Order, SandboxFulfilment};
use serde_json::{Value, json};

/// Fulfilment ids: the order id × 1000 + the fulfilment's position, from 1.
fn fulfilment_id(order: u64, index: usize) -> u64 {
    order * 1000 + index as u64 + 1
}

fn fo_status(order: &Order, location: u64) -> &'static str {
    let lines: Vec<_> = order.lines.iter().filter(|l| l.location_id == location).collect();
    if order.cancelled || lines.iter().all(|l| l.shipped >= l.quantity) {
        "CLOSED"
    } else if lines.iter().any(|l| l.shipped > 0) {
        "IN_PROGRESS"
    } else {
        "OPEN"
    }
}

fn fo_lines(order: &Order, location: u64) -> Vec<Value> {
    order
        .lines
        .iter()
        .filter(|l| l.location_id == location)
        .map(|l| {
            json!({"id": gid("FulfillmentOrderLineItem", l.fo_line_id), "remainingQuantity": l.quantity - l.shipped,
                "lineItem": {"id": gid("LineItem", l.line_id), "sku": l.sku}})
        })
        .collect()
}

/// `order(id:)` with whichever of `fulfillments` and `fulfillmentOrders` is selected.
pub(super) fn order(sb: &ChannelSandbox, field: &Field) -> Value {
    let id = field.arg_str("id").and_then(tail);
    let shop = sb.shop(Channel::Shopify);
    let Some(o) = id.and_then(|id| shop.orders.get(&id)) else { return json!({"order": null}) };
    let mut answer = json!({"id": gid("Order", o.id)});
    if let Some(f) = field.child("fulfillments") {
        let tracking_field = f.child("trackingInfo");
        let all: Vec<Value> = o
            .fulfilments
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let tracking =
                    json!([{"number": x.tracking_number, "company": x.carrier, "url": x.tracking_url}]);
                let tracking = match tracking_field {
                    Some(t) => list(tracking.as_array().cloned().unwrap_or_default(), t),
                    None => tracking,
                };
                json!({"id": gid("Fulfillment", fulfilment_id(o.id, i)), "trackingInfo": tracking,
                    "location": x.location_id.map(|l| json!({"id": gid("Location", l)}))})
            })
            .collect();
        answer["fulfillments"] = list(all, f);
    }
    if let Some(f) = field.child("fulfillmentOrders") {
        let line_page = f.child("nodes").and_then(|n| n.child("lineItems"));
        let nodes: Vec<Value> = o
            .fulfillment_orders
            .iter()
            .map(|(fo, location)| {
                let lines = fo_lines(o, *location);
                json!({"id": gid("FulfillmentOrder", *fo), "status": fo_status(o, *location),
                    "assignedLocation": {"location": {"id": gid("Location", *location)}},
                    "lineItems": match line_page { Some(lp) => page(lines, lp), None => page(lines, &Field::default()) }})
            })
            .collect();
        answer["fulfillmentOrders"] = page(nodes, f);
    }
    json!({"order": answer})
}

/// `fulfillmentOrder(id:) { lineItems(first:, after:) }`.
pub(super) fn fulfillment_order(sb: &ChannelSandbox, field: &Field) -> Value {
    let id = field.arg_str("id").and_then(tail);
    let shop = sb.shop(Channel::Shopify);
    let found = shop.orders.values().find_map(|o| {
        o.fulfillment_orders.iter().find(|(fo, _)| Some(*fo) == id).map(|(fo, location)| (o, *fo, *location))
    });
    let Some((o, fo, location)) = found else { return json!({"fulfillmentOrder": null}) };
    let lines = fo_lines(o, location);
    let line_page = field.child("lineItems").cloned().unwrap_or_default();
    json!({"fulfillmentOrder": {"id": gid("FulfillmentOrder", fo), "status": fo_status(o, location),
        "lineItems": page(lines, &line_page)}})
}

/// `fulfillment(id:) { fulfillmentLineItems(first:, after:) }`.
pub(super) fn fulfillment(sb: &ChannelSandbox, field: &Field) -> Value {
    let Some(n) = field.arg_str("id").and_then(tail) else { return json!({"fulfillment": null}) };
    let (order_id, position) = (n / 1000, (n % 1000) as usize);
    let shop = sb.shop(Channel::Shopify);
    let Some((o, f)) = shop
        .orders
        .get(&order_id)
        .and_then(|o| position.checked_sub(1).and_then(|i| o.fulfilments.get(i)).map(|f| (o, f)))
    else {
        return json!({"fulfillment": null});
    };
    let items: Vec<Value> = f
        .lines
        .iter()
        .map(|(key, quantity)| {
            let line = o.lines.iter().find(|l| l.sku.as_deref() == Some(key.as_str()) || l.line_id.to_string() == *key);
            json!({"quantity": quantity, "lineItem": line.map(|l| json!({"id": gid("LineItem", l.line_id), "sku": l.sku}))})
        })
        .collect();
    let items_page = field.child("fulfillmentLineItems").cloned().unwrap_or_default();
    json!({"fulfillment": {"id": gid("Fulfillment", n), "fulfillmentLineItems": page(items, &items_page)}})
}

fn user_error(message: &str) -> Value {
    json!({"fulfillmentCreate": {"fulfillment": null, "userErrors": [{"field": ["fulfillment"], "message": message}]}})
}

/// `fulfillmentCreate`: every fulfilment order named must be open and belong to the same order
/// and location; quantities must not exceed what remains.
pub(super) fn create(sb: &ChannelSandbox, field: &Field) -> Result<Value, Value> {
    let input = field.args.get("fulfillment").cloned().unwrap_or(Value::Null);
    let groups =
        input.get("lineItemsByFulfillmentOrder").and_then(Value::as_array).cloned().unwrap_or_default();
    let too_many = groups.len() > MAX_INPUT
        || groups.iter().any(|g| {
            g.get("fulfillmentOrderLineItems")
                .and_then(Value::as_array)
                .is_some_and(|items| items.len() > MAX_INPUT)
        });
    if too_many {
        sb.record_oversized(Channel::Shopify);
        return Err(graphql_error(
            "MAX_INPUT_SIZE_EXCEEDED",
            "An input array is larger than the maximum allowed of 250.",
        ));
    }
    let mut shop = sb.shop(Channel::Shopify);
    let mut target: Option<(u64, u64)> = None;
    let mut resolved = Vec::new();
    for g in &groups {
        let Some(fo) = g.get("fulfillmentOrderId").and_then(Value::as_str).and_then(tail) else {
            return Ok(user_error("Fulfillment order id is missing."));
        };
        let Some((order_id, location)) = shop
            .orders
            .values()
            .find_map(|o| o.fulfillment_orders.iter().find(|(id, _)| *id == fo).map(|(_, l)| (o.id, *l)))
        else {
            return Ok(user_error("Fulfillment order does not exist."));
        };
        match target {
            None => target = Some((order_id, location)),
            Some((o, _)) if o != order_id => {
                return Ok(user_error("All fulfillment orders must belong to the same order."));
            }
            Some((_, l)) if l != location => {
                return Ok(user_error("All fulfillment orders must be assigned to the same location."));
            }
            Some(_) => {}
        }
        resolved.push((fo, location, g));
    }
    let Some((order_id, location)) = target else { return Ok(user_error("No fulfillment order was given.")) };
    let Some(order) = shop.orders.get_mut(&order_id) else { return Ok(user_error("Order not found.")) };
    if matches!(fo_status(order, location), "CLOSED") {
        return Ok(user_error("The fulfillment order is closed and cannot be fulfilled."));
    }
    let mut shipped: Vec<(usize, u32)> = Vec::new();
    for (_, fo_location, g) in &resolved {
        let items = g.get("fulfillmentOrderLineItems").and_then(Value::as_array).cloned().unwrap_or_default();
        if items.is_empty() {
            // No line items named: the whole remaining fulfilment order.
            for (i, l) in order.lines.iter().enumerate() {
                if l.location_id == *fo_location && l.shipped < l.quantity {
                    shipped.push((i, l.quantity - l.shipped));
                }
            }
            continue;
        }
        for item in items {
            let li = item.get("id").and_then(Value::as_str).and_then(tail);
            let quantity = item.get("quantity").and_then(Value::as_u64).unwrap_or(0) as u32;
            let Some(i) =
                order.lines.iter().position(|l| Some(l.fo_line_id) == li && l.location_id == *fo_location)
            else {
                return Ok(user_error("The line item does not belong to the fulfillment order."));
            };
            let already: u32 = shipped.iter().filter(|(j, _)| *j == i).map(|(_, q)| q).sum();
            if quantity == 0 || order.lines[i].shipped + already + quantity > order.lines[i].quantity {
                return Ok(user_error(
                    "Quantity exceeds the remaining quantity of the fulfillment order line item.",
                ));
            }
            shipped.push((i, quantity));
        }
    }
    let mut lines = Vec::new();
    for (i, quantity) in shipped {
        let l = &mut order.lines[i];
        l.shipped += quantity;
        lines.push((l.sku.clone().unwrap_or_else(|| l.line_id.to_string()), quantity));
    }
    let tracking = input.get("trackingInfo").cloned().unwrap_or(Value::Null);
    order.fulfilments.push(SandboxFulfilment {
        tracking_number: tracking.get("number").and_then(Value::as_str).unwrap_or("").to_string(),
        carrier: tracking.get("company").and_then(Value::as_str).unwrap_or("").to_string(),
        tracking_url: tracking.get("url").and_then(Value::as_str).map(str::to_string),
        lines,
        location_id: Some(location),
    });
    order.updated_at = chrono::Utc::now();
    let id = fulfilment_id(order.id, order.fulfilments.len() - 1);
    Ok(
        json!({"fulfillmentCreate": {"fulfillment": {"id": gid("Fulfillment", id), "status": "SUCCESS"}, "userErrors": []}}),
    )
}
