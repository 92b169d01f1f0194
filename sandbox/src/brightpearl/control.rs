//! The control API under `/__sandbox/brightpearl/` (documented in the module doc of
//! `brightpearl`), and the router that serves it beside the simulated API.

use super::state::{DuplicatePostAnswer, SeedSpec};
use super::{BrightpearlSandbox, handle_api, oauth};
use crate::faults::{Fault, FaultRates};
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[derive(Deserialize)]
struct StockBody {
    product_id: u64,
    warehouse_id: u64,
    on_hand: i64,
}

#[derive(Deserialize)]
struct ShipBody {
    order_id: u64,
    tracking: String,
    #[serde(default)]
    carrier: String,
}

#[derive(Deserialize)]
struct ReceiveRow {
    row_id: u64,
    quantity: i64,
}

#[derive(Deserialize)]
struct ReceiveBody {
    purchase_order_id: u64,
    #[serde(default)]
    rows: Option<Vec<ReceiveRow>>,
}

#[derive(Deserialize)]
struct FaultsBody {
    #[serde(default)]
    rates: Option<FaultRates>,
    #[serde(default)]
    script: Vec<Option<Fault>>,
    /// With `endpoint`: `script` applies to that endpoint only, or `nth` + `fault`.
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    nth: Option<u64>,
    #[serde(default)]
    fault: Option<Fault>,
}

/// `POST /__sandbox/brightpearl/settings`: each field optional; the answer is the settings now.
#[derive(Deserialize)]
struct SettingsBody {
    #[serde(default)]
    duplicate_post_answer: Option<DuplicatePostAnswer>,
    #[serde(default)]
    search_lag_ms: Option<u64>,
}

#[derive(Deserialize)]
struct RateLimitBody {
    requests: u32,
    window_ms: u64,
}

fn control_error(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

/// The Brightpearl API plus the control routes.
pub fn router(sandbox: Arc<BrightpearlSandbox>) -> Router {
    Router::new()
        .route("/public-api/{account}/{*path}", any(handle_api))
        .route(
            "/__sandbox/brightpearl/seed",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(spec): Json<SeedSpec>| async move {
                sb.seed(spec);
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/__sandbox/brightpearl/stock",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(b): Json<StockBody>| async move {
                sb.set_stock(b.product_id, b.warehouse_id, b.on_hand);
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/__sandbox/brightpearl/ship",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(b): Json<ShipBody>| async move {
                match sb.ship_goods_out(b.order_id, &b.tracking, &b.carrier) {
                    Ok(id) => Json(json!({"goods_out_note_id": id})).into_response(),
                    Err(e) => control_error(e),
                }
            }),
        )
        .route(
            "/__sandbox/brightpearl/receive",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(b): Json<ReceiveBody>| async move {
                let rows = b.rows.map(|r| r.into_iter().map(|r| (r.row_id, r.quantity)).collect());
                match sb.receive_purchase_order(b.purchase_order_id, rows) {
                    Ok(id) => Json(json!({"goods_in_note_id": id})).into_response(),
                    Err(e) => control_error(e),
                }
            }),
        )
        .route(
            "/__sandbox/brightpearl/counters",
            get(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move { Json(sb.counters()) }).delete(
                |AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move {
                    sb.reset_counters();
                    Json(json!({"ok": true}))
                },
            ),
        )
        .route(
            "/__sandbox/brightpearl/state",
            get(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move { Json(sb.state()) }),
        )
        .route(
            "/__sandbox/brightpearl/webhooks/deliveries",
            get(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move { Json(sb.webhook_deliveries()) }),
        )
        .route(
            "/__sandbox/brightpearl/faults",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(b): Json<FaultsBody>| async move {
                if let Some(r) = b.rates {
                    sb.faults.set_rates(r);
                }
                match (&b.endpoint, b.nth, b.fault) {
                    (Some(e), Some(n), Some(f)) => sb.fault_at(e, n, f),
                    (Some(e), _, _) => sb.script_endpoint(e, b.script),
                    (None, _, _) => sb.faults.script(b.script),
                }
                Json(json!({"ok": true}))
            })
            .delete(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move {
                sb.clear_faults();
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/__sandbox/brightpearl/rate-limit",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(b): Json<RateLimitBody>| async move {
                sb.set_rate_limit(b.requests, Duration::from_millis(b.window_ms.max(1)));
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/__sandbox/brightpearl/expire-tokens",
            post(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move {
                sb.expire_access_tokens();
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/__sandbox/brightpearl/settings",
            get(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move { Json(sb.settings()) }).post(
                |AxState(sb): AxState<Arc<BrightpearlSandbox>>, Json(b): Json<SettingsBody>| async move {
                    let mut s = sb.settings();
                    if let Some(answer) = b.duplicate_post_answer {
                        s.duplicate_post_answer = answer;
                    }
                    if let Some(ms) = b.search_lag_ms {
                        s.search_lag_ms = ms;
                    }
                    sb.set_settings(s);
                    Json(s)
                },
            ),
        )
        .route(
            "/__sandbox/brightpearl/oauth/refresh-token",
            get(|AxState(sb): AxState<Arc<BrightpearlSandbox>>| async move {
                Json(json!({"refresh_token": sb.current_refresh_token()}))
            }),
        )
        .route("/__sandbox/brightpearl/oauth/token", post(oauth::token_endpoint))
        .route("/__sandbox/brightpearl/oauth/token/{account}", post(oauth::token_endpoint))
        .with_state(sandbox)
}
