//! order-writer Lambda: wiring only. `OrderWriter::handle_event` takes the `orders.fifo` batches
//! (partial batch failures) and the reconciliation schedule.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use pearlsync::app::App;
use pearlsync::config::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pearlsync::telemetry::init();
    let app = App::from_config(Config::load_for_lambda().await?, "order-writer").await?;
    let writer = &app.order_writer();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
        Ok::<_, Error>(writer.handle_invocation(event.payload, deadline_ms).await?)
    }))
    .await
}
