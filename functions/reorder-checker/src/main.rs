//! reorder-checker Lambda: wiring only; the handler lives in the pearlsync library.

use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pearlsync::telemetry::init();
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| async move {
        tracing::warn!(request_id = %event.context.request_id, "reorder-checker handler not implemented yet");
        Ok::<_, Error>(serde_json::json!({"status": "not implemented"}))
    }))
    .await
}
