//! HTTP control routes under `/__sandbox/{channel}/...`: seeding, merchant edits, orders,
//! webhook deliveries, records and fault scripts, for tools outside the test process.

use super::{Channel, ChannelSandbox, DeliveryOptions, NewOrder};
use crate::faults::{Fault, FaultRates};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

fn channel_of(name: &str) -> Result<Channel, Response> {
    Channel::parse(name).ok_or_else(|| (StatusCode::NOT_FOUND, "unknown channel").into_response())
}

#[derive(Deserialize)]
struct SeedItem {
    sku: String,
    quantity: i64,
}

async fn control_seed(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(channel): Path<String>,
    Json(items): Json<Vec<SeedItem>>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    for item in &items {
        sb.seed_product(channel, &item.sku, item.quantity);
    }
    Json(json!({"seeded": items.len()})).into_response()
}

async fn control_quantity(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((channel, sku)): Path<(String, String)>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match sb.quantity(channel, &sku) {
        Some(q) => Json(json!({"sku": sku, "quantity": q})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Deserialize)]
struct SetQuantity {
    quantity: i64,
}

async fn control_set_quantity(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((channel, sku)): Path<(String, String)>,
    Json(body): Json<SetQuantity>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if sb.set_quantity(channel, &sku, body.quantity) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
        .into_response()
}

async fn control_create_order(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(channel): Path<String>,
    Json(new): Json<NewOrder>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (id, order) = sb.create_order(channel, new);
    Json(json!({"id": id, "order": order})).into_response()
}

#[derive(Deserialize)]
struct DeliverRequest {
    target_url: String,
    secret: String,
    #[serde(flatten)]
    options: DeliveryOptions,
}

async fn control_deliver(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((channel, id)): Path<(String, String)>,
    Json(req): Json<DeliverRequest>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let sent = sb.deliver_order_webhook(channel, &id, &req.target_url, &req.secret, &req.options).await;
    Json(json!({"sent": sent})).into_response()
}

async fn control_fulfilments(
    State(sb): State<Arc<ChannelSandbox>>,
    Path((channel, id)): Path<(String, String)>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    Json(json!({"fulfilments": sb.fulfilments(channel, &id), "notes": sb.order_notes(channel, &id)}))
        .into_response()
}

async fn control_counters(State(sb): State<Arc<ChannelSandbox>>, Path(channel): Path<String>) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    Json(json!({"counters": sb.counters(channel), "faults": sb.faults(channel).counts()})).into_response()
}

#[derive(Deserialize)]
struct FaultRequest {
    #[serde(default)]
    rates: Option<FaultRates>,
    #[serde(default)]
    script: Vec<Option<Fault>>,
    #[serde(default)]
    clear: bool,
}

async fn control_faults(
    State(sb): State<Arc<ChannelSandbox>>,
    Path(channel): Path<String>,
    Json(req): Json<FaultRequest>,
) -> Response {
    let channel = match channel_of(&channel) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let faults = sb.faults(channel);
    if req.clear {
        faults.clear();
    }
    if let Some(rates) = req.rates {
        faults.set_rates(rates);
    }
    faults.script(req.script);
    StatusCode::NO_CONTENT.into_response()
}

pub(super) fn routes() -> axum::Router<Arc<ChannelSandbox>> {
    axum::Router::new()
        .route("/__sandbox/{channel}/products", post(control_seed))
        .route("/__sandbox/{channel}/quantity/{sku}", get(control_quantity).put(control_set_quantity))
        .route("/__sandbox/{channel}/orders", post(control_create_order))
        .route("/__sandbox/{channel}/orders/{id}/deliver", post(control_deliver))
        .route("/__sandbox/{channel}/orders/{id}/fulfilments", get(control_fulfilments))
        .route("/__sandbox/{channel}/counters", get(control_counters))
        .route("/__sandbox/{channel}/faults", post(control_faults))
}
