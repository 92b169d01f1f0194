//! order-writer Lambda: wiring only; the handler lives in `pearlsync::orders`.
//! SQS (`orders.fifo`) → `OrderWriter::handle_batch` with partial batch failures;
//! the schedule (`{"pearlsync":"reconcile-orders"}`) → `OrderWriter::reconcile_orders`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use pearlsync::app::App;
use pearlsync::config::Config;
use pearlsync::lambda::{Trigger, batch_response, classify};
use pearlsync::orders::OrderWriter;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    pearlsync::telemetry::init();
    let app = App::from_config(Config::load_for_lambda().await?, "order-writer").await?;
    let writer = OrderWriter::new(&app);
    let (writer, app) = (&writer, &app);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let answer = match classify(event.payload) {
            Trigger::Sqs(messages) => batch_response(&writer.handle_batch(messages).await),
            Trigger::Schedule { task, .. } if task.as_deref().is_none_or(|t| t == "reconcile-orders") => {
                json!(writer.reconcile_orders().await?)
            }
            other => {
                tracing::warn!(?other, "order-writer ignored an event it does not handle");
                json!({"ignored": true})
            }
        };
        app.metrics.flush();
        Ok::<_, Error>(answer)
    }))
    .await
}
