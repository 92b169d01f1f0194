//! webhook-ingress Lambda (Function URL): wiring only. The request is turned into an
//! `IngressRequest`; `pearlsync::ingress` verifies, dedups and enqueues.

use aws_lambda_events::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use base64::Engine;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use pearlsync::app::App;
use pearlsync::config::Config;
use pearlsync::ingress::{Ingress, IngressRequest, IngressResponse};
use std::sync::Arc;

fn to_ingress(request: LambdaFunctionUrlRequest) -> Result<IngressRequest, IngressResponse> {
    let body = match (request.body, request.is_base64_encoded) {
        (Some(b), true) => {
            base64::engine::general_purpose::STANDARD.decode(b).map_err(|e| IngressResponse {
                status: 400,
                body: serde_json::json!({"error": format!("body is not valid base64: {e}")}),
            })?
        }
        (Some(b), false) => b.into_bytes(),
        (None, _) => Vec::new(),
    };
    let headers = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    Ok(IngressRequest {
        method: request.request_context.http.method.unwrap_or_default(),
        path: request.raw_path.or(request.request_context.http.path).unwrap_or_default(),
        headers,
        body,
    })
}

fn to_lambda(response: IngressResponse) -> LambdaFunctionUrlResponse {
    let mut out = LambdaFunctionUrlResponse::default();
    out.status_code = i64::from(response.status);
    out.headers.insert(
        aws_lambda_events::http::header::CONTENT_TYPE,
        aws_lambda_events::http::HeaderValue::from_static("application/json"),
    );
    out.body = Some(response.body.to_string());
    out
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    pearlsync::telemetry::init();
    let app = App::from_config(Config::load_for_lambda().await?, "webhook-ingress").await?;
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
    let ingress = &ingress;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<LambdaFunctionUrlRequest>| async move {
        let response = match to_ingress(event.payload) {
            Ok(request) => ingress.handle(request).await,
            Err(rejected) => rejected,
        };
        ingress.metrics.flush();
        Ok::<_, Error>(to_lambda(response))
    }))
    .await
}
