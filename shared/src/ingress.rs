//! webhook-ingress: verify each delivery, dedup it on the sender's event id, turn it into jobs,
//! enqueue them, and answer within the sender's deadline. Bad input gets a 4xx with a logged
//! reason and is never enqueued; a store or queue failure gets a 5xx so the sender retries and
//! nothing acknowledged is lost.
//!
//! Routes: `POST /webhooks/{shopify|bigcommerce|woocommerce}/{store}` and
//! `POST /webhooks/brightpearl/{secret}` (Brightpearl signs nothing: the URL secret is the
//! authenticator, compared in constant time).

use crate::channels::ChannelSet;
use crate::channels::signature::verify_shared_secret;
use crate::error::Error;
use crate::metrics::{Metrics, names};
use crate::queue::{ChannelKind, Job, JobQueue};
use crate::secret::Secret;
use crate::state::StateStore;
use crate::state::idempotency::{Claim, Idempotency};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Largest body accepted. Orders are a few KB; Shopify caps at a few hundred KB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Senders retry for up to a few days (Shopify 4 h, Brightpearl QoS1 longer): keep dedup
/// records a week.
pub const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a delivery holds its dedup key while it enqueues.
const DEDUP_LOCK_MS: i64 = 30_000;
/// `Retry-After` for a duplicate whose first delivery is still in progress: the first
/// delivery has then finished or its lock has lapsed.
const IN_PROGRESS_RETRY_SECS: u64 = 30;
const STORE_RETRY_SECS: u64 = 5;

/// An HTTP request as the ingress sees it, whatever carried it (Function URL, local server).
#[derive(Debug, Clone, Default)]
pub struct IngressRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngressResponse {
    pub status: u16,
    pub body: serde_json::Value,
    /// Sent as `Retry-After` (seconds) with a 503 the sender should retry.
    pub retry_after_secs: Option<u64>,
}

impl IngressResponse {
    pub(crate) fn new(status: u16, body: serde_json::Value) -> Self {
        IngressResponse { status, body, retry_after_secs: None }
    }

    fn reject(status: u16, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        tracing::warn!(status, reason = %reason, "webhook rejected");
        IngressResponse::new(status, json!({"error": reason}))
    }

    /// Retry later: the sender keeps the delivery and comes back.
    fn retry(body: serde_json::Value, after_secs: u64) -> Self {
        IngressResponse { status: 503, body, retry_after_secs: Some(after_secs) }
    }
}

pub struct Ingress {
    pub channels: Arc<ChannelSet>,
    pub state: Arc<dyn StateStore>,
    pub queue: Arc<dyn JobQueue>,
    /// The secret path segment of Brightpearl's webhook URLs; None turns that route off.
    pub brightpearl_secret: Option<Secret>,
    pub max_body_bytes: usize,
    pub dedup: Idempotency,
    pub metrics: Arc<Metrics>,
}

/// The body our Brightpearl subscriptions template (all values are strings).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BrightpearlEvent {
    account_code: String,
    id: String,
    full_event: String,
    #[serde(default)]
    raised_on: String,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn is_json(headers: &[(String, String)]) -> bool {
    header(headers, "content-type").is_some_and(|ct| {
        let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        media == "application/json" || media.ends_with("+json")
    })
}

impl Ingress {
    /// The ingress of an `App`, with its configured Brightpearl secret and body limit.
    pub fn from_app(app: &crate::app::App) -> Self {
        let mut ingress = Ingress::new(
            Arc::clone(&app.channels),
            Arc::clone(&app.state),
            Arc::clone(&app.queue),
            app.config.ingress.brightpearl_webhook_secret.clone(),
            Arc::clone(&app.metrics),
        );
        if let Some(limit) = app.config.ingress.max_body_bytes {
            ingress.max_body_bytes = limit;
        }
        ingress
    }

    pub fn new(
        channels: Arc<ChannelSet>,
        state: Arc<dyn StateStore>,
        queue: Arc<dyn JobQueue>,
        brightpearl_secret: Option<Secret>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let dedup = Idempotency::new(Arc::clone(&state), DEFAULT_DEDUP_TTL);
        Ingress {
            channels,
            state,
            queue,
            brightpearl_secret,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            dedup,
            metrics,
        }
    }

    /// One Lambda invocation: a Function URL event in, its response out.
    pub async fn handle_event(&self, event: serde_json::Value) -> crate::Result<serde_json::Value> {
        let response = function_url::handle(self, &event).await;
        self.metrics.flush();
        Ok(response)
    }

    pub async fn handle(&self, request: IngressRequest) -> IngressResponse {
        let response = self.route(&request).await;
        if response.status >= 400 && response.status < 500 {
            self.metrics.count(names::WEBHOOKS_REJECTED, 1);
        }
        response
    }

    async fn route(&self, request: &IngressRequest) -> IngressResponse {
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        let (source, target) = match segments.as_slice() {
            ["webhooks", source, target] if !target.is_empty() => (*source, *target),
            _ => return IngressResponse::reject(404, format!("no webhook route at {}", request.path)),
        };
        if !request.method.eq_ignore_ascii_case("POST") {
            return IngressResponse::reject(
                405,
                format!("method {} is not allowed; webhooks are POST", request.method),
            );
        }
        if request.body.len() > self.max_body_bytes {
            return IngressResponse::reject(
                413,
                format!(
                    "body of {} bytes is over the {} byte limit",
                    request.body.len(),
                    self.max_body_bytes
                ),
            );
        }
        if source == "brightpearl" {
            return self.brightpearl(target, request).await;
        }
        let Some(kind) = ChannelKind::parse(source) else {
            return IngressResponse::reject(404, format!("unknown webhook source {source:?}"));
        };
        let Some(channel) = self.channels.for_webhook(kind, target) else {
            return IngressResponse::reject(404, format!("no {kind} store named {target:?}"));
        };
        let delivery = match channel.verify_webhook(&request.headers, &request.body) {
            Ok(d) => d,
            Err(e @ Error::Unauthorized { .. }) => return IngressResponse::reject(401, e.to_string()),
            Err(e) => return IngressResponse::reject(400, e.to_string()),
        };
        if delivery.is_ping() {
            return IngressResponse::new(200, json!({"status": "ping"}));
        }
        if !is_json(&request.headers) {
            return IngressResponse::reject(415, "content type must be application/json");
        }
        let Some(order_id) = delivery.order_id.clone() else {
            return IngressResponse::reject(
                400,
                format!("{kind} delivery {} names no order", delivery.topic),
            );
        };
        // The units this order sold are held back from pushes until Brightpearl reserves them.
        if let Some(pending) =
            crate::pending::from_delivery(&self.channels, target, delivery.payload.as_ref())
            && let Err(e) = crate::pending::record(self.state.as_ref(), target, &order_id, &pending).await
        {
            tracing::warn!(store = target, order = %order_id, error = %e, "pending units not recorded; the sweep repairs");
            self.metrics.count(crate::metrics::names::PENDING_NOT_RECORDED, 1);
        }
        let job = Job::ChannelOrder {
            channel: kind,
            store: target.to_string(),
            order_id,
            event: delivery.event,
            payload: delivery.payload,
        };
        self.enqueue_once(&delivery.dedup_key, vec![job]).await
    }

    async fn brightpearl(&self, presented: &str, request: &IngressRequest) -> IngressResponse {
        let Some(secret) = &self.brightpearl_secret else {
            return IngressResponse::reject(404, "Brightpearl webhooks are not configured");
        };
        if !verify_shared_secret(&[secret], presented) {
            return IngressResponse::reject(401, "Brightpearl webhook secret does not match");
        }
        if !is_json(&request.headers) {
            return IngressResponse::reject(415, "content type must be application/json");
        }
        let event: BrightpearlEvent = match serde_json::from_slice(&request.body) {
            Ok(e) => e,
            Err(e) => return IngressResponse::reject(400, format!("Brightpearl webhook body: {e}")),
        };
        let ids = match crate::brightpearl::idset::parse(&event.id) {
            Ok(ids) if !ids.is_empty() => ids,
            Ok(_) => return IngressResponse::reject(400, "Brightpearl webhook has an empty id set"),
            Err(e) => return IngressResponse::reject(400, format!("Brightpearl webhook id set: {e}")),
        };
        let job = match event.full_event.as_str() {
            "product.modified.on-hand-modified" => Job::StockChanged { product_ids: ids },
            "goods-out-note.modified.shipped" => Job::Shipment { goods_out_note_ids: ids },
            "goods-in-note.created" => Job::GoodsIn { goods_in_note_ids: ids },
            other => {
                // A subscription we did not ask for: acknowledge so Brightpearl does not retry.
                tracing::info!(event = other, "Brightpearl event ignored");
                return IngressResponse::new(200, json!({"status": "ignored", "event": other}));
            }
        };
        let key = format!(
            "brightpearl:{}:{}:{}:{}",
            event.account_code, event.full_event, event.id, event.raised_on
        );
        self.enqueue_once(&key, vec![job]).await
    }

    /// Enqueues `jobs` unless this delivery was already taken. The dedup record is completed
    /// only after the queue accepted the jobs, so a failed enqueue leaves the key free for the
    /// sender's retry.
    async fn enqueue_once(&self, dedup_key: &str, jobs: Vec<Job>) -> IngressResponse {
        let lock_until = crate::state::now_epoch_millis() + DEDUP_LOCK_MS;
        let marker = json!(dedup_key);
        let lease = match self.dedup.begin(&format!("webhook:{dedup_key}"), &marker, lock_until).await {
            Ok(Claim::Acquired(lease)) => lease,
            Ok(Claim::Completed(_)) => {
                self.metrics.count(names::DUPLICATES, 1);
                tracing::info!(dedup_key, "duplicate delivery acknowledged");
                return IngressResponse::new(200, json!({"status": "duplicate"}));
            }
            // The first delivery is still being enqueued: if it then fails, only the sender's
            // retry can bring the event back, so this one must not be acknowledged.
            Ok(Claim::InProgress { .. }) => {
                tracing::info!(dedup_key, "same delivery in progress; asking the sender to retry");
                return IngressResponse::retry(
                    json!({"status": "in_progress", "error": "the same delivery is in progress, retry"}),
                    IN_PROGRESS_RETRY_SECS,
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "dedup store failed; asking the sender to retry");
                return IngressResponse::retry(
                    json!({"error": "state store unavailable, retry"}),
                    STORE_RETRY_SECS,
                );
            }
        };
        if let Err(e) = self.queue.send(&jobs).await {
            tracing::error!(error = %e, "enqueue failed; asking the sender to retry");
            if let Err(release) = self.dedup.release(lease).await {
                tracing::error!(error = %release, "could not release the dedup key; it frees itself after the lock");
            }
            return IngressResponse::retry(json!({"error": "queue unavailable, retry"}), STORE_RETRY_SECS);
        }
        if let Err(e) = self.dedup.complete(lease, &json!({"jobs": jobs.len()})).await {
            // The jobs are queued; a redelivery may queue them again, which consumers absorb.
            tracing::warn!(error = %e, "dedup record not completed");
        }
        IngressResponse::new(200, json!({"status": "queued", "jobs": jobs.len()}))
    }
}

/// The Lambda Function URL event (payload format 2.0) as JSON, in and out. The Lambda and
/// `pearlsync invoke webhook-ingress` both come through here.
pub mod function_url {
    use super::{Ingress, IngressRequest, IngressResponse};
    use base64::Engine;
    use serde_json::{Value, json};

    pub fn request(event: &Value) -> Result<IngressRequest, IngressResponse> {
        let text = |v: &Value| v.as_str().map(str::to_string);
        let raw_body = event.get("body").and_then(Value::as_str).unwrap_or_default();
        let body = if event.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
            base64::engine::general_purpose::STANDARD.decode(raw_body).map_err(|e| {
                IngressResponse::new(400, json!({"error": format!("body is not valid base64: {e}")}))
            })?
        } else {
            raw_body.as_bytes().to_vec()
        };
        let headers = event
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| h.iter().filter_map(|(k, v)| text(v).map(|v| (k.clone(), v))).collect())
            .unwrap_or_default();
        let http = &event["requestContext"]["http"];
        Ok(IngressRequest {
            method: text(&http["method"]).unwrap_or_default(),
            path: text(&event["rawPath"]).or_else(|| text(&http["path"])).unwrap_or_default(),
            headers,
            body,
        })
    }

    pub fn response(response: &IngressResponse) -> Value {
        let mut headers = json!({"content-type": "application/json"});
        if let Some(secs) = response.retry_after_secs {
            headers["retry-after"] = json!(secs.to_string());
        }
        json!({
            "statusCode": response.status,
            "headers": headers,
            "body": response.body.to_string(),
            "isBase64Encoded": false,
        })
    }

    pub async fn handle(ingress: &Ingress, event: &Value) -> Value {
        let answer = match request(event) {
            Ok(r) => ingress.handle(r).await,
            Err(rejected) => rejected,
        };
        response(&answer)
    }
}

/// The ingress over plain HTTP, for `pearlsync serve`, the demo and tests (on Lambda the
/// Function URL adapter calls `Ingress::handle` directly).
pub mod http {
    use super::{Ingress, IngressRequest};
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::header::RETRY_AFTER;
    use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
    use axum::response::IntoResponse;
    use std::sync::Arc;

    pub fn router(ingress: Arc<Ingress>) -> axum::Router {
        axum::Router::new().fallback(handle).with_state(ingress)
    }

    async fn handle(
        State(ingress): State<Arc<Ingress>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> impl IntoResponse {
        let request = IngressRequest {
            method: method.as_str().to_string(),
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: body.to_vec(),
        };
        let response = ingress.handle(request).await;
        let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut headers = HeaderMap::new();
        if let Some(v) = response.retry_after_secs.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            headers.insert(RETRY_AFTER, v);
        }
        (status, headers, axum::Json(response.body))
    }

    /// Serves the ingress on `listener` until `shutdown` resolves.
    pub async fn serve(
        listener: tokio::net::TcpListener,
        ingress: Arc<Ingress>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, router(ingress)).with_graceful_shutdown(shutdown).await
    }
}
