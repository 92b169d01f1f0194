//! reorder-checker Lambda: wiring only; the handler lives in `pearlsync::reorder`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use pearlsync::app::App;
use pearlsync::config::Config;
use pearlsync::reorder::ReorderChecker;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pearlsync::telemetry::init();
    let app = App::from_config(Config::load_for_lambda().await?, "reorder-checker").await?;
    let checker = ReorderChecker::new(&app);
    let checker = &checker;
    let metrics = &app.metrics;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| async move {
        let result = checker.handle_event(event.payload).await;
        metrics.flush();
        result.map_err(Error::from)
    }))
    .await
}
