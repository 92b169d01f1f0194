//! reorder-checker Lambda: wiring only; the handler lives in `pearlsync::reorder`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use pearlsync::app::App;
use pearlsync::config::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pearlsync::telemetry::init();
    let app = App::from_config(Config::load_for_lambda().await?, "reorder-checker").await?;
    let checker = app.reorder_checker();
    let checker = &checker;
    let metrics = &app.metrics;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| async move {
        let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
        let result = checker.handle_invocation(event.payload, pearlsync::reorder::stop_at(deadline_ms)).await;
        metrics.flush();
        result.map_err(Error::from)
    }))
    .await
}
