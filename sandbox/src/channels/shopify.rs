//! Simulated Shopify: REST order reads and the handful of GraphQL Admin operations the client
//! sends, recognised by their root field, with the cost bucket and the 250-item input limit.

use super::{
    Channel, ChannelSandbox, Gate, Order, OrderTopic, SandboxFulfilment, SandboxWebhook, finish, header_str,
    money,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Instant;

const MAX_INPUT: usize = 250;

fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

fn tail(gid: &str) -> Option<u64> {
    gid.rsplit('/').next()?.parse().ok()
}

pub(crate) fn order_json(o: &Order) -> Value {
    let address = json!({"first_name": o.first_name, "last_name": o.last_name, "address1": "1 Sandbox Road",
        "city": "Testville", "zip": "TE1 1ST", "country_code": "GB", "phone": null});
    let lines: Vec<Value> = o.lines.iter().map(|l| json!({
        "id": l.line_id, "variant_id": l.product.map(|p| p.1), "product_id": l.product.map(|p| p.0),
        "sku": l.sku.clone().unwrap_or_default(), "title": l.name, "quantity": l.quantity, "price": money(l.price),
        "tax_lines": [], "discount_allocations": [], "fulfillable_quantity": l.quantity - l.shipped,
    })).collect();
    json!({
        "id": o.id, "admin_graphql_api_id": gid("Order", o.id), "name": format!("#{}", o.number), "order_number": o.number,
        "email": o.email, "phone": null, "currency": o.currency, "taxes_included": false,
        "subtotal_price": money(o.subtotal()), "total_price": money(o.total()), "total_tax": "0.00",
        "financial_status": "paid",
        "fulfillment_status": if o.fully_shipped() { json!("fulfilled") } else if o.lines.iter().any(|l| l.shipped > 0) { json!("partial") } else { Value::Null },
        "cancelled_at": if o.cancelled { json!(o.updated_at.to_rfc3339()) } else { Value::Null },
        "created_at": o.created_at.to_rfc3339(), "updated_at": o.updated_at.to_rfc3339(),
        "customer": {"first_name": o.first_name, "last_name": o.last_name, "email": o.email},
        "billing_address": address, "shipping_address": address,
        "line_items": lines,
        "shipping_lines": [{"title": "Standard", "price": money(o.shipping()), "tax_lines": []}],
    })
}

pub(crate) fn webhook(
    order: &Value,
    topic: OrderTopic,
    secret: &str,
    event_id: &str,
) -> (Vec<(String, String)>, String) {
    let body = order.to_string();
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return (Vec::new(), body),
    };
    mac.update(body.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let topic = match topic {
        OrderTopic::Created => "orders/create",
        OrderTopic::Updated => "orders/updated",
        OrderTopic::Cancelled => "orders/cancelled",
    };
    let headers = vec![
        ("X-Shopify-Topic".to_string(), topic.to_string()),
        ("X-Shopify-Hmac-Sha256".to_string(), signature),
        ("X-Shopify-Shop-Domain".to_string(), "sandbox.myshopify.com".to_string()),
        ("X-Shopify-API-Version".to_string(), "2026-04".to_string()),
        ("X-Shopify-Webhook-Id".to_string(), format!("wh-{event_id}")),
        ("X-Shopify-Event-Id".to_string(), format!("ev-{event_id}")),
        ("X-Shopify-Triggered-At".to_string(), chrono::Utc::now().to_rfc3339()),
    ];
    (headers, body)
}

fn cost_extension(sb: &ChannelSandbox, requested: f64, available: f64) -> Value {
    json!({"cost": {"requestedQueryCost": requested, "actualQueryCost": requested,
        "throttleStatus": {"maximumAvailable": sb.config.shopify_bucket, "currentlyAvailable": available, "restoreRate": sb.config.shopify_restore_rate}}})
}

pub(crate) fn throttled_answer(sb: &ChannelSandbox, available: f64) -> Response {
    let mut extensions = cost_extension(sb, 10.0, available);
    extensions["cost"]["actualQueryCost"] = Value::Null;
    Json(json!({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}], "extensions": extensions})).into_response()
}

/// Takes `cost` points from the bucket; `Err(available)` when there are not enough.
fn spend(sb: &ChannelSandbox, cost: f64) -> Result<f64, f64> {
    let mut shop = sb.shop(Channel::Shopify);
    let now = Instant::now();
    let (level, at) = shop.bucket.unwrap_or((sb.config.shopify_bucket, now));
    let level =
        (level + at.elapsed().as_secs_f64() * sb.config.shopify_restore_rate).min(sb.config.shopify_bucket);
    if level < cost {
        shop.bucket = Some((level, now));
        return Err(level);
    }
    shop.bucket = Some((level - cost, now));
    Ok(level - cost)
}

fn authorised(headers: &HeaderMap) -> bool {
    header_str(headers, "x-shopify-access-token").is_some()
}

async fn rest_order(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((_v, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let lose = match sb.gate(Channel::Shopify, "rest:order", authorised(&headers)).await {
        Gate::Answer(r) => return r,
        Gate::Serve { lose } => lose,
    };
    let id = file.trim_end_matches(".json");
    let answer = match sb.order_json(Channel::Shopify, id) {
        Some(order) => Json(json!({"order": order})).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"errors": "Not Found"}))).into_response(),
    };
    finish(lose, answer)
}

async fn rest_orders(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(_v): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let lose = match sb.gate(Channel::Shopify, "rest:orders", authorised(&headers)).await {
        Gate::Answer(r) => return r,
        Gate::Serve { lose } => lose,
    };
    let since = q.get("updated_at_min").and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    let shop = sb.shop(Channel::Shopify);
    let orders: Vec<Value> = shop
        .orders
        .values()
        .filter(|o| since.is_none_or(|s| o.updated_at >= s))
        .map(|o| json!({"id": o.id, "updated_at": o.updated_at.to_rfc3339()}))
        .collect();
    finish(lose, Json(json!({"orders": orders})).into_response())
}

async fn graphql(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(_v): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let query = body.get("query").and_then(Value::as_str).unwrap_or("").to_string();
    let vars = body.get("variables").cloned().unwrap_or(Value::Null);
    let op = [
        "inventorySetQuantities",
        "productVariants",
        "inventoryLevel",
        "fulfillmentCreate",
        "fulfillmentOrders",
        "webhookSubscriptionCreate",
        "webhookSubscriptions",
    ]
    .into_iter()
    .find(|op| query.contains(op))
    .unwrap_or("unknown");
    let lose = match sb.gate(Channel::Shopify, &format!("graphql:{op}"), authorised(&headers)).await {
        Gate::Answer(r) => return r,
        Gate::Serve { lose } => lose,
    };
    let cost = if query.trim_start().starts_with("mutation") { 10.0 } else { 2.0 };
    let available = match spend(&sb, cost) {
        Ok(a) => a,
        Err(a) => {
            sb.shop(Channel::Shopify).counters.throttles_sent += 1;
            return throttled_answer(&sb, a);
        }
    };
    let data = match op {
        "inventorySetQuantities" => set_quantities(&sb, &vars),
        "productVariants" => Ok(variants(&sb, &vars)),
        "inventoryLevel" => Ok(levels(&sb, &vars)),
        "fulfillmentOrders" => Ok(fulfillment_orders(&sb, &vars)),
        "fulfillmentCreate" => Ok(fulfillment_create(&sb, &vars)),
        "webhookSubscriptions" => Ok(subscriptions(&sb)),
        "webhookSubscriptionCreate" => Ok(subscribe(&sb, &vars)),
        _ => Err(json!([{"message": "operation not simulated", "extensions": {"code": "UNSUPPORTED"}}])),
    };
    let answer = match data {
        Ok(data) => json!({"data": data, "extensions": cost_extension(&sb, cost, available)}),
        Err(errors) => json!({"errors": errors, "extensions": cost_extension(&sb, cost, available)}),
    };
    finish(lose, Json(answer).into_response())
}

fn variants(sb: &ChannelSandbox, vars: &Value) -> Value {
    let query = vars.get("query").and_then(Value::as_str).unwrap_or("");
    let wanted: Vec<String> = query
        .split(" OR ")
        .filter_map(|t| t.trim().strip_prefix("sku:"))
        .map(|s| s.trim_matches('"').replace("\\\"", "\"").replace("\\\\", "\\"))
        .collect();
    let shop = sb.shop(Channel::Shopify);
    let nodes: Vec<Value> = shop
        .products
        .iter()
        .filter(|p| wanted.contains(&p.sku))
        .map(|p| json!({"id": gid("ProductVariant", p.variant_id), "sku": p.sku, "product": {"id": gid("Product", p.product_id)}, "inventoryItem": {"id": gid("InventoryItem", p.inventory_item_id)}}))
        .collect();
    json!({"productVariants": {"nodes": nodes}})
}

fn levels(sb: &ChannelSandbox, vars: &Value) -> Value {
    let location = vars.get("locationId").and_then(Value::as_str).and_then(tail);
    let shop = sb.shop(Channel::Shopify);
    let nodes: Vec<Value> = vars
        .get("ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|id| {
            let n = tail(id.as_str()?)?;
            let p = shop.products.iter().find(|p| p.inventory_item_id == n)?;
            let level = (location == Some(sb.config.shopify_location_id))
                .then(|| json!({"quantities": [{"name": "available", "quantity": p.quantity}]}));
            Some(json!({"id": gid("InventoryItem", n), "inventoryLevel": level}))
        })
        .collect();
    json!({"nodes": nodes})
}

fn set_quantities(sb: &ChannelSandbox, vars: &Value) -> Result<Value, Value> {
    let input = vars.get("input").cloned().unwrap_or(Value::Null);
    let quantities = input.get("quantities").and_then(Value::as_array).cloned().unwrap_or_default();
    if quantities.len() > MAX_INPUT {
        sb.record_oversized(Channel::Shopify);
        return Err(
            json!([{"message": format!("The input array size of {} is greater than the maximum allowed of {MAX_INPUT}.", quantities.len()),
            "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"}}]),
        );
    }
    let key = vars.get("idempotencyKey").and_then(Value::as_str).map(str::to_string);
    let mut shop = sb.shop(Channel::Shopify);
    if let Some(key) = &key
        && let Some((params, answer)) = shop.idempotency.get(key)
    {
        if *params == input {
            return Ok(answer.clone());
        }
        return Ok(json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null, "userErrors": [
            {"code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH", "field": ["input"], "message": "key reused with other parameters"}]}}));
    }
    let mut errors = Vec::new();
    let mut writes = Vec::new();
    for (i, q) in quantities.iter().enumerate() {
        let field = |name: &str| json!(["input", "quantities", i.to_string(), name]);
        let item = q.get("inventoryItemId").and_then(Value::as_str).and_then(tail);
        let location = q.get("locationId").and_then(Value::as_str).and_then(tail);
        let Some(index) = item.and_then(|n| shop.products.iter().position(|p| p.inventory_item_id == n))
        else {
            errors.push(json!({"code": "INVALID_INVENTORY_ITEM", "field": field("inventoryItemId"), "message": "unknown inventory item"}));
            continue;
        };
        if location != Some(sb.config.shopify_location_id) {
            errors.push(json!({"code": "INVALID_LOCATION", "field": field("locationId"), "message": "unknown location"}));
            continue;
        }
        let Some(quantity) = q.get("quantity").and_then(Value::as_i64) else {
            errors.push(json!({"code": "INVALID_QUANTITY", "field": field("quantity"), "message": "quantity missing"}));
            continue;
        };
        match q.get("changeFromQuantity") {
            None => errors.push(json!({"code": "CHANGE_FROM_QUANTITY_REQUIRED", "field": field("changeFromQuantity"), "message": "changeFromQuantity is required (null to skip the check)"})),
            Some(Value::Null) => writes.push((index, quantity)),
            Some(from) => {
                if from.as_i64() == Some(shop.products[index].quantity) {
                    writes.push((index, quantity));
                } else {
                    errors.push(json!({"code": "CHANGE_FROM_QUANTITY_STALE", "field": field("changeFromQuantity"), "message": "The quantity has changed since it was read"}));
                }
            }
        }
    }
    // All or nothing: one bad entry rejects the whole mutation.
    let answer = if errors.is_empty() {
        for (index, quantity) in &writes {
            shop.products[*index].quantity = *quantity;
        }
        let group = shop.next();
        json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": {"id": gid("InventoryAdjustmentGroup", group)}, "userErrors": []}})
    } else {
        json!({"inventorySetQuantities": {"inventoryAdjustmentGroup": null, "userErrors": errors}})
    };
    if let Some(key) = key {
        shop.idempotency.insert(key, (input, answer.clone()));
    }
    drop(shop);
    if errors.is_empty() {
        sb.record_batch(Channel::Shopify, quantities.len());
    }
    Ok(answer)
}

fn fulfillment_orders(sb: &ChannelSandbox, vars: &Value) -> Value {
    let id = vars.get("id").and_then(Value::as_str).and_then(tail);
    let shop = sb.shop(Channel::Shopify);
    let Some(o) = id.and_then(|id| shop.orders.get(&id)) else { return json!({"order": null}) };
    let fulfilments: Vec<Value> = o.fulfilments.iter().enumerate()
        .map(|(i, f)| json!({"id": gid("Fulfillment", o.id * 100 + i as u64), "trackingInfo": [{"number": f.tracking_number}]}))
        .collect();
    let status = if o.cancelled || o.fully_shipped() {
        "CLOSED"
    } else if o.lines.iter().any(|l| l.shipped > 0) {
        "IN_PROGRESS"
    } else {
        "OPEN"
    };
    let items: Vec<Value> = o.lines.iter().map(|l| json!({"id": gid("FulfillmentOrderLineItem", l.fo_line_id),
        "remainingQuantity": l.quantity - l.shipped, "lineItem": {"id": gid("LineItem", l.line_id), "sku": l.sku}})).collect();
    json!({"order": {"id": gid("Order", o.id), "fulfillments": fulfilments,
        "fulfillmentOrders": {"nodes": [{"id": gid("FulfillmentOrder", o.id), "status": status, "lineItems": {"nodes": items}}]}}})
}

fn fulfillment_create(sb: &ChannelSandbox, vars: &Value) -> Value {
    let input = vars.get("fulfillment").cloned().unwrap_or(Value::Null);
    let user_error = |m: &str| json!({"fulfillmentCreate": {"fulfillment": null, "userErrors": [{"field": ["fulfillment"], "message": m}]}});
    let mut shop = sb.shop(Channel::Shopify);
    let groups =
        input.get("lineItemsByFulfillmentOrder").and_then(Value::as_array).cloned().unwrap_or_default();
    let Some(order_id) =
        groups.first().and_then(|g| g.get("fulfillmentOrderId")).and_then(Value::as_str).and_then(tail)
    else {
        return user_error("no fulfillment order");
    };
    let Some(order) = shop.orders.get_mut(&order_id) else {
        return user_error("fulfillment order not found");
    };
    let mut shipped = Vec::new();
    for g in &groups {
        for item in g.get("fulfillmentOrderLineItems").and_then(Value::as_array).into_iter().flatten() {
            let li = item.get("id").and_then(Value::as_str).and_then(tail);
            let quantity = item.get("quantity").and_then(Value::as_u64).unwrap_or(0) as u32;
            let Some(line) = order.lines.iter().position(|l| Some(l.fo_line_id) == li) else {
                return user_error("unknown line item");
            };
            if quantity == 0 || order.lines[line].shipped + quantity > order.lines[line].quantity {
                return user_error("quantity exceeds the remaining quantity");
            }
            shipped.push((line, quantity));
        }
    }
    let mut lines = Vec::new();
    for (line, quantity) in shipped {
        let l = &mut order.lines[line];
        l.shipped += quantity;
        lines.push((l.sku.clone().unwrap_or_else(|| l.line_id.to_string()), quantity));
    }
    let tracking = input.get("trackingInfo").cloned().unwrap_or(Value::Null);
    order.fulfilments.push(SandboxFulfilment {
        tracking_number: tracking.get("number").and_then(Value::as_str).unwrap_or("").to_string(),
        carrier: tracking.get("company").and_then(Value::as_str).unwrap_or("").to_string(),
        tracking_url: tracking.get("url").and_then(Value::as_str).map(str::to_string),
        lines,
    });
    order.updated_at = chrono::Utc::now();
    let id = order.id * 100 + order.fulfilments.len() as u64;
    json!({"fulfillmentCreate": {"fulfillment": {"id": gid("Fulfillment", id), "status": "SUCCESS"}, "userErrors": []}})
}

fn subscriptions(sb: &ChannelSandbox) -> Value {
    let shop = sb.shop(Channel::Shopify);
    let nodes: Vec<Value> = shop
        .hooks
        .iter()
        .map(|h| json!({"id": gid("WebhookSubscription", h.id), "topic": h.topic, "uri": h.address}))
        .collect();
    json!({"webhookSubscriptions": {"nodes": nodes}})
}

fn subscribe(sb: &ChannelSandbox, vars: &Value) -> Value {
    let topic = vars.get("topic").and_then(Value::as_str).unwrap_or("").to_string();
    let uri = vars.pointer("/webhookSubscription/uri").and_then(Value::as_str).unwrap_or("").to_string();
    if topic.is_empty() || uri.is_empty() {
        return json!({"webhookSubscriptionCreate": {"webhookSubscription": null, "userErrors": [{"field": ["uri"], "message": "topic and uri are required"}]}});
    }
    let mut shop = sb.shop(Channel::Shopify);
    let id = shop.next();
    shop.hooks.push(SandboxWebhook { id, topic, address: uri, headers: Default::default(), secret: None });
    json!({"webhookSubscriptionCreate": {"webhookSubscription": {"id": gid("WebhookSubscription", id)}, "userErrors": []}})
}

pub(crate) fn routes() -> axum::Router<Arc<ChannelSandbox>> {
    axum::Router::new()
        .route("/admin/api/{version}/graphql.json", post(graphql))
        .route("/admin/api/{version}/orders.json", get(rest_orders))
        .route("/admin/api/{version}/orders/{file}", get(rest_order))
}
