//! Simulated WooCommerce: products (search by SKU, include), products batch (100 max → 413),
//! variable products whose stock lives on their variations (`products/{id}/variations` and its
//! batch), orders and notes, the Shipment Tracking extension's routes (validated like the
//! extension: a known provider, or a custom provider with its link; switchable to "not
//! installed", then every route of it answers 404 `rest_no_route`), webhooks.
//!
//! Where WooCommerce's behaviour is not known, the harder reading: a variation id sent to the
//! products batch is refused (it belongs to its parent's variations batch), and an unknown
//! provider name is refused rather than stored without a link.

use super::{
    Channel, ChannelSandbox, Gate, Order, OrderTopic, SandboxFulfilment, SandboxWebhook, finish, header_str,
    money,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;

pub const MAX_BATCH: usize = 100;

fn gmt(d: &chrono::DateTime<chrono::Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%S").to_string()
}

pub(crate) fn order_json(o: &Order) -> Value {
    let address = json!({"first_name": o.first_name, "last_name": o.last_name, "company": "", "address_1": "1 Sandbox Road",
        "address_2": "", "city": "Leeds", "state": "", "postcode": "LS1 1AA", "country": "GB"});
    let mut billing = address.clone();
    billing["email"] = json!(o.email.clone().unwrap_or_default());
    billing["phone"] = json!("");
    let p = super::pricing::price(o);
    let lines: Vec<Value> = o
        .lines
        .iter()
        .zip(&p.lines)
        .map(|(l, part)| {
            // A variation line names its variable product and the variation.
            let (product_id, variation_id) = match (l.parent, l.product) {
                (Some(parent), Some((own, _))) => (parent, own),
                (None, Some((own, _))) => (own, 0),
                _ => (0, 0),
            };
            // Woo keeps line totals ex tax even when prices include tax (apis.md §8.4).
            let subtotal = part.net + part.discount_ex;
            json!({"id": l.line_id, "name": l.name, "product_id": product_id, "variation_id": variation_id,
            "sku": l.sku.clone().unwrap_or_default(), "quantity": l.quantity, "price": l.price,
            "subtotal": p.text(subtotal), "total": p.text(part.net), "subtotal_tax": p.text(part.tax), "total_tax": p.text(part.tax)})
        })
        .collect();
    let fee_lines = if p.fee.net == 0 {
        json!([])
    } else {
        json!([{"id": 2, "name": "Payment surcharge", "total": p.text(p.fee.net), "total_tax": p.text(p.fee.tax)}])
    };
    json!({
        "id": o.id, "number": o.id.to_string(),
        "status": if o.cancelled { "cancelled" } else if !o.paid { "pending" } else if o.fully_shipped() { "completed" } else { "processing" },
        "payment_method": "bacs",
        "refunds": o.refunds.iter().map(|r| {
            let refund = super::refunds::woocommerce_refund(o, r);
            json!({"id": r.id, "reason": "", "total": format!("-{}", refund["amount"].as_str().unwrap_or("0"))})
        }).collect::<Vec<_>>(),
        "currency": o.currency, "prices_include_tax": o.money.prices_include_tax,
        "date_created_gmt": gmt(&o.created_at), "date_modified_gmt": gmt(&o.updated_at), "date_paid_gmt": if o.paid { json!(gmt(&o.created_at)) } else { Value::Null },
        "total": p.text(p.total), "total_tax": p.text(p.tax), "billing": billing, "shipping": address,
        "line_items": lines,
        "shipping_lines": [{"id": 1, "method_title": "Flat rate", "total": p.text(p.shipping.net), "total_tax": p.text(p.shipping.tax)}],
        "fee_lines": fee_lines,
    })
}

pub(crate) fn webhook(
    base_url: &str,
    order: &Value,
    topic: OrderTopic,
    secret: &str,
) -> (Vec<(String, String)>, String) {
    let (topic, body) = match topic {
        OrderTopic::Created => ("order.created", order.to_string()),
        OrderTopic::Updated | OrderTopic::Refunded => ("order.updated", order.to_string()),
        OrderTopic::Cancelled => ("order.deleted", json!({"id": order.get("id")}).to_string()),
    };
    let signature = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    let (resource, event) = topic.split_once('.').unwrap_or(("order", "updated"));
    let headers = vec![
        ("X-WC-Webhook-Source".to_string(), format!("{base_url}/")),
        ("X-WC-Webhook-Topic".to_string(), topic.to_string()),
        ("X-WC-Webhook-Resource".to_string(), resource.to_string()),
        ("X-WC-Webhook-Event".to_string(), event.to_string()),
        ("X-WC-Webhook-Signature".to_string(), signature),
        ("X-WC-Webhook-ID".to_string(), "1".to_string()),
        ("X-WC-Webhook-Delivery-ID".to_string(), format!("{:x}", fastrand::u64(..))),
        ("User-Agent".to_string(), "WooCommerce/9.0 Hookshot (WordPress/6.5)".to_string()),
    ];
    (headers, body)
}

async fn enter(sb: &ChannelSandbox, endpoint: &str, headers: &HeaderMap) -> Result<bool, Response> {
    let ok = header_str(headers, "authorization").is_some_and(|a| a.starts_with("Basic "));
    match sb.gate(Channel::Woocommerce, endpoint, ok).await {
        Gate::Answer(r) => Err(r),
        Gate::Serve { lose } => Ok(lose),
    }
}

macro_rules! enter_or_return {
    ($sb:expr, $endpoint:expr, $headers:expr) => {
        match enter(&$sb, $endpoint, &$headers).await {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

fn rest_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message, "data": {"status": status.as_u16()}})))
        .into_response()
}

async fn products(
    State(sb): State<Arc<ChannelSandbox>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let lose = enter_or_return!(sb, "products:get", headers);
    let list = |key: &str| q.get(key).map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>());
    let (skus, include) = (list("sku"), list("include"));
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(10).clamp(1, 100);
    let found: Vec<Value> = {
        let shop = sb.shop(Channel::Woocommerce);
        shop.products
            .iter()
            // Variations are products only to a SKU search (WooCommerce widens the post types
            // to product and product_variation when `sku` is given).
            .filter(|p| p.parent_id.is_none() || skus.is_some())
            .filter(|p| skus.as_ref().is_none_or(|s| s.contains(&p.sku)))
            .filter(|p| include.as_ref().is_none_or(|i| i.contains(&p.product_id.to_string())))
            .take(per_page)
            .map(product_json)
            .collect()
    };
    finish(lose, Json(Value::Array(found)).into_response())
}

fn product_json(p: &super::Product) -> Value {
    if p.variable {
        // The parent of variations holds no stock of its own here.
        return json!({"id": p.product_id, "parent_id": 0, "type": "variable", "sku": p.sku, "name": p.name,
            "manage_stock": false, "stock_quantity": null, "price": money(p.price)});
    }
    let kind = if p.parent_id.is_some() { "variation" } else { "simple" };
    json!({"id": p.product_id, "parent_id": p.parent_id.unwrap_or(0), "type": kind, "sku": p.sku, "name": p.name,
        "manage_stock": true, "stock_quantity": p.quantity, "price": money(p.price)})
}

async fn variations(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(parent): Path<u64>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let lose = enter_or_return!(sb, "variations:get", headers);
    let include = q.get("include").map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>());
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(10).clamp(1, 100);
    let answer = {
        let shop = sb.shop(Channel::Woocommerce);
        if !shop.products.iter().any(|p| p.product_id == parent && p.variable) {
            rest_error(StatusCode::NOT_FOUND, "woocommerce_rest_product_invalid_id", "Invalid ID.")
        } else {
            let list: Vec<Value> = shop
                .products
                .iter()
                .filter(|p| p.parent_id == Some(parent))
                .filter(|p| include.as_ref().is_none_or(|i| i.contains(&p.product_id.to_string())))
                .take(per_page)
                .map(product_json)
                .collect();
            Json(Value::Array(list)).into_response()
        }
    };
    finish(lose, answer)
}

/// One `update` list of a batch: each id must be a product of `parent`'s kind (`None` = the
/// products batch, which takes no variations).
fn apply_updates(sb: &ChannelSandbox, body: &Value, parent: Option<u64>) -> Vec<Value> {
    let mut shop = sb.shop(Channel::Woocommerce);
    let (code, message) = match parent {
        None => ("woocommerce_rest_product_invalid_id", "Invalid ID."),
        Some(_) => ("woocommerce_rest_product_variation_invalid_id", "Invalid variation ID."),
    };
    body.get("update")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|u| {
            let id = u.get("id").and_then(Value::as_u64).unwrap_or(0);
            match shop.products.iter_mut().find(|p| p.product_id == id && p.parent_id == parent) {
                Some(p) => {
                    if let Some(q) = u.get("stock_quantity").and_then(Value::as_i64) {
                        p.quantity = q;
                    }
                    json!({"id": id, "sku": p.sku, "stock_quantity": p.quantity})
                }
                None => {
                    json!({"id": id, "error": {"code": code, "message": message, "data": {"status": 400}}})
                }
            }
        })
        .collect()
}

fn too_large(body: &Value) -> Option<usize> {
    let count = |k: &str| body.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    let total = count("create") + count("update") + count("delete");
    (total > MAX_BATCH).then_some(total)
}

fn too_large_answer() -> Response {
    rest_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "woocommerce_rest_request_entity_too_large",
        &format!("Unable to accept more than {MAX_BATCH} items for this request."),
    )
}

async fn variations_batch(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(parent): Path<u64>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let lose = enter_or_return!(sb, "variations/batch", headers);
    if too_large(&body).is_some() {
        sb.record_oversized(Channel::Woocommerce);
        return finish(lose, too_large_answer());
    }
    if !sb.shop(Channel::Woocommerce).products.iter().any(|p| p.product_id == parent && p.variable) {
        return finish(
            lose,
            rest_error(StatusCode::NOT_FOUND, "woocommerce_rest_product_invalid_id", "Invalid ID."),
        );
    }
    let updated = apply_updates(&sb, &body, Some(parent));
    sb.record_batch(Channel::Woocommerce, updated.len());
    finish(lose, Json(json!({"update": updated})).into_response())
}

async fn batch(
    State(sb): State<Arc<ChannelSandbox>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let lose = enter_or_return!(sb, "products/batch", headers);
    if too_large(&body).is_some() {
        sb.record_oversized(Channel::Woocommerce);
        return finish(lose, too_large_answer());
    }
    let updated = apply_updates(&sb, &body, None);
    sb.record_batch(Channel::Woocommerce, updated.len());
    finish(lose, Json(json!({"update": updated})).into_response())
}

async fn order(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lose = enter_or_return!(sb, "orders/get", headers);
    let answer = match sb.order_json(Channel::Woocommerce, &id) {
        Some(o) => Json(o).into_response(),
        None => rest_error(StatusCode::NOT_FOUND, "woocommerce_rest_shop_order_invalid_id", "Invalid ID."),
    };
    finish(lose, answer)
}

async fn orders(
    State(sb): State<Arc<ChannelSandbox>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let lose = enter_or_return!(sb, "orders:list", headers);
    let since = q
        .get("modified_after")
        .and_then(|s| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok())
        .map(|n| n.and_utc());
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(10).clamp(1, 100);
    let list: Vec<Value> = {
        let shop = sb.shop(Channel::Woocommerce);
        // Second precision, like WordPress dates.
        shop.orders
            .values()
            .filter(|o| since.is_none_or(|s| o.updated_at.timestamp() >= s.timestamp()))
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|o| super::only_fields(order_json(o), q.get("_fields")))
            .collect()
    };
    finish(lose, Json(Value::Array(list)).into_response())
}

async fn notes(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lose = enter_or_return!(sb, "orders/notes:get", headers);
    let notes = sb.order_notes(Channel::Woocommerce, &id);
    let list: Vec<Value> = notes
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"id": i + 1, "note": n, "customer_note": true}))
        .collect();
    finish(lose, Json(Value::Array(list)).into_response())
}

async fn add_note(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let lose = enter_or_return!(sb, "orders/notes:post", headers);
    let note = body.get("note").and_then(Value::as_str).unwrap_or("").to_string();
    let answer = {
        let mut shop = sb.shop(Channel::Woocommerce);
        match id.parse().ok().and_then(|id: u64| shop.orders.get_mut(&id)) {
            Some(o) if !note.is_empty() => {
                o.notes.push(note.clone());
                (StatusCode::CREATED, Json(json!({"id": o.notes.len(), "note": note}))).into_response()
            }
            Some(_) => {
                rest_error(StatusCode::BAD_REQUEST, "woocommerce_rest_missing_note", "note is required")
            }
            None => {
                rest_error(StatusCode::NOT_FOUND, "woocommerce_rest_order_invalid_id", "Invalid order ID.")
            }
        }
    };
    finish(lose, answer)
}

fn no_route() -> Response {
    rest_error(
        StatusCode::NOT_FOUND,
        "rest_no_route",
        "No route was found matching the URL and request method.",
    )
}

async fn trackings(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lose = enter_or_return!(sb, "shipment-trackings:get", headers);
    if sb.shop(Channel::Woocommerce).shipment_tracking_missing {
        return finish(lose, no_route());
    }
    if sb.order_json(Channel::Woocommerce, &id).is_none() {
        return finish(
            lose,
            rest_error(StatusCode::NOT_FOUND, "woocommerce_rest_order_invalid_id", "Invalid order ID."),
        );
    }
    let list: Vec<Value> = sb
        .fulfilments(Channel::Woocommerce, &id)
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let known = known_provider(&f.carrier);
            json!({"tracking_id": format!("{:x}", i + 1), "tracking_number": f.tracking_number,
                "tracking_provider": known.map(|(name, _)| slug(name)).unwrap_or_default(),
                "custom_tracking_provider": if known.is_some() { String::new() } else { f.carrier.clone() },
                "custom_tracking_link": if known.is_some() { None } else { f.tracking_url.clone() },
                "tracking_link": f.tracking_url})
        })
        .collect();
    finish(lose, Json(Value::Array(list)).into_response())
}

/// Part of the Shipment Tracking extension's built-in provider list: name → link format
/// (`%1$s` = the tracking number). USPS and Aramex are the extension docs' own examples.
const PROVIDERS: [(&str, &str); 8] = [
    ("Royal Mail", "https://www.royalmail.com/track-your-item#/tracking-results/%1$s"),
    ("Parcelforce", "https://www.parcelforce.com/track-trace?trackNumber=%1$s"),
    ("DPD", "https://track.dpd.co.uk/parcels/%1$s"),
    ("DHL", "https://www.dhl.com/en/express/tracking.html?AWB=%1$s"),
    ("USPS", "https://tools.usps.com/tracking/%1$s"),
    ("UPS", "https://www.ups.com/track?tracknum=%1$s"),
    ("FedEx", "https://www.fedex.com/fedextrack/?tracknumbers=%1$s"),
    ("Aramex", "https://www.aramex.com/track/track-results-new?ShipmentNumber=%1$s"),
];

/// WordPress `sanitize_title` in small: lower case, runs of other characters become `-`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// A provider of the list, by its name or its slug.
fn known_provider(given: &str) -> Option<(&'static str, &'static str)> {
    let wanted = slug(given);
    PROVIDERS.iter().copied().find(|(name, _)| !wanted.is_empty() && slug(name) == wanted)
}

async fn providers(State(sb): State<Arc<ChannelSandbox>>) -> Response {
    if sb.shop(Channel::Woocommerce).shipment_tracking_missing {
        return no_route();
    }
    let mut uk = serde_json::Map::new();
    for (name, link) in PROVIDERS {
        uk.insert(name.to_string(), json!(link));
    }
    Json(json!({"Global": uk})).into_response()
}

async fn add_tracking(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let lose = enter_or_return!(sb, "shipment-trackings:post", headers);
    if sb.shop(Channel::Woocommerce).shipment_tracking_missing {
        return finish(lose, no_route());
    }
    let text = |k: &str| {
        body.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
    };
    let Some(number) = text("tracking_number") else {
        return finish(
            lose,
            rest_error(StatusCode::BAD_REQUEST, "rest_missing_callback_param", "tracking_number is required"),
        );
    };
    // Either a provider of the list, or a custom provider with its own link.
    let (carrier, link) = match (
        text("tracking_provider"),
        text("custom_tracking_provider"),
        text("custom_tracking_link"),
    ) {
        (Some(provider), _, _) => match known_provider(&provider) {
            Some((name, format)) => (name.to_string(), Some(format.replace("%1$s", &number))),
            None => {
                return finish(
                    lose,
                    rest_error(
                        StatusCode::BAD_REQUEST,
                        "rest_invalid_param",
                        &format!("Unknown tracking provider {provider:?}."),
                    ),
                );
            }
        },
        (None, Some(custom), Some(link)) if link.starts_with("http://") || link.starts_with("https://") => {
            (custom, Some(link.replace("%1$s", &number)))
        }
        _ => {
            return finish(
                lose,
                rest_error(
                    StatusCode::BAD_REQUEST,
                    "rest_invalid_param",
                    "A tracking item needs a known tracking_provider, or a custom_tracking_provider with a custom_tracking_link.",
                ),
            );
        }
    };
    let answer = {
        let mut shop = sb.shop(Channel::Woocommerce);
        match id.parse().ok().and_then(|id: u64| shop.orders.get_mut(&id)) {
            Some(o) => {
                o.fulfilments.push(SandboxFulfilment {
                    tracking_number: number.clone(),
                    carrier,
                    tracking_url: link,
                    lines: Vec::new(),
                    location_id: None,
                });
                (
                    StatusCode::CREATED,
                    Json(json!({"tracking_id": o.fulfilments.len(), "tracking_number": number})),
                )
                    .into_response()
            }
            None => {
                rest_error(StatusCode::NOT_FOUND, "woocommerce_rest_order_invalid_id", "Invalid order ID.")
            }
        }
    };
    finish(lose, answer)
}

async fn webhooks(State(sb): State<Arc<ChannelSandbox>>, headers: HeaderMap) -> Response {
    let lose = enter_or_return!(sb, "webhooks:get", headers);
    let list: Vec<Value> = sb
        .webhooks(Channel::Woocommerce)
        .iter()
        .map(|h| json!({"id": h.id, "topic": h.topic, "delivery_url": h.address, "status": "active"}))
        .collect();
    finish(lose, Json(Value::Array(list)).into_response())
}

async fn create_webhook(
    State(sb): State<Arc<ChannelSandbox>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let lose = enter_or_return!(sb, "webhooks:post", headers);
    let text = |k: &str| body.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let (Some(topic), Some(url)) = (text("topic"), text("delivery_url")) else {
        return finish(
            lose,
            rest_error(
                StatusCode::BAD_REQUEST,
                "rest_missing_callback_param",
                "topic and delivery_url are required",
            ),
        );
    };
    let id = {
        let mut shop = sb.shop(Channel::Woocommerce);
        let id = shop.next();
        shop.hooks.push(SandboxWebhook {
            id,
            topic: topic.clone(),
            address: url.clone(),
            headers: Default::default(),
            secret: text("secret"),
        });
        id
    };
    finish(
        lose,
        (
            StatusCode::CREATED,
            Json(json!({"id": id, "topic": topic, "delivery_url": url, "status": "active"})),
        )
            .into_response(),
    )
}

pub(crate) fn routes() -> axum::Router<Arc<ChannelSandbox>> {
    axum::Router::new()
        .route("/wp-json/wc/v3/products", get(products))
        .route("/wp-json/wc/v3/products/batch", post(batch))
        .route("/wp-json/wc/v3/products/{id}/variations", get(variations))
        .route("/wp-json/wc/v3/products/{id}/variations/batch", post(variations_batch))
        .route("/wp-json/wc-shipment-tracking/v3/shipment-trackings/providers", get(providers))
        .route("/wp-json/wc/v3/orders", get(orders))
        .route("/wp-json/wc/v3/orders/{id}", get(order))
        .route("/wp-json/wc/v3/orders/{id}/notes", get(notes).post(add_note))
        .route(
            "/wp-json/wc-shipment-tracking/v3/orders/{id}/shipment-trackings",
            get(trackings).post(add_tracking),
        )
        .route("/wp-json/wc/v3/webhooks", get(webhooks).post(create_webhook))
}
