//! Simulated BigCommerce: v2 orders, products, addresses and shipments (v2 lists paged like
//! BigCommerce: 50 a page unless `limit` says otherwise, at most 250, 204 past the end); v3 variants, inventory
//! items and absolute adjustments (2,000 items max → 422); v3 hooks; the per-window request
//! quota with its X-Rate-Limit headers and 429.

use super::{
    Channel, ChannelSandbox, Gate, Order, OrderTopic, SandboxFulfilment, SandboxWebhook, finish, header_str,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAX_ITEMS: usize = 2000;
pub(crate) const DEFAULT_SECRET_HEADER: &str = "X-Pearlsync-Secret";

pub(crate) fn order_json(o: &Order) -> Value {
    let date = |d: &chrono::DateTime<chrono::Utc>| d.to_rfc2822();
    let p = super::pricing::price(o);
    let subtotal: i64 = p.lines.iter().map(|l| l.net + l.discount_ex).sum();
    let discount: i64 = p.lines.iter().map(|l| l.discount_ex).sum();
    json!({
        "id": o.id, "status_id": if o.cancelled { 5 } else if !o.paid { 7 } else if o.fully_shipped() { 2 } else { 11 },
        "status": if o.cancelled { "Cancelled" } else if !o.paid { "Awaiting Payment" } else { "Awaiting Fulfillment" },
        "currency_code": o.currency, "default_currency_code": o.currency,
        "payment_status": match (o.paid, super::refunds::refunded_total(o)) {
            (false, _) => "",
            (true, 0) => "captured",
            (true, r) if r >= p.total => "refunded",
            _ => "partially refunded",
        },
        "payment_method": "Credit Card", "refunded_amount": p.text(super::refunds::refunded_total(o)),
        "is_tax_inclusive_pricing": o.money.prices_include_tax,
        "subtotal_ex_tax": p.text(subtotal), "total_inc_tax": p.text(p.total), "total_tax": p.text(p.tax),
        "shipping_cost_ex_tax": p.text(p.shipping.net), "shipping_cost_tax": p.text(p.shipping.tax),
        "handling_cost_ex_tax": p.text(p.fee.net), "handling_cost_tax": p.text(p.fee.tax),
        "wrapping_cost_ex_tax": p.text(0), "wrapping_cost_tax": p.text(0),
        "discount_amount": p.text(discount), "coupon_discount": p.text(0),
        "date_created": date(&o.created_at), "date_modified": date(&o.updated_at),
        "billing_address": {"first_name": o.first_name, "last_name": o.last_name, "street_1": "1 Sandbox Road",
            "city": "Austin", "state": "Texas", "zip": "78701", "country_iso2": "US", "email": o.email.clone().unwrap_or_default(), "phone": ""},
        "products": products_json(o),
        "shipping_addresses": addresses_json(o),
    })
}

fn products_json(o: &Order) -> Value {
    let p = super::pricing::price(o);
    Value::Array(
        o.lines
            .iter()
            .zip(p.lines.iter().zip(&p.unit_shown))
            .map(|(l, (part, unit))| {
                let unit_ex = if o.money.prices_include_tax { (part.net + part.discount_ex) / i64::from(l.quantity.max(1)) } else { *unit };
                let discounts = if part.discount_ex == 0 { json!([]) } else { json!([{"id": "coupon", "amount": p.text(part.discount_ex), "target": "product"}]) };
                json!({"id": l.line_id, "order_id": o.id, "sku": l.sku.clone().unwrap_or_default(),
        "name": l.name, "quantity": l.quantity, "quantity_shipped": l.shipped, "price_ex_tax": p.text(unit_ex),
        "total_ex_tax": p.text(part.net + part.discount_ex), "total_tax": p.text(part.tax), "applied_discounts": discounts,
        "order_address_id": o.address_id, "product_id": l.product.map(|p| p.0), "variant_id": l.product.map(|p| p.1)})
            })
            .collect(),
    )
}

fn addresses_json(o: &Order) -> Value {
    let p = super::pricing::price(o);
    json!([{"id": o.address_id, "first_name": o.first_name, "last_name": o.last_name, "street_1": "2 Delivery Lane",
        "city": "Dallas", "zip": "75001", "country_iso2": "US", "shipping_method": "Ground",
        "cost_ex_tax": p.text(p.shipping.net), "cost_tax": p.text(p.shipping.tax)}])
}

pub(crate) fn webhook(
    order_id: &str,
    topic: OrderTopic,
    secret: &str,
    event_id: &str,
) -> (Vec<(String, String)>, String) {
    let scope = match topic {
        OrderTopic::Created => "store/order/created",
        OrderTopic::Updated | OrderTopic::Cancelled => "store/order/updated",
        OrderTopic::Refunded => "store/order/refund/created",
    };
    let hash: String = Sha256::digest(format!("{scope}:{order_id}:{event_id}"))
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect();
    let body = json!({"store_id": "1001", "producer": "stores/sandbox", "scope": scope,
        "data": {"type": "order", "id": order_id.parse::<u64>().unwrap_or_default()},
        "hash": hash, "created_at": chrono::Utc::now().timestamp()});
    (vec![(DEFAULT_SECRET_HEADER.to_string(), secret.to_string())], body.to_string())
}

pub(crate) fn throttled_answer(reset_ms: u64) -> Response {
    let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(json!({"status": 429, "title": "Too many requests"})))
        .into_response();
    let h = r.headers_mut();
    h.insert("X-Rate-Limit-Requests-Left", HeaderValue::from_static("0"));
    if let Ok(v) = HeaderValue::from_str(&reset_ms.to_string()) {
        h.insert("X-Rate-Limit-Time-Reset-Ms", v);
    }
    r
}

/// Counts against the window; the answer's rate-limit headers, or a 429.
fn quota(sb: &ChannelSandbox) -> Result<(u64, u64), Response> {
    let mut shop = sb.shop(Channel::Bigcommerce);
    let window = Duration::from_millis(sb.config.bigcommerce_window_ms);
    let now = Instant::now();
    let (start, used) = match shop.window {
        Some((start, used)) if now.duration_since(start) < window => (start, used),
        _ => (now, 0),
    };
    let reset = (window.saturating_sub(now.duration_since(start))).as_millis() as u64;
    if used >= sb.config.bigcommerce_quota {
        shop.window = Some((start, used));
        shop.counters.throttles_sent += 1;
        return Err(throttled_answer(reset.max(1)));
    }
    shop.window = Some((start, used + 1));
    Ok((sb.config.bigcommerce_quota - used - 1, reset))
}

pub(super) async fn enter(
    sb: &ChannelSandbox,
    hash: &str,
    endpoint: &str,
    headers: &HeaderMap,
) -> Result<(bool, (u64, u64)), Response> {
    let ok = header_str(headers, "x-auth-token").is_some();
    let lose = match sb.gate(Channel::Bigcommerce, endpoint, ok).await {
        Gate::Answer(r) => return Err(r),
        Gate::Serve { lose } => lose,
    };
    if hash != sb.config.bigcommerce_store_hash {
        return Err((StatusCode::NOT_FOUND, "unknown store").into_response());
    }
    let left = quota(sb)?;
    Ok((lose, left))
}

pub(super) fn done(lose: bool, (left, reset): (u64, u64), mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [("X-Rate-Limit-Requests-Left", left), ("X-Rate-Limit-Time-Reset-Ms", reset)] {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            h.insert(name, v);
        }
    }
    finish(lose, response)
}

macro_rules! enter_or_return {
    ($sb:expr, $hash:expr, $endpoint:expr, $headers:expr) => {
        match enter(&$sb, &$hash, $endpoint, &$headers).await {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!([{"status": 404, "message": "The requested resource was not found."}])),
    )
        .into_response()
}

async fn order(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((hash, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (lose, left) = enter_or_return!(sb, hash, "v2/order", headers);
    let answer = match sb.order_json(Channel::Bigcommerce, &id) {
        Some(mut o) => {
            // v2 gives sub-resource links here, not the lists.
            o["products"] = json!({"url": format!("{}/stores/{hash}/v2/orders/{id}/products", sb.base_url), "resource": format!("/orders/{id}/products")});
            o["shipping_addresses"] =
                json!({"url": "", "resource": format!("/orders/{id}/shipping_addresses")});
            Json(o).into_response()
        }
        None => not_found(),
    };
    done(lose, left, answer)
}

/// One page of a v2 list: `limit` (default 50, at most 250) and `page` (from 1), as
/// BigCommerce pages; an empty page is a 204.
fn v2_page(items: Vec<Value>, q: &HashMap<String, String>) -> Response {
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let limit: usize = q.get("limit").and_then(|p| p.parse().ok()).unwrap_or(50).clamp(1, 250);
    let list: Vec<Value> = items.into_iter().skip((page - 1) * limit).take(limit).collect();
    if list.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Json(Value::Array(list)).into_response()
    }
}

fn with_order(sb: &ChannelSandbox, id: &str, f: impl FnOnce(&Order) -> Value) -> Response {
    let shop = sb.shop(Channel::Bigcommerce);
    match id.parse().ok().and_then(|id: u64| shop.orders.get(&id)) {
        Some(o) => Json(f(o)).into_response(),
        None => not_found(),
    }
}

async fn order_products(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((hash, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (lose, left) = enter_or_return!(sb, hash, "v2/order/products", headers);
    let products = {
        let shop = sb.shop(Channel::Bigcommerce);
        id.parse().ok().and_then(|id: u64| shop.orders.get(&id)).map(products_json)
    };
    let answer = match products {
        Some(Value::Array(items)) => v2_page(items, &q),
        _ => not_found(),
    };
    done(lose, left, answer)
}

async fn order_addresses(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((hash, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (lose, left) = enter_or_return!(sb, hash, "v2/order/shipping_addresses", headers);
    done(lose, left, with_order(&sb, &id, addresses_json))
}

async fn shipments(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((hash, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (lose, left) = enter_or_return!(sb, hash, "v2/order/shipments:get", headers);
    let list = {
        let shop = sb.shop(Channel::Bigcommerce);
        id.parse().ok().and_then(|id: u64| shop.orders.get(&id)).map(|o| {
            o.fulfilments.iter().enumerate().map(|(i, f)| json!({"id": i + 1, "order_id": o.id,
                "tracking_number": f.tracking_number, "tracking_carrier": f.carrier, "tracking_link": f.tracking_url})).collect::<Vec<_>>()
        })
    };
    let answer = match list {
        Some(items) => v2_page(items, &q),
        None => not_found(),
    };
    done(lose, left, answer)
}

async fn create_shipment(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((hash, id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (lose, left) = enter_or_return!(sb, hash, "v2/order/shipments:post", headers);
    let unprocessable = |m: &str| {
        (StatusCode::UNPROCESSABLE_ENTITY, Json(json!([{"status": 422, "message": m}]))).into_response()
    };
    let answer = (|| {
        let mut shop = sb.shop(Channel::Bigcommerce);
        let Some(order) = id.parse().ok().and_then(|id: u64| shop.orders.get_mut(&id)) else {
            return not_found();
        };
        if body.get("order_address_id").and_then(Value::as_u64) != Some(order.address_id) {
            return unprocessable("order_address_id is required and must belong to the order");
        }
        let mut shipped = Vec::new();
        for item in body.get("items").and_then(Value::as_array).into_iter().flatten() {
            let pid = item.get("order_product_id").and_then(Value::as_u64);
            let quantity = item.get("quantity").and_then(Value::as_u64).unwrap_or(0) as u32;
            let Some(line) = order.lines.iter().position(|l| Some(l.line_id) == pid) else {
                return unprocessable("unknown order_product_id");
            };
            if quantity == 0 || order.lines[line].shipped + quantity > order.lines[line].quantity {
                return unprocessable("quantity exceeds what is left to ship");
            }
            shipped.push((line, quantity));
        }
        if shipped.is_empty() {
            return unprocessable("items are required");
        }
        let mut lines = Vec::new();
        for (line, quantity) in shipped {
            let l = &mut order.lines[line];
            l.shipped += quantity;
            lines.push((l.sku.clone().unwrap_or_else(|| l.line_id.to_string()), quantity));
        }
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        order.fulfilments.push(SandboxFulfilment {
            tracking_number: text("tracking_number").unwrap_or_default(),
            carrier: text("tracking_carrier").or_else(|| text("shipping_provider")).unwrap_or_default(),
            tracking_url: text("tracking_link"),
            lines,
            location_id: None,
        });
        order.updated_at = chrono::Utc::now();
        (StatusCode::CREATED, Json(json!({"id": order.fulfilments.len(), "order_id": order.id})))
            .into_response()
    })();
    done(lose, left, answer)
}

async fn orders(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(hash): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (lose, left) = enter_or_return!(sb, hash, "v2/orders", headers);
    let since = q.get("min_date_modified").and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let limit: usize = q.get("limit").and_then(|p| p.parse().ok()).unwrap_or(50).clamp(1, 250);
    let list: Vec<Value> = {
        let shop = sb.shop(Channel::Bigcommerce);
        shop.orders
            .values()
            .filter(|o| since.is_none_or(|s| o.updated_at >= s))
            .skip((page - 1) * limit)
            .take(limit)
            .map(order_json)
            .collect()
    };
    let answer = if list.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Json(Value::Array(list)).into_response()
    };
    done(lose, left, answer)
}

fn split_in(q: &HashMap<String, String>, key: &str) -> Vec<String> {
    q.get(key).map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default()
}

async fn variants(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(hash): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (lose, left) = enter_or_return!(sb, hash, "v3/catalog/variants", headers);
    let skus = split_in(&q, "sku:in");
    let data: Vec<Value> = {
        let shop = sb.shop(Channel::Bigcommerce);
        shop.products
            .iter()
            .filter(|p| skus.contains(&p.sku))
            .map(|p| json!({"id": p.variant_id, "product_id": p.product_id, "sku": p.sku}))
            .collect()
    };
    done(lose, left, Json(json!({"data": data, "meta": {}})).into_response())
}

async fn inventory_items(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(hash): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (lose, left) = enter_or_return!(sb, hash, "v3/inventory/items", headers);
    let ids = split_in(&q, "variant_id:in");
    let location = sb.config.bigcommerce_location_id;
    let data: Vec<Value> = {
        let shop = sb.shop(Channel::Bigcommerce);
        shop.products.iter().filter(|p| ids.contains(&p.variant_id.to_string()))
            .map(|p| json!({"identity": {"sku": p.sku, "variant_id": p.variant_id, "product_id": p.product_id},
                "locations": [{"location_id": location, "total_inventory_onhand": p.quantity, "available_to_sell": p.quantity}]}))
            .collect()
    };
    done(lose, left, Json(json!({"data": data, "meta": {}})).into_response())
}

async fn absolute(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (lose, left) = enter_or_return!(sb, hash, "v3/inventory/adjustments/absolute", headers);
    let items = body.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    let unprocessable = |m: String| {
        (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"status": 422, "title": m}))).into_response()
    };
    if items.len() > MAX_ITEMS {
        sb.record_oversized(Channel::Bigcommerce);
        return done(lose, left, unprocessable(format!("items: at most {MAX_ITEMS} items per request")));
    }
    let answer = {
        let mut shop = sb.shop(Channel::Bigcommerce);
        let mut writes = Vec::new();
        let mut problem = None;
        for (i, item) in items.iter().enumerate() {
            let ids = ["sku", "variant_id", "product_id"].iter().filter(|k| item.get(**k).is_some()).count();
            let loc = item.get("location_id").and_then(Value::as_u64);
            let quantity = item.get("quantity").and_then(Value::as_i64);
            let index = shop.products.iter().position(|p| {
                item.get("variant_id").and_then(Value::as_u64) == Some(p.variant_id)
                    || item.get("sku").and_then(Value::as_str) == Some(p.sku.as_str())
            });
            match (ids, loc, quantity, index) {
                (1, Some(l), Some(q), Some(idx)) if l == sb.config.bigcommerce_location_id => {
                    writes.push((idx, q))
                }
                _ => {
                    problem = Some(format!(
                        "items.{i}: needs location_id, quantity and exactly one known identifier"
                    ));
                    break;
                }
            }
        }
        match problem {
            Some(m) => unprocessable(m),
            None => {
                for (idx, q) in &writes {
                    shop.products[*idx].quantity = *q;
                }
                let tx = shop.next();
                Json(json!({"transaction_id": format!("tx-{tx}")})).into_response()
            }
        }
    };
    if answer.status().is_success() {
        sb.record_batch(Channel::Bigcommerce, items.len());
    }
    done(lose, left, answer)
}

async fn hooks(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (lose, left) = enter_or_return!(sb, hash, "v3/hooks:get", headers);
    let data: Vec<Value> = sb
        .webhooks(Channel::Bigcommerce)
        .iter()
        .map(|h| json!({"id": h.id, "scope": h.topic, "destination": h.address, "is_active": true}))
        .collect();
    done(lose, left, Json(json!({"data": data})).into_response())
}

async fn create_hook(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (lose, left) = enter_or_return!(sb, hash, "v3/hooks:post", headers);
    let scope = body.get("scope").and_then(Value::as_str).unwrap_or("").to_string();
    let destination = body.get("destination").and_then(Value::as_str).unwrap_or("").to_string();
    if scope.is_empty() || destination.is_empty() {
        return done(
            lose,
            left,
            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"title": "scope and destination are required"})))
                .into_response(),
        );
    }
    let hook_headers = body
        .get("headers")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    let id = {
        let mut shop = sb.shop(Channel::Bigcommerce);
        let id = shop.next();
        shop.hooks.push(SandboxWebhook {
            id,
            topic: scope.clone(),
            address: destination.clone(),
            headers: hook_headers,
            secret: None,
        });
        id
    };
    done(
        lose,
        left,
        Json(json!({"data": {"id": id, "scope": scope, "destination": destination, "is_active": true}}))
            .into_response(),
    )
}

pub(crate) fn routes() -> axum::Router<Arc<ChannelSandbox>> {
    axum::Router::new()
        .route("/stores/{hash}/v2/orders", get(orders))
        .route("/stores/{hash}/v2/orders/{id}", get(order))
        .route("/stores/{hash}/v2/orders/{id}/products", get(order_products))
        .route("/stores/{hash}/v2/orders/{id}/shipping_addresses", get(order_addresses))
        .route("/stores/{hash}/v2/orders/{id}/shipments", get(shipments).post(create_shipment))
        .route("/stores/{hash}/v3/catalog/variants", get(variants))
        .route("/stores/{hash}/v3/inventory/items", get(inventory_items))
        .route("/stores/{hash}/v3/inventory/adjustments/absolute", put(absolute))
        .route("/stores/{hash}/v3/hooks", get(hooks).post(create_hook))
}
