//! Simulated Shopify: REST order reads and the GraphQL Admin operations the client sends,
//! read into a field tree (`query`) and served by their root field, with Shopify's requested
//! query cost: a query over 1,000 points is refused with `MAX_COST_EXCEEDED`, the rest are
//! charged to the bucket up front and refunded down to their actual cost, and every answer
//! carries `extensions.cost` as Shopify's does.

use super::{Channel, ChannelSandbox, Gate, Order, OrderTopic, SandboxWebhook, finish, header_str};
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

mod fulfilment;
mod inventory;
pub(crate) mod query;

use query::{Field, MAX_COST};

/// Shopify refuses any input array longer than this.
const MAX_INPUT: usize = 250;

fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

fn tail(gid: &str) -> Option<u64> {
    gid.rsplit('/').next()?.parse().ok()
}

/// One page of `items` as a connection, honouring the field's `first` and `after`; cursors
/// are the item's position.
fn page(items: Vec<Value>, field: &Field) -> Value {
    let start = field
        .arg_str("after")
        .and_then(|c| c.strip_prefix("c:"))
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(0, |n| n + 1);
    let first = field.arg_u64("first").unwrap_or(query::MAX_PAGE) as usize;
    let total = items.len();
    let nodes: Vec<Value> = items.into_iter().skip(start).take(first).collect();
    let end = start + nodes.len();
    json!({
        "pageInfo": {
            "hasNextPage": end < total,
            "hasPreviousPage": start > 0,
            "startCursor": (!nodes.is_empty()).then(|| format!("c:{start}")),
            "endCursor": (!nodes.is_empty()).then(|| format!("c:{}", end - 1)),
        },
        "nodes": nodes,
    })
}

/// A plain list field's items, cut to its `first`.
fn list(items: Vec<Value>, field: &Field) -> Value {
    let first = field.arg_u64("first").unwrap_or(query::MAX_PAGE) as usize;
    Value::Array(items.into_iter().take(first).collect())
}

fn cost_extension(sb: &ChannelSandbox, requested: u64, actual: Option<u64>, available: f64) -> Value {
    json!({"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
        "throttleStatus": {"maximumAvailable": sb.config.shopify_bucket, "currentlyAvailable": available, "restoreRate": sb.config.shopify_restore_rate}}})
}

pub(crate) fn throttled_answer(sb: &ChannelSandbox, available: f64) -> Response {
    throttled_with(sb, 10, available)
}

fn throttled_with(sb: &ChannelSandbox, requested: u64, available: f64) -> Response {
    let extensions = cost_extension(sb, requested, None, available);
    Json(json!({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}], "extensions": extensions})).into_response()
}

/// Shopify's refusal of a query over the single-query maximum; nothing is charged.
fn over_cost_answer(requested: u64) -> Response {
    Json(json!({"errors": [{
        "message": format!("Query cost is {requested}, which exceeds the single query max cost limit ({MAX_COST}).\n\nSee https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\ncost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk operations should be used instead.\nSee https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage details.\n"),
        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_COST, "documentation": "https://shopify.dev/api/usage/rate-limits"}
    }]}))
    .into_response()
}

fn bucket_level(sb: &ChannelSandbox, shop: &mut super::Shop) -> f64 {
    let now = Instant::now();
    let (level, at) = shop.bucket.unwrap_or((sb.config.shopify_bucket, now));
    let level =
        (level + at.elapsed().as_secs_f64() * sb.config.shopify_restore_rate).min(sb.config.shopify_bucket);
    shop.bucket = Some((level, now));
    level
}

/// Takes `cost` points from the bucket; `Err(available)` when there are not enough.
fn spend(sb: &ChannelSandbox, cost: f64) -> Result<f64, f64> {
    let mut shop = sb.shop(Channel::Shopify);
    let level = bucket_level(sb, &mut shop);
    if level < cost {
        return Err(level);
    }
    shop.bucket = Some((level - cost, Instant::now()));
    Ok(level - cost)
}

/// Gives back what was charged beyond the actual cost; returns the level after.
fn refund(sb: &ChannelSandbox, points: f64) -> f64 {
    let mut shop = sb.shop(Channel::Shopify);
    let level = (bucket_level(sb, &mut shop) + points).min(sb.config.shopify_bucket);
    shop.bucket = Some((level, Instant::now()));
    level
}

fn graphql_error(code: &str, message: &str) -> Value {
    json!([{"message": message, "extensions": {"code": code}}])
}

pub(crate) fn order_json(o: &Order) -> Value {
    let address = json!({"first_name": o.first_name, "last_name": o.last_name, "address1": "1 Sandbox Road",
        "city": "Testville", "zip": "TE1 1ST", "country_code": "GB", "phone": null});
    let p = super::pricing::price(o);
    let rate = f64::from(o.money.tax_percent) / 100.0;
    let tax_lines = |tax: i64| {
        if o.money.tax_percent == 0 {
            json!([])
        } else {
            json!([{"price": p.text(tax), "rate": rate, "title": "VAT"}])
        }
    };
    let discounts = |d: i64| {
        if d == 0 { json!([]) } else { json!([{"amount": p.text(d), "discount_application_index": 0}]) }
    };
    let lines: Vec<Value> = o.lines.iter().zip(p.lines.iter().zip(&p.unit_shown)).map(|(l, (part, unit))| json!({
        "id": l.line_id, "variant_id": l.product.map(|p| p.1), "product_id": l.product.map(|p| p.0),
        "sku": l.sku.clone().unwrap_or_default(), "title": l.name, "quantity": l.quantity, "price": p.text(*unit),
        "tax_lines": tax_lines(part.tax), "discount_allocations": discounts(part.discount_shown),
        "fulfillable_quantity": l.quantity - l.shipped, "gift_card": false,
    })).collect();
    // Shopify has no surcharge lines: the fee is not part of a Shopify order.
    let total = p.total - p.fee.net - p.fee.tax;
    let subtotal: i64 = p.lines.iter().map(|l| l.shown - l.discount_shown).sum();
    let discounts_total: i64 = p.lines.iter().map(|l| l.discount_shown).sum();
    json!({
        "id": o.id, "admin_graphql_api_id": gid("Order", o.id), "name": format!("#{}", o.number), "order_number": o.number,
        "email": o.email, "phone": null, "currency": o.currency, "presentment_currency": o.currency,
        "taxes_included": o.money.prices_include_tax,
        "subtotal_price": p.text(subtotal), "total_price": p.text(total), "total_tax": p.text(p.tax - p.fee.tax),
        "total_discounts": p.text(discounts_total),
        "financial_status": financial_status(o, total),
        "total_outstanding": p.text(if o.paid { 0 } else { total - o.captured.unwrap_or(0) }),
        "gateway": "manual",
        "refunds": o.refunds.iter().map(|r| super::refunds::shopify_refund(o, r)).collect::<Vec<_>>(),
        "fulfillment_status": if o.fully_shipped() { json!("fulfilled") } else if o.lines.iter().any(|l| l.shipped > 0) { json!("partial") } else { Value::Null },
        "cancelled_at": if o.cancelled { json!(o.updated_at.to_rfc3339()) } else { Value::Null },
        "created_at": o.created_at.to_rfc3339(), "updated_at": o.updated_at.to_rfc3339(),
        "customer": {"first_name": o.first_name, "last_name": o.last_name, "email": o.email},
        "billing_address": address, "shipping_address": address,
        "line_items": lines,
        "shipping_lines": [{"title": "Standard", "price": p.text(p.shipping.shown), "discounted_price": p.text(p.shipping.shown),
            "tax_lines": tax_lines(p.shipping.tax), "discount_allocations": []}],
    })
}

/// `pending` until paid; `refunded` / `partially_refunded` once refunds are made.
fn financial_status(o: &Order, total: i64) -> &'static str {
    let refunded = super::refunds::refunded_total(o);
    match (o.paid, refunded) {
        (false, _) if o.captured.is_some() => "partially_paid",
        (false, _) if o.authorized => "authorized",
        (false, _) => "pending",
        (true, 0) => "paid",
        (true, r) if r >= total => "refunded",
        _ => "partially_refunded",
    }
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
        OrderTopic::Refunded => "refunds/create",
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
        .map(|o| super::only_fields(order_json(o), q.get("fields")))
        .collect();
    finish(lose, Json(json!({"orders": orders})).into_response())
}

async fn graphql(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(_v): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let text = body.get("query").and_then(Value::as_str).unwrap_or("").to_string();
    let vars = body.get("variables").cloned().unwrap_or(Value::Null);
    let parsed = query::parse(&text, &vars);
    let root = parsed.as_ref().ok().and_then(|op| op.root_field()).map_or("unknown", |f| f.name.as_str());
    let lose = match sb.gate(Channel::Shopify, &format!("graphql:{root}"), authorised(&headers)).await {
        Gate::Answer(r) => return r,
        Gate::Serve { lose } => lose,
    };
    let operation = match parsed {
        Ok(op) => op,
        Err(e) => return Json(json!({"errors": graphql_error("GRAPHQL_PARSE_FAILED", &e)})).into_response(),
    };
    let requested = match query::requested_cost(&operation) {
        Ok(cost) => cost,
        Err(e) => return Json(json!({"errors": graphql_error("BAD_REQUEST", &e)})).into_response(),
    };
    {
        let mut shop = sb.shop(Channel::Shopify);
        shop.counters.max_query_cost_seen = shop.counters.max_query_cost_seen.max(requested);
        if requested > MAX_COST {
            shop.counters.queries_over_cost += 1;
            drop(shop);
            return finish(lose, over_cost_answer(requested));
        }
    }
    if let Err(available) = spend(&sb, requested as f64) {
        sb.shop(Channel::Shopify).counters.throttles_sent += 1;
        return throttled_with(&sb, requested, available);
    }
    let Some(field) = operation.root_field() else {
        return Json(json!({"errors": graphql_error("BAD_REQUEST", "empty selection")})).into_response();
    };
    let data = match (operation.mutation, field.name.as_str()) {
        (true, "inventorySetQuantities") => match inventory::set_quantities(&sb, field) {
            Ok(data) => Ok(data),
            Err(failure) => return finish(lose, failure),
        },
        (false, "productVariants") => Ok(inventory::variants(&sb, field)),
        (false, "nodes") => Ok(inventory::levels(&sb, field)),
        (false, "order") => Ok(fulfilment::order(&sb, field)),
        (false, "fulfillmentOrder") => Ok(fulfilment::fulfillment_order(&sb, field)),
        (false, "fulfillment") => Ok(fulfilment::fulfillment(&sb, field)),
        (true, "fulfillmentCreate") => fulfilment::create(&sb, field),
        (false, "webhookSubscriptions") => Ok(subscriptions(&sb, field)),
        (true, "webhookSubscriptionCreate") => Ok(subscribe(&sb, field)),
        _ => Err(graphql_error("UNSUPPORTED", "operation not simulated")),
    };
    let answer = match data {
        Ok(data) => {
            let actual = query::actual_cost(&operation, &data).min(requested);
            let available = refund(&sb, (requested - actual) as f64);
            json!({"data": data, "extensions": cost_extension(&sb, requested, Some(actual), available)})
        }
        Err(errors) => {
            let available = refund(&sb, requested as f64);
            json!({"errors": errors, "extensions": cost_extension(&sb, requested, Some(0), available)})
        }
    };
    finish(lose, Json(answer).into_response())
}

fn subscriptions(sb: &ChannelSandbox, field: &Field) -> Value {
    let shop = sb.shop(Channel::Shopify);
    let nodes: Vec<Value> = shop
        .hooks
        .iter()
        .map(|h| json!({"id": gid("WebhookSubscription", h.id), "topic": h.topic, "uri": h.address}))
        .collect();
    json!({"webhookSubscriptions": page(nodes, field)})
}

fn subscribe(sb: &ChannelSandbox, field: &Field) -> Value {
    let topic = field.arg_str("topic").unwrap_or("").to_string();
    let uri = field
        .args
        .get("webhookSubscription")
        .and_then(|w| w.get("uri"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
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
