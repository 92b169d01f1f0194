//! inventory-poll Lambda: wiring only; the handler lives in `pearlsync::inventory`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use pearlsync::app::App;
use pearlsync::config::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pearlsync::telemetry::init();
    let app = App::from_config(Config::load_for_lambda().await?, "inventory-poll").await?;
    let poll = app.inventory_poll();
    let poll = &poll;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, Error>(poll.handle_event(event.payload).await?)
    }))
    .await
}
